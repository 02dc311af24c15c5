// epmd's answers as the client reads them: ALIVE2, PORT2 and NAMES
// responses. The client decodes what it has after each read and stops at
// the first answer or error; so each prefix is fed, one byte more each
// time, until the decoder decides, and then the whole input once (one read
// that brought the response and bytes after it). Feeding every prefix of
// the input made a run quadratic: 350 inputs a second at 9 KiB.
#include <cstddef>
#include <cstdint>

#include "epmd_client/codec.hpp"

using namespace beamlink;

namespace {

template <class Decode>
void as_read(std::span<const char> all, Decode decode) {
  for (std::size_t n = 0; n <= all.size(); ++n) {
    auto r = decode(all.first(n));
    if (!r || r->has_value()) break;  // decided: the client reads no more
  }
  (void)decode(all);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const char> all(reinterpret_cast<const char*>(data), size);
  as_read(all, [](std::span<const char> b) { return epmd_client::decode_alive2_resp(b); });
  as_read(all, [](std::span<const char> b) { return epmd_client::decode_port2_resp(b); });
  (void)epmd_client::parse_names_resp(all);
  return 0;
}
