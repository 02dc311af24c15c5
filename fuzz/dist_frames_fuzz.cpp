// A distribution stream from a peer after the handshake, cut at arbitrary
// points: the framer, then the control decoder and the message printer on
// each frame, as the connection does.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dist/control.hpp"
#include "dist/framer.hpp"
#include "splitter.hpp"
#include "term/term.hpp"
#include "term/term_text.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dist::Framer framer(1u << 20);  // a small maximum, so the limit is exercised too
  fuzz::feed_in_pieces(data, size, [&](std::span<const char> piece) {
    while (!piece.empty()) {
      auto room = framer.prepare(piece.size());
      std::size_t n = std::min(room.size(), piece.size());
      std::memcpy(room.data(), piece.data(), n);
      framer.commit(n);
      piece = piece.subspan(n);
    }
    for (;;) {
      auto f = framer.next();
      if (!f) return false;  // the stream is broken: the connection would close
      if (!*f) return true;  // need more bytes
      if ((*f)->tick) continue;
      auto c = dist::decode_control((*f)->control);
      if (c && !(*f)->message.empty()) {
        if (auto r = term::TermReader::from_external((*f)->message)) (void)term::format_term(*r);
      }
    }
  });
  return 0;
}
