// utf8_prefix: cuts that keep valid text valid.
#include "common/utf8.hpp"

#include <doctest/doctest.h>

#include <string>

namespace beamlink {
namespace {

TEST_CASE("utf8_prefix never ends inside a character") {
  const std::string s = "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80z";  // a é 你 😀 z
  CHECK(utf8_prefix(s, 100) == s);
  CHECK(utf8_prefix(s, 0).empty());
  CHECK(utf8_prefix(s, 1) == "a");
  CHECK(utf8_prefix(s, 2) == "a");  // inside é
  CHECK(utf8_prefix(s, 3) == "a\xC3\xA9");
  CHECK(utf8_prefix(s, 5) == "a\xC3\xA9");  // inside 你
  CHECK(utf8_prefix(s, 6) == "a\xC3\xA9\xE4\xBD\xA0");
  CHECK(utf8_prefix(s, 9) == "a\xC3\xA9\xE4\xBD\xA0");  // inside 😀
  CHECK(utf8_prefix(s, 10) == "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80");
  for (std::size_t n = 0; n <= s.size(); ++n) CHECK(valid_utf8(utf8_prefix(s, n)));
}

}  // namespace
}  // namespace beamlink
