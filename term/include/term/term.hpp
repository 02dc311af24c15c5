// Erlang external term format: identifiers, a bounds-checked reader and an
// RAII writer over ei_x_buff.
//
// ei's decoders take no buffer length, so a malicious length field would make
// them read past the end. TermReader therefore validates every term it is
// about to decode with term_extent(), a walker that checks every tag and
// length against the bytes that remain (iteratively: nesting depth costs no
// stack), and only then lets ei decode inside those bounds.
//
// Thread: none of these types touch a loop; use them anywhere.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

struct ei_x_buff_TAG;

namespace beamlink::term {

// External term format tags (erts/emulator/beam/external.h; "External Term
// Format" in the ERTS user's guide).
enum class Tag : std::uint8_t {
  version = 131,
  new_float = 70,
  bit_binary = 77,
  atom_cache_ref = 82,
  compressed = 80,
  new_pid = 88,
  new_port = 89,
  newer_reference = 90,
  small_integer = 97,
  integer = 98,
  float_ext = 99,
  atom = 100,
  reference = 101,
  port = 102,
  pid = 103,
  small_tuple = 104,
  large_tuple = 105,
  nil = 106,
  string = 107,
  list = 108,
  binary = 109,
  small_big = 110,
  large_big = 111,
  new_fun = 112,
  export_ext = 113,
  new_reference = 114,
  small_atom = 115,
  map = 116,
  fun = 117,
  atom_utf8 = 118,
  small_atom_utf8 = 119,
  v4_port = 120,
  local = 121,
};

struct Pid {
  std::string node;
  std::uint32_t num = 0;
  std::uint32_t serial = 0;
  std::uint32_t creation = 0;

  friend bool operator==(const Pid&, const Pid&) = default;
  friend auto operator<=>(const Pid&, const Pid&) = default;
};

struct Ref {
  std::string node;
  std::uint32_t creation = 0;
  std::uint32_t len = 0;  // number of used words in n (1..5)
  std::array<std::uint32_t, 5> n{};

  friend bool operator==(const Ref&, const Ref&) = default;
  friend auto operator<=>(const Ref&, const Ref&) = default;
};

struct PidHash {
  std::size_t operator()(const Pid& p) const noexcept;
};
struct RefHash {
  std::size_t operator()(const Ref& r) const noexcept;
};

// "<node.num.serial>"-like text for logs: <beamlink@127.0.0.1.1.0>.
std::string to_string(const Pid& p);
std::string to_string(const Ref& r);

// Limits applied while walking untrusted terms.
struct TermLimits {
  std::size_t max_terms = 1u << 24;  // total number of terms in one walk
};

// The number of bytes the term starting at buf[index] occupies, checking every
// tag and length against `size`. Rejects atom cache references, LOCAL_EXT,
// compressed terms and the old FUN_EXT, which a peer without those flags
// negotiated must not send. Does not consume a version byte.
Result<std::size_t> term_extent(const char* buf, std::size_t size, std::size_t index,
                                const TermLimits& limits = {});

// What the next term is, as ei_get_type reports it.
struct TermType {
  int tag = 0;   // ERL_*_EXT value
  int size = 0;  // arity, length or byte count, depending on tag
};

class TermReader {
 public:
  // Reads the bytes [buf, buf+size) starting at index. No version byte is
  // expected; use from_external() for a buffer that begins with 131.
  TermReader(const char* buf, std::size_t size, std::size_t index = 0) noexcept
      : buf_(buf), size_(size), index_(index) {}
  explicit TermReader(std::span<const char> bytes) noexcept
      : TermReader(bytes.data(), bytes.size()) {}

  // Checks and skips the leading version byte (131).
  static Result<TermReader> from_external(std::span<const char> bytes);

  std::size_t index() const noexcept { return index_; }
  std::size_t remaining() const noexcept { return index_ <= size_ ? size_ - index_ : 0; }
  bool at_end() const noexcept { return index_ >= size_; }
  const char* data() const noexcept { return buf_; }
  std::size_t size() const noexcept { return size_; }

  Result<TermType> peek() const;
  bool next_is_atom() const;

  Result<std::string> read_atom();
  Result<std::int64_t> read_int();  // any integer that fits in int64
  Result<double> read_double();
  Result<std::string_view> read_binary();  // a view into the buffer
  Result<std::string> read_string();       // STRING_EXT or a list of bytes
  Result<int> read_tuple_header();
  Result<int> read_list_header();  // 0 for []
  Result<int> read_map_header();
  Result<Pid> read_pid();
  Result<Ref> read_ref();
  // The next whole term as raw bytes (no version byte), validated; advances.
  Result<std::span<const char>> read_raw();
  Result<void> skip();

  // Expect a specific atom; fails with bad_term otherwise.
  Result<void> expect_atom(std::string_view atom);

 private:
  Result<void> ensure_valid(std::size_t* extent) const;

  const char* buf_;
  std::size_t size_;
  std::size_t index_;
  mutable std::size_t valid_until_ = 0;  // end of the furthest term already validated
};

// An owned, growable encoding buffer. Every encode call is checked; the first
// failure is kept and reported by status(), and later calls are ignored, so a
// sequence of writes can be checked once at the end.
class TermWriter {
 public:
  // with_version: start the buffer with the 131 version byte.
  explicit TermWriter(bool with_version = true);
  ~TermWriter();
  TermWriter(TermWriter&& other) noexcept;
  TermWriter& operator=(TermWriter&& other) noexcept;
  TermWriter(const TermWriter&) = delete;
  TermWriter& operator=(const TermWriter&) = delete;

  TermWriter& atom(std::string_view a);
  TermWriter& binary(std::string_view bytes);
  TermWriter& integer(std::int64_t v);
  TermWriter& uinteger(std::uint64_t v);
  TermWriter& floating(double v);
  TermWriter& string(std::string_view s);  // STRING_EXT (or a list when long)
  TermWriter& tuple(int arity);
  TermWriter& list(int length);  // a proper list header; follow with elements then nil()
  TermWriter& nil();
  TermWriter& map(int arity);
  TermWriter& pid(const Pid& p);
  TermWriter& ref(const Ref& r);
  TermWriter& boolean(bool b) { return atom(b ? "true" : "false"); }
  // Append an already-encoded term (no version byte).
  TermWriter& raw(std::span<const char> term);

  Result<void> status() const;
  bool ok() const noexcept { return error_.code == Errc::ok; }
  std::span<const char> bytes() const noexcept;
  std::size_t size() const noexcept;
  void clear(bool with_version = true);
  ei_x_buff_TAG* x() noexcept { return x_; }

 private:
  void fail(std::string what);
  ei_x_buff_TAG* x_;
  Error error_;
};

}  // namespace beamlink::term
