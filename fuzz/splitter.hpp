// Feeds a fuzz input to a streaming parser in pieces whose sizes the input
// itself chooses, so one corpus explores every way a stream can be cut:
// the first byte seeds the sizes (1 to 64 bytes, or the whole rest), the
// remaining bytes are the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace beamlink::fuzz {

template <class Feed>
void feed_in_pieces(const std::uint8_t* data, std::size_t size, Feed&& feed) {
  if (size == 0) return;
  std::uint32_t state = data[0] * 2654435761u + 1;
  const char* p = reinterpret_cast<const char*>(data + 1);
  std::size_t left = size - 1;
  while (left > 0) {
    state = state * 1103515245u + 12345u;
    std::size_t piece = (state >> 16) % 66;  // 0: the whole rest
    if (piece == 0 || piece > left) piece = left;
    if (!feed(std::span<const char>(p, piece))) return;
    p += piece;
    left -= piece;
  }
}

}  // namespace beamlink::fuzz
