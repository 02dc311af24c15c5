#include "dist/framer.hpp"

#include "common/bytes.hpp"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <utility>

#include "term/term.hpp"

namespace beamlink::dist {
namespace {

using bytes::get_u32;
using bytes::put_u32;

constexpr std::size_t kLengthBytes = 4;
constexpr unsigned char kVersion = 131;
constexpr unsigned char kDistHeader = 68;  // 'D': DIST_HEADER, needs the atom cache flag

Error protocol(std::string what) {
  return make_error(Errc::protocol_error,
                    "distribution frame: " + what + "; closing the connection");
}

// Validates one term with its version byte at body[at]; returns its size
// including the version byte.
Result<std::size_t> versioned_term(const char* body, std::size_t size, std::size_t at,
                                   const char* what) {
  if (at >= size) return protocol(std::string(what) + " term is missing");
  if (static_cast<unsigned char>(body[at]) != kVersion) {
    return protocol(std::string(what) + " term starts with byte " +
                    std::to_string(static_cast<unsigned char>(body[at])) + " at offset " +
                    std::to_string(at) + ", expected the version byte 131");
  }
  auto extent = term::term_extent(body, size, at + 1);
  if (!extent) return protocol(std::string(what) + " term is malformed: " + extent.error().message);
  return 1 + *extent;
}

}  // namespace

Framer::Framer(std::size_t max_frame) : max_frame_(max_frame) {}
Framer::~Framer() = default;
Framer::Framer(Framer&&) noexcept = default;
Framer& Framer::operator=(Framer&&) noexcept = default;

void Framer::reallocate(std::size_t capacity) {
  const std::size_t live = end_ - begin_;
  assert(capacity >= live);
  auto fresh = std::make_unique_for_overwrite<char[]>(capacity);
  if (live > 0) std::memcpy(fresh.get(), data_.get() + begin_, live);
  data_ = std::move(fresh);
  capacity_ = capacity;
  begin_ = 0;
  end_ = live;
}

std::span<char> Framer::prepare(std::size_t hint) {
  if (hint == 0) hint = kInitialCapacity;
  const std::size_t live = end_ - begin_;
  if (live == 0) begin_ = end_ = 0;  // nothing to keep: write from the start

  // Room for the caller's read; for a partial frame whose length is known
  // (pending_ was checked against max_frame_ by next()), room that doubles
  // with what arrived, up to the whole frame: a peer that announces a large
  // frame and sends little of it gets a buffer the size of what it sent, not
  // of what it announced (doubling keeps the copies amortised O(1)).
  std::size_t want = live + hint;
  if (pending_ > want) want = std::min(pending_, std::max(want, 2 * live));

  if (capacity_ - begin_ >= want && capacity_ - end_ >= hint) {
    // Fits where it is.
  } else if (capacity_ >= want) {
    // Compact: move the (partial-frame-sized) unconsumed tail to the front.
    // Each byte moves at most once per frame, so this is amortised O(1).
    std::memmove(data_.get(), data_.get() + begin_, live);
    begin_ = 0;
    end_ = live;
  } else {
    std::size_t grown = std::max({want, kInitialCapacity, std::min(capacity_ * 2, want + hint)});
    reallocate(grown);
  }

  // Give back memory a huge frame needed once it is gone.
  if (live == 0 && capacity_ > kShrinkAbove && want <= kInitialCapacity) {
    reallocate(kInitialCapacity);
  }
  return {data_.get() + end_, capacity_ - end_};
}

void Framer::commit(std::size_t n) noexcept {
  end_ += std::min(n, capacity_ - end_);
}

Result<std::optional<Frame>> Framer::next() {
  if (failed_) return *failed_;
  const std::size_t live = end_ - begin_;
  if (live < kLengthBytes) return std::optional<Frame>{};
  const char* head = data_.get() + begin_;
  const std::uint32_t length = get_u32(head);

  if (length & 0x80000000u) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(length));
    failed_ = protocol(std::string("length ") + hex +
                       " has its sign bit set (>= 2^31): the stream is out of sync or is not "
                       "Erlang distribution");
    return *failed_;
  }
  if (length > max_frame_) {
    failed_ = make_error(Errc::frame_too_large,
                         "distribution frame of " + std::to_string(length) +
                             " bytes exceeds the maximum of " + std::to_string(max_frame_) +
                             " bytes; raise the maximum frame size if peers legitimately send "
                             "messages this large; closing the connection");
    return *failed_;
  }
  if (length == 0) {
    begin_ += kLengthBytes;
    pending_ = 0;
    return std::optional<Frame>{Frame{true, {}, {}}};
  }
  const std::size_t total = kLengthBytes + length;
  if (live < total) {
    pending_ = total;
    return std::optional<Frame>{};
  }

  const char* body = head + kLengthBytes;
  const auto first = static_cast<unsigned char>(body[0]);
  if (first != kPassThrough) {
    failed_ = protocol(
        first == kDistHeader
            ? std::string("starts with 68 ('D'), a distribution header, but the atom cache "
                          "was not negotiated")
            : "starts with byte " + std::to_string(first) + ", expected 112 ('p', pass-through)");
    return *failed_;
  }
  auto control = versioned_term(body, length, 1, "control");
  if (!control) {
    failed_ = std::move(control).error();
    return *failed_;
  }
  Frame frame{false, {body + 1, *control}, {}};
  const std::size_t after = 1 + *control;
  if (after < length) {
    auto message = versioned_term(body, length, after, "message");
    if (!message) {
      failed_ = std::move(message).error();
      return *failed_;
    }
    if (after + *message != length) {
      failed_ = protocol(std::to_string(length - after - *message) +
                         " bytes of trailing garbage after the message term");
      return *failed_;
    }
    frame.message = {body + after, *message};
  }
  begin_ += total;
  pending_ = 0;
  return std::optional<Frame>{frame};
}

void append_tick(std::string& out) {
  out.append(kLengthBytes, '\0');
}

void append_frame(std::string& out, std::span<const char> control, std::span<const char> message) {
  assert(!control.empty() && static_cast<unsigned char>(control[0]) == kVersion);
  assert(message.empty() || static_cast<unsigned char>(message[0]) == kVersion);
  const std::size_t body = 1 + control.size() + message.size();
  assert(body <= 0x7fffffffu);
  const std::size_t old = out.size();
  out.resize(old + kLengthBytes + body);
  char* p = out.data() + old;
  put_u32(p, static_cast<std::uint32_t>(body));
  p[kLengthBytes] = static_cast<char>(kPassThrough);
  p += kLengthBytes + 1;
  std::memcpy(p, control.data(), control.size());
  if (!message.empty()) std::memcpy(p + control.size(), message.data(), message.size());
}

}  // namespace beamlink::dist
