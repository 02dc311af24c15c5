#include "common/digest.hpp"

#include <openssl/evp.h>

#include <cstdlib>
#include <memory>

namespace beamlink {

namespace {

// One-shot EVP_Digest: allocates nothing of ours and cannot fail for these
// two fixed algorithms short of running out of memory, which it reports as
// 0; we abort then, as operator new would.
template <std::size_t N>
std::array<std::uint8_t, N> digest(const EVP_MD* md, std::string_view data) {
  std::array<std::uint8_t, N> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 || len != N)
    std::abort();
  return out;
}

}  // namespace

Md5Digest md5(std::string_view data) {
  return digest<16>(EVP_md5(), data);
}

Sha1Digest sha1(std::string_view data) {
  return digest<20>(EVP_sha1(), data);
}

}  // namespace beamlink
