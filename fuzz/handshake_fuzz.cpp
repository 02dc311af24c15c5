// The distribution handshake as the initiator meets it: whatever a peer (or
// something pretending to be one) answers to our send_name, cut at arbitrary
// points. The core must end done or failed with a reason, never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dist/handshake_core.hpp"
#include "splitter.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dist::HandshakeInitiatorCore core("fuzz@127.0.0.1", "cookie", dist::dflag::probe_default, 7,
                                    0x11223344u);
  (void)core.start();
  fuzz::feed_in_pieces(data, size, [&](std::span<const char> piece) {
    (void)core.feed(piece);
    return !core.done() && !core.failed();
  });
  if (!core.done() && !core.failed()) core.on_closed();
  if (!core.done() && !core.failed()) std::abort();  // closed mid-way must be a failure
  if (core.failed() && core.error().message.empty()) std::abort();  // every failure says why
  return 0;
}
