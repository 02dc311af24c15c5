// Base64 against the vectors of RFC 4648 section 10.
#include "common/base64.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace beamlink;

TEST_CASE("base64 matches the RFC 4648 vectors") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(std::string("\xff\x00\xfe", 3)) == "/wD+");
}

TEST_CASE("base64 of an input over one chunk has no padding inside") {
  // An input past 3 MiB (an encoder that works in chunks must not pad
  // inside): the output must be one unbroken encoding.
  std::string in((3u << 20) + 4, 'a');
  auto out = base64_encode(in);
  CHECK(out.size() == (in.size() + 2) / 3 * 4);
  CHECK(out.find('=') == out.size() - 2);
  CHECK(out.substr(0, 8) == "YWFhYWFh");
  CHECK(out.substr(out.size() - 8) == "YWFhYQ==");
}
