// MD5 against the test suite of RFC 1321 (appendix A.5) and digests computed
// by a real erl (erlang:md5/1); SHA-1 against the vectors of RFC 3174
// (section 7.3) and FIPS 180-2 (appendix A).
#include "common/digest.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace beamlink;

TEST_CASE("md5 matches the RFC 1321 test suite") {
  CHECK(to_hex(md5("")) == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(to_hex(md5("a")) == "0cc175b9c0f1b6a831c399e269772661");
  CHECK(to_hex(md5("abc")) == "900150983cd24fb0d6963f7d28e17f72");
  CHECK(to_hex(md5("message digest")) == "f96b697d7cb7938d525a2f31aaf161d0");
  CHECK(to_hex(md5("abcdefghijklmnopqrstuvwxyz")) == "c3fcd3d76192e4007dfb496cca67e13b");
  CHECK(to_hex(md5("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")) ==
        "d174ab98d277d9f5a5611c2c9f419d9f");
  CHECK(to_hex(md5("1234567890123456789012345678901234567890123456789012345678901234567890"
                   "1234567890")) == "57edf4a22be3c955ac49da2e2107b67a");
}

TEST_CASE("md5 equals erlang:md5 of a cookie and a decimal challenge") {
  // erlang:md5("beamlink-test-cookie" ++ integer_to_list(3735928559)) on OTP 25, and of 42.
  Md5Digest big = {75, 181, 105, 180, 189, 131, 232, 126, 191, 18, 48, 229, 185, 81, 42, 180};
  Md5Digest small = {15, 228, 237, 139, 227, 19, 93, 77, 191, 148, 89, 51, 128, 165, 217, 101};
  CHECK(md5("beamlink-test-cookie3735928559") == big);
  CHECK(md5("beamlink-test-cookie42") == small);
}

TEST_CASE("sha1 matches the RFC 3174 and FIPS 180-2 vectors") {
  CHECK(to_hex(sha1("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(to_hex(sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(to_hex(sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(to_hex(sha1(std::string(1000000, 'a'))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  std::string eighty;
  for (int i = 0; i < 80; ++i) eighty += "01234567";  // RFC 3174 TEST4
  CHECK(to_hex(sha1(eighty)) == "dea356a2cddd90c7a7ecedc5ebb563934f460452");
  CHECK(to_hex(sha1("The quick brown fox jumps over the lazy dog")) ==
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
}
