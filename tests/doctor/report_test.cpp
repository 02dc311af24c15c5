// The doctor's report shows text a peer controls (node names, status text,
// epmd names): no terminal escapes get through, and JSON stays valid UTF-8.
#include "doctor/report.hpp"

#include <doctest/doctest.h>

#include <string>

#include "common/utf8.hpp"

namespace beamlink::doctor {
namespace {

Report hostile() {
  Report r;
  // ESC [2J clears a terminal, BEL rings it, \xff is not UTF-8, \xc2\x9b is C1 CSI.
  r.add({"handshake.name", "ewallet@10.0.0.5\x1b[2J", Status::fail,
         "it calls itself evil\x07\xff@host\xc2\x9b"
         "1m",
         "dial it as it\x1b]0;pwned\x07 names itself"});
  return r;
}

TEST_CASE("doctor report: text output carries no control characters from a peer") {
  std::string text = to_text(hostile(), /*color=*/false);
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    CHECK((c >= 0x20 || c == '\n'));
    CHECK(c != 0x7f);
  }
  CHECK(text.find("\\x1b[2J") != std::string::npos);
  CHECK(text.find("evil\\x07\xEF\xBF\xBD@host\\u009b1m") != std::string::npos);
  CHECK(valid_utf8(text));
}

TEST_CASE("doctor report: JSON output is valid UTF-8 with controls escaped") {
  std::string json = to_json(hostile());
  CHECK(valid_utf8(json));
  CHECK(json.find('\x1b') == std::string::npos);
  CHECK(json.find('\x07') == std::string::npos);
  CHECK(json.find("\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("utf8: ill-formed sequences become U+FFFD - well-formed ones stay") {
  CHECK(sanitize_utf8("a\xC3\xA9z") == "a\xC3\xA9z");                              // é
  CHECK(sanitize_utf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");                  // U+1F600
  CHECK(sanitize_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  CHECK(sanitize_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(sanitize_utf8("\xE2\x82") == "\xEF\xBF\xBD\xEF\xBF\xBD");                  // cut short
  CHECK(sanitize_utf8("\xF4\x90\x80\x80").find("\xF4") == std::string::npos);      // > U+10FFFF
  CHECK(!valid_utf8("\xFF"));
  CHECK(valid_utf8(""));
}

}  // namespace
}  // namespace beamlink::doctor
