#include "common/digest.hpp"

#include <nettle/md5.h>
#include <nettle/sha1.h>

namespace beamlink {

// Nettle's hash functions keep their state in the caller's context struct:
// nothing is allocated, nothing is initialised globally, and they cannot fail.

Md5Digest md5(std::string_view data) {
  md5_ctx ctx;
  md5_init(&ctx);
  md5_update(&ctx, data.size(), reinterpret_cast<const std::uint8_t*>(data.data()));
  Md5Digest out{};
  md5_digest(&ctx, out.size(), out.data());
  return out;
}

Sha1Digest sha1(std::string_view data) {
  sha1_ctx ctx;
  sha1_init(&ctx);
  sha1_update(&ctx, data.size(), reinterpret_cast<const std::uint8_t*>(data.data()));
  Sha1Digest out{};
  sha1_digest(&ctx, out.size(), out.data());
  return out;
}

}  // namespace beamlink
