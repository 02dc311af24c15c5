// Distribution framing after the handshake: splitting the byte stream into
// frames (receive side) and appending frames to an output buffer (send side).
//
// ERTS user's guide, "Distribution Protocol", section "Protocol between
// connected nodes": every packet is a 4-byte big-endian length followed by
// that many bytes. A length of 0 is a tick (keep-alive). Otherwise the packet
// is the pass-through byte 112 ('p'), the control message term (with its own
// 131 version byte) and, if the control message carries one, the message term
// (again with its 131). ei negotiates neither the atom cache
// (DFLAG_DIST_HDR_ATOM_CACHE) nor fragmentation (DFLAG_FRAGMENTS), so a frame
// that starts with anything but 112 — e.g. 68 ('D'), a distribution header —
// is a protocol error, and every frame is whole and self-contained.
//
// No I/O: the libuv adapter reads into prepare()'s span, calls commit(), then
// next() until it returns nullopt. Thread: one owner; no internal locking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.hpp"

namespace beamlink::dist {

// The 'p' byte that starts every non-tick frame without a distribution header.
inline constexpr unsigned char kPassThrough = 112;

struct Frame {
  bool tick = false;              // an empty keep-alive frame; both spans are empty
  std::span<const char> control;  // the control term, including its 131 version byte
  std::span<const char> message;  // the message term including its 131; empty when none
};

class Framer {
 public:
  static constexpr std::size_t kDefaultMaxFrame = 128 * 1024 * 1024;
  // The buffer size prepare() grows to at least, and shrinks back to once a
  // frame larger than kShrinkAbove has been consumed.
  static constexpr std::size_t kInitialCapacity = 64 * 1024;
  static constexpr std::size_t kShrinkAbove = 1024 * 1024;

  // max_frame: the largest frame body (the bytes after the 4-byte length)
  // accepted; a larger announced length fails with Errc::frame_too_large
  // before any memory is reserved for it.
  explicit Framer(std::size_t max_frame = kDefaultMaxFrame);
  ~Framer();
  Framer(Framer&&) noexcept;
  Framer& operator=(Framer&&) noexcept;
  Framer(const Framer&) = delete;
  Framer& operator=(const Framer&) = delete;

  // Writable space for the next read, at least `hint` bytes (a hint of 0 means
  // kInitialCapacity). When the length of a partly received frame is known,
  // the buffer is also made large enough to hold that whole frame, so a frame
  // is never copied more than once. libuv's alloc_cb returns it as is.
  // Invalidates spans from earlier next() calls.
  std::span<char> prepare(std::size_t hint);

  // `n` bytes were written at the start of the last prepare() span
  // (n <= its size; larger values are clamped).
  void commit(std::size_t n) noexcept;

  // The next whole frame; nullopt when more bytes are needed. An error means
  // the stream is broken and the connection must close; it is sticky (later
  // calls return it again). Errors:
  //   protocol_error   a length with the sign bit set (>= 2^31), a first byte
  //                    other than 112, a control or message term that is not
  //                    valid external term format, or bytes after the message
  //   frame_too_large  a length above max_frame
  // The returned spans point into the buffer and stay valid until the next
  // prepare(), commit() or next() call. The framer checks structure only;
  // whether the control expects a message is the caller's check
  // (Control::expects_message against message.empty()).
  Result<std::optional<Frame>> next();

  // Bytes received but not yet returned as frames.
  std::size_t buffered() const noexcept { return end_ - begin_; }
  // The buffer's current allocation (for tests and metrics).
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t max_frame() const noexcept { return max_frame_; }

 private:
  void reallocate(std::size_t capacity);

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;  // first byte not yet returned as a frame
  std::size_t end_ = 0;    // one past the last received byte
  std::size_t pending_ =
      0;  // size (length field included) of the partial frame at begin_, 0 if unknown
  std::size_t max_frame_;
  std::optional<Error> failed_;
};

// Appends a tick: four zero bytes.
void append_tick(std::string& out);

// Appends one frame: the 4-byte length, 112, `control` and `message`. Both are
// whole encoded terms WITH their 131 version byte (as TermWriter(true)
// produces); `message` is empty for a control that carries none. Neither is
// validated: they come from our own encoders. Amortised allocation-free when
// `out` has spare capacity.
void append_frame(std::string& out, std::span<const char> control,
                  std::span<const char> message = {});

}  // namespace beamlink::dist
