// MD5 against the test suite of RFC 1321 (appendix A.5), and the handshake
// digest against digests computed by a real erl (erlang:md5/1).
#include <doctest/doctest.h>

#include <string>

#include "dist/md5.hpp"

using namespace beamlink::dist;

TEST_CASE("md5 matches the RFC 1321 test suite") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex("a") == "0cc175b9c0f1b6a831c399e269772661");
  CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(md5_hex("message digest") == "f96b697d7cb7938d525a2f31aaf161d0");
  CHECK(md5_hex("abcdefghijklmnopqrstuvwxyz") == "c3fcd3d76192e4007dfb496cca67e13b");
  CHECK(md5_hex("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") ==
        "d174ab98d277d9f5a5611c2c9f419d9f");
  CHECK(md5_hex("1234567890123456789012345678901234567890123456789012345678901234567890123456"
                "7890") == "57edf4a22be3c955ac49da2e2107b67a");
}

TEST_CASE("md5 gives the same digest for input fed in any pieces") {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 7));
  for (std::size_t len : {0u, 55u, 56u, 63u, 64u, 65u, 119u, 120u, 128u, 300u}) {
    auto whole = md5(std::string_view(data).substr(0, len));
    for (std::size_t step : {1u, 3u, 63u, 64u}) {
      Md5 m;
      for (std::size_t at = 0; at < len; at += step)
        m.update(std::string_view(data).substr(at, std::min(step, len - at)));
      CHECK(m.finish() == whole);
    }
  }
}

TEST_CASE("the handshake digest equals erlang:md5 of cookie and challenge") {
  // erlang:md5("beamlink-test-cookie" ++ integer_to_list(3735928559)) on OTP 25.
  Md5Digest big = {75, 181, 105, 180, 189, 131, 232, 126, 191, 18, 48, 229, 185, 81, 42, 180};
  Md5Digest small = {15, 228, 237, 139, 227, 19, 93, 77, 191, 148, 89, 51, 128, 165, 217, 101};
  CHECK(handshake_digest(3735928559u, "beamlink-test-cookie") == big);
  CHECK(handshake_digest(42, "beamlink-test-cookie") == small);
}
