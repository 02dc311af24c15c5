#include "common/base64.hpp"

#include <nettle/base64.h>

namespace beamlink {

std::string base64_encode(std::string_view bytes) {
  // base64_encode_raw writes exactly BASE64_ENCODE_RAW_LENGTH(n) characters,
  // padding included, and takes a size_t: one call for any length.
  std::string out(BASE64_ENCODE_RAW_LENGTH(bytes.size()), '\0');
  base64_encode_raw(out.data(), bytes.size(), reinterpret_cast<const std::uint8_t*>(bytes.data()));
  return out;
}

}  // namespace beamlink
