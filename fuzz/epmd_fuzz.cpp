// epmd's answers as the client reads them: ALIVE2, PORT2 and NAMES
// responses, fed as they arrive (every prefix), as the client does.
#include <cstddef>
#include <cstdint>

#include "epmd_client/codec.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const char> all(reinterpret_cast<const char*>(data), size);
  for (std::size_t n = 0; n <= all.size(); ++n) {
    auto prefix = all.first(n);
    (void)epmd_client::decode_alive2_resp(prefix);
    (void)epmd_client::decode_port2_resp(prefix);
  }
  (void)epmd_client::parse_names_resp(all);
  return 0;
}
