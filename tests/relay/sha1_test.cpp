// SHA-1 against the test vectors of RFC 3174 (section 7.3) and FIPS 180-2
// (appendix A), base64 against RFC 4648 section 10, and the WebSocket accept
// value against the example of RFC 6455 section 1.3.
#include <doctest/doctest.h>

#include <string>

#include "relay/sha1.hpp"
#include "relay/websocket.hpp"

using namespace beamlink::relay;

TEST_CASE("sha1 matches the RFC 3174 and FIPS 180-2 vectors") {
  CHECK(sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(sha1_hex(std::string(1000000, 'a')) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  std::string eighty;
  for (int i = 0; i < 80; ++i) eighty += "01234567";  // RFC 3174 TEST4
  CHECK(sha1_hex(eighty) == "dea356a2cddd90c7a7ecedc5ebb563934f460452");
  CHECK(sha1_hex("The quick brown fox jumps over the lazy dog") ==
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
}

TEST_CASE("sha1 gives the same digest for input fed in any pieces") {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 7));
  for (std::size_t len : {0u, 55u, 56u, 63u, 64u, 65u, 119u, 120u, 128u, 300u}) {
    auto whole = sha1(std::string_view(data).substr(0, len));
    for (std::size_t step : {1u, 3u, 63u, 64u}) {
      Sha1 s;
      for (std::size_t at = 0; at < len; at += step)
        s.update(std::string_view(data).substr(at, std::min(step, len - at)));
      CHECK_MESSAGE(s.finish() == whole, "len " << len << " step " << step);
    }
  }
}

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

// RFC 6455 1.3 gives the digest b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45
// b2 be c4 ea, base64 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (python3's hashlib agrees).
TEST_CASE("websocket accept matches the example of RFC 6455 section 1.3") {
  CHECK(websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
