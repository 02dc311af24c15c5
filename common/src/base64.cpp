#include "common/base64.hpp"

#include <openssl/evp.h>

#include <algorithm>

namespace beamlink {

std::string base64_encode(std::string_view bytes) {
  // EVP_EncodeBlock takes an int length: feed whole 3-byte groups in
  // chunks, so every chunk but the last ends without padding.
  constexpr std::size_t kChunk = 3u << 20;
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  std::size_t written = 0;
  for (std::size_t at = 0; at < bytes.size(); at += kChunk) {
    auto n = std::min(kChunk, bytes.size() - at);
    written += static_cast<std::size_t>(EVP_EncodeBlock(
        reinterpret_cast<unsigned char*>(out.data() + written),
        reinterpret_cast<const unsigned char*>(bytes.data() + at), static_cast<int>(n)));
  }
  out.resize(written);
  return out;
}

}  // namespace beamlink
