// Dist framer tests: frames fed whole, split at every point and byte by byte;
// ticks; length limits; malformed frames; a deterministic fuzz loop.
//
// The control and message terms are golden bytes from a real erl (OTP 25),
// tests/dist/control_golden.hpp (EP = ewallet@10.0.0.1 pid 77.3 creation
// 0x5f3a1b2c, BP = beamlink@127.0.0.1 pid 1.0 creation 0x12345678, R = a
// 3-word ref).
#include "dist/framer.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "control_golden.hpp"
#include "dist/control.hpp"

namespace beamlink::dist {
using namespace beamlink::term;
using namespace beamlink::dist::golden;
namespace {

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// An owned copy of a Frame, for comparing runs.
struct Owned {
  bool tick;
  std::string control;
  std::string message;
  friend bool operator==(const Owned&, const Owned&) = default;
};

struct Run {
  std::vector<Owned> frames;
  std::optional<Error> error;
};

// Drains every whole frame.
void drain(Framer& f, Run& run) {
  while (!run.error) {
    auto r = f.next();
    if (!r) {
      run.error = r.error();
      return;
    }
    if (!r->has_value()) return;
    const Frame& fr = **r;
    run.frames.push_back({fr.tick, std::string(fr.control.data(), fr.control.size()),
                          std::string(fr.message.data(), fr.message.size())});
  }
}

// Feeds `bytes` to a framer in reads of at most `chunk` bytes, as a libuv
// read loop would: prepare(hint), copy, commit, drain.
Run feed(Framer& f, std::string_view bytes, std::size_t chunk, std::size_t hint = 65536) {
  Run run;
  std::size_t at = 0;
  while (at < bytes.size() && !run.error) {
    auto space = f.prepare(hint);
    REQUIRE(space.size() >= (hint == 0 ? Framer::kInitialCapacity : hint));
    std::size_t n = std::min({space.size(), chunk, bytes.size() - at});
    std::memcpy(space.data(), bytes.data() + at, n);
    f.commit(n);
    at += n;
    drain(f, run);
  }
  return run;
}

Run feed(std::string_view bytes, std::size_t chunk, std::size_t hint = 65536) {
  Framer f;
  return feed(f, bytes, chunk, hint);
}

std::string frame_of(std::string_view control_hex, std::string_view message_hex = {}) {
  std::string out;
  append_frame(out, unhex(control_hex), unhex(message_hex));
  return out;
}

struct Stream {
  std::string wire;
  std::vector<Owned> expected;
};

Stream golden_stream() {
  Stream s;
  auto add = [&](std::string_view c, std::string_view m) {
    append_frame(s.wire, unhex(c), unhex(m));
    s.expected.push_back({false, unhex(c), unhex(m)});
  };
  auto tick = [&] {
    append_tick(s.wire);
    s.expected.push_back({true, {}, {}});
  };
  tick();
  add(kRegSend, kMsgIsAuth);
  add(kSend, kMsgHello);
  add(kLink, {});
  tick();
  tick();
  add(kExit, {});
  add(kSend, kMsgIsAuth);
  return s;
}

Error error_of(std::string_view wire, std::size_t max_frame = Framer::kDefaultMaxFrame) {
  Framer f(max_frame);
  Run run = feed(f, wire, wire.size());
  REQUIRE(run.error.has_value());
  return *run.error;
}

// xorshift64*: deterministic across platforms and standard libraries.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

}  // namespace

TEST_CASE("append_frame and append_tick write the documented bytes") {
  std::string out = "xy";
  append_tick(out);
  CHECK(out == std::string("xy\0\0\0\0", 6));

  const std::string control = unhex(kRegSend), message = unhex(kMsgIsAuth);
  append_frame(out, control, message);
  const std::size_t body = 1 + control.size() + message.size();
  REQUIRE(out.size() == 6 + 4 + body);
  CHECK(out.substr(6, 4) == be32(static_cast<std::uint32_t>(body)));
  CHECK(out[10] == 'p');
  CHECK(out.substr(11, control.size()) == control);
  CHECK(out.substr(11 + control.size()) == message);

  std::string bare;
  append_frame(bare, control);
  CHECK(bare == be32(static_cast<std::uint32_t>(1 + control.size())) + "p" + control);

  // A control straight from an encoder.
  std::string enc;
  auto w = encode_send(Pid{"beamlink@127.0.0.1", 1, 0, 0x12345678});
  append_frame(enc, w.bytes(), unhex(kMsgHello));
  CHECK(enc == frame_of(kSend, kMsgHello));
}

TEST_CASE("frames fed whole - split at every point and byte by byte are the same") {
  const Stream s = golden_stream();
  Run whole = feed(s.wire, s.wire.size());
  CHECK_FALSE(whole.error);
  CHECK(whole.frames == s.expected);

  for (std::size_t cut = 0; cut <= s.wire.size(); ++cut) {
    CAPTURE(cut);
    Framer f;
    Run run = feed(f, std::string_view(s.wire).substr(0, cut), s.wire.size());
    Run rest = feed(f, std::string_view(s.wire).substr(cut), s.wire.size());
    REQUIRE_FALSE(run.error);
    REQUIRE_FALSE(rest.error);
    run.frames.insert(run.frames.end(), rest.frames.begin(), rest.frames.end());
    CHECK(run.frames == s.expected);
    CHECK(f.buffered() == 0);
  }

  for (std::size_t hint : {std::size_t{1}, std::size_t{0}, std::size_t{7}, std::size_t{65536}}) {
    CAPTURE(hint);
    Run bytewise = feed(s.wire, 1, hint);
    CHECK_FALSE(bytewise.error);
    CHECK(bytewise.frames == s.expected);
    Run odd = feed(s.wire, 13, hint);
    CHECK(odd.frames == s.expected);
  }
}

TEST_CASE("every strict prefix of a frame needs more bytes - never fails") {
  const std::string wire = frame_of(kRegSend, kMsgIsAuth);
  for (std::size_t n = 0; n < wire.size(); ++n) {
    Framer f;
    Run run = feed(f, std::string_view(wire).substr(0, n), n + 1);
    CHECK_FALSE(run.error);
    CHECK(run.frames.empty());
    CHECK(f.buffered() == n);
    auto again = f.next();  // asking twice changes nothing
    REQUIRE(again.ok());
    CHECK_FALSE(again->has_value());
  }
}

TEST_CASE("ticks are empty frames") {
  std::string wire;
  for (int i = 0; i < 5; ++i) append_tick(wire);
  Run run = feed(wire, 3);
  REQUIRE(run.frames.size() == 5);
  for (const auto& fr : run.frames) CHECK(fr == Owned{true, {}, {}});
}

TEST_CASE("a length with the sign bit set is its own protocol error") {
  for (std::uint32_t len : {0x80000000u, 0xffffffffu, 0x80000010u}) {
    Error e = error_of(be32(len) + "p");
    CHECK(e.code == Errc::protocol_error);
    CHECK(e.message.find("sign bit") != std::string::npos);
  }
}

TEST_CASE("a length over the maximum fails before the buffer grows") {
  Framer small(1024);
  Run run = feed(small, be32(1025), 4, 16);
  REQUIRE(run.error);
  CHECK(run.error->code == Errc::frame_too_large);
  CHECK(run.error->message.find("1025") != std::string::npos);
  CHECK(small.prepare(16).size() <= Framer::kInitialCapacity);
  CHECK(small.capacity() <= Framer::kInitialCapacity);

  Framer big;  // the default maximum, 128 MiB
  Run huge = feed(big, be32(0x7fffffffu) + "p\x83", 6, 16);
  REQUIRE(huge.error);
  CHECK(huge.error->code == Errc::frame_too_large);
  CHECK(big.capacity() <= Framer::kInitialCapacity);

  // Exactly the maximum is fine.
  const std::string wire = frame_of(kRegSend, kMsgIsAuth);
  Framer exact(wire.size() - 4);
  Run ok = feed(exact, wire, wire.size());
  CHECK_FALSE(ok.error);
  CHECK(ok.frames.size() == 1);
  Framer under(wire.size() - 5);
  CHECK(feed(under, wire, wire.size()).error->code == Errc::frame_too_large);
}

TEST_CASE("a frame that does not start with 112 is a protocol error") {
  const std::string control = unhex(kSend);
  Error d = error_of(be32(static_cast<std::uint32_t>(1 + control.size())) + "D" + control);
  CHECK(d.code == Errc::protocol_error);
  CHECK(d.message.find("distribution header") != std::string::npos);
  Error z = error_of(be32(3) + std::string("\0\x83\x6a", 3));
  CHECK(z.code == Errc::protocol_error);
  CHECK(z.message.find("expected 112") != std::string::npos);
}

TEST_CASE("malformed terms and trailing bytes inside a frame are protocol errors") {
  const std::string control = unhex(kSend), message = unhex(kMsgHello);
  auto frame = [](const std::string& body) {
    return be32(static_cast<std::uint32_t>(body.size())) + body;
  };
  // Only the pass-through byte.
  Error e = error_of(frame("p"));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("control term is missing") != std::string::npos);
  // The control without its version byte.
  e = error_of(frame("p" + control.substr(1)));
  CHECK(e.message.find("version byte 131") != std::string::npos);
  // A control cut short inside the frame.
  e = error_of(frame("p" + control.substr(0, control.size() - 2)));
  CHECK(e.message.find("control term is malformed") != std::string::npos);
  // A message without its version byte, or cut short.
  e = error_of(frame("p" + control + message.substr(1)));
  CHECK(e.message.find("message term starts with byte") != std::string::npos);
  e = error_of(frame("p" + control + message.substr(0, message.size() - 1)));
  CHECK(e.message.find("message term is malformed") != std::string::npos);
  // Garbage after the message.
  e = error_of(frame("p" + control + message + "zz"));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("2 bytes of trailing garbage") != std::string::npos);
  // Errors are sticky; frames before the bad one were delivered.
  Framer f;
  Run run =
      feed(f, frame_of(kLink) + frame("p" + control + message + "z") + frame_of(kLink), 1 << 20);
  CHECK(run.frames.size() == 1);
  REQUIRE(run.error);
  auto again = f.next();
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message == run.error->message);
}

TEST_CASE("a large frame grows the buffer once - which shrinks back afterwards") {
  std::string big_message = "\x83m" + be32(3u << 20) + std::string(3u << 20, 'x');
  std::string wire = frame_of(kSend, kMsgHello);
  append_frame(wire, unhex(kSend), big_message);
  std::string tail = frame_of(kLink);
  Framer f;
  Run run = feed(f, wire, 65536);
  REQUIRE_FALSE(run.error);
  REQUIRE(run.frames.size() == 2);
  CHECK(run.frames[1].message == big_message);
  CHECK(f.capacity() >= (3u << 20));
  CHECK(f.capacity() < (3u << 20) * 2 + Framer::kInitialCapacity * 2);
  Run after = feed(f, tail, 65536);
  CHECK(after.frames.size() == 1);
  CHECK(f.capacity() <= Framer::kInitialCapacity * 2);
}

TEST_CASE(
    "a frame announced large but sent in part reserves what arrived - not the announced length") {
  // 100 MiB announced, 64 KiB sent: the buffer follows the bytes.
  std::string wire = be32(100u << 20) + "p" + std::string(65535, '\x83');
  Framer f;
  Run run = feed(f, wire, 16384);
  CHECK_FALSE(run.error);
  CHECK(run.frames.empty());
  CHECK(f.capacity() <= 4 * 65536 + Framer::kInitialCapacity);
}

TEST_CASE("steady state: many frames through 64 KiB reads keep one buffer") {
  std::string wire;
  for (int i = 0; i < 5000; ++i) {
    append_frame(wire, unhex(i % 2 ? kRegSend : kSend), unhex(i % 3 ? kMsgIsAuth : kMsgHello));
    if (i % 97 == 0) append_tick(wire);
  }
  Framer f;
  Run warm = feed(f, std::string_view(wire).substr(0, 200000), 65536);
  const std::size_t cap = f.capacity();
  Run rest = feed(f, std::string_view(wire).substr(200000), 65536);
  REQUIRE_FALSE(warm.error);
  REQUIRE_FALSE(rest.error);
  CHECK(warm.frames.size() + rest.frames.size() == 5000 + 52);
  CHECK(f.capacity() == cap);
  CHECK(f.buffered() == 0);
}

TEST_CASE("random bytes and mutated frames never crash the framer or the decoder") {
  Rng rng{0x9e3779b97f4a7c15ULL};
  const Stream golden = golden_stream();
  std::size_t frames = 0, errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string wire;
    switch (iter % 3) {
      case 0: {  // pure noise
        std::size_t n = rng.below(300);
        for (std::size_t i = 0; i < n; ++i) wire.push_back(static_cast<char>(rng.next()));
        break;
      }
      case 1: {  // well-framed noise that starts like a real frame
        std::size_t n = rng.below(200);
        std::string body = "p\x83";
        for (std::size_t i = 0; i < n; ++i) body.push_back(static_cast<char>(rng.next()));
        wire = be32(static_cast<std::uint32_t>(body.size())) + body;
        break;
      }
      default: {  // golden stream with a few bytes changed
        wire = golden.wire;
        for (std::size_t k = 1 + rng.below(4); k > 0; --k) {
          wire[rng.below(wire.size())] = static_cast<char>(rng.next());
        }
      }
    }
    Framer f(4096);
    std::size_t at = 0;
    bool failed = false;
    while (at < wire.size() && !failed) {
      auto space = f.prepare(1 + rng.below(64));
      std::size_t n = std::min({space.size(), 1 + rng.below(100), wire.size() - at});
      std::memcpy(space.data(), wire.data() + at, n);
      f.commit(n);
      at += n;
      for (;;) {
        auto r = f.next();
        if (!r) {
          failed = true;
          ++errors;
          CHECK(
              (r.error().code == Errc::protocol_error || r.error().code == Errc::frame_too_large));
          break;
        }
        if (!r->has_value()) break;
        ++frames;
        const Frame& fr = **r;
        if (!fr.tick) {
          auto c = decode_control(fr.control);
          if (!c) {
            CHECK((c.error().code == Errc::protocol_error ||
                   c.error().code == Errc::unexpected_message));
          }
        }
      }
    }
  }
  CHECK(frames > 0);
  CHECK(errors > 0);
}

}  // namespace beamlink::dist
