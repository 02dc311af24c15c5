#include "term/term.hpp"

#include "bad_term.hpp"
#include "common/bytes.hpp"

#include <ei.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace beamlink::term {
namespace {

using bytes::get_u16;
using bytes::get_u32;
using bytes::put_u32;

// Walks an atom in place (used inside pids, ports and refs, whose fixed-size
// fields follow the node atom). Returns the bytes it takes.
Result<std::size_t> atom_extent(const char* buf, std::size_t size, std::size_t at) {
  if (at >= size) return detail::bad_term_at("truncated atom", at);
  auto tag = static_cast<unsigned char>(buf[at]);
  std::size_t header = 0, len = 0;
  switch (tag) {
    case ERL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
      if (size - at < 3) return detail::bad_term_at("truncated atom length", at);
      header = 3;
      len = get_u16(buf + at + 1);
      break;
    case ERL_SMALL_ATOM_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT:
      if (size - at < 2) return detail::bad_term_at("truncated atom length", at);
      header = 2;
      len = static_cast<unsigned char>(buf[at + 1]);
      break;
    default:
      return detail::bad_term_at("expected an atom, got tag " + std::to_string(tag), at);
  }
  if (len > 255 * 4) return detail::bad_term_at("atom longer than 255 characters", at);
  if (size - at - header < len) return detail::bad_term_at("truncated atom text", at);
  return header + len;
}

}  // namespace

std::size_t PidHash::operator()(const Pid& p) const noexcept {
  std::size_t h = std::hash<std::string>{}(p.node);
  h ^= (std::size_t{p.num} << 1) ^ (std::size_t{p.serial} << 33) ^ (std::size_t{p.creation} << 17);
  return h;
}

std::size_t RefHash::operator()(const Ref& r) const noexcept {
  std::size_t h = std::hash<std::string>{}(r.node) ^ r.creation;
  for (std::uint32_t i = 0; i < r.len && i < r.n.size(); ++i) h = h * 1000003u ^ r.n[i];
  return h;
}

std::string to_string(const Pid& p) {
  return "<" + p.node + "." + std::to_string(p.num) + "." + std::to_string(p.serial) + ">";
}

std::string to_string(const Ref& r) {
  std::string s = "#Ref<" + r.node;
  for (std::uint32_t i = r.len; i > 0; --i) {
    s += '.';
    s += std::to_string(r.n[i - 1]);
  }
  return s + ">";
}

Result<std::size_t> term_extent(const char* buf, std::size_t size, std::size_t index,
                                const TermLimits& limits) {
  std::size_t at = index;
  std::size_t pending = 1;  // terms still to walk
  std::size_t walked = 0;
  while (pending > 0) {
    if (at >= size) return detail::bad_term_at("truncated term", at);
    if (++walked > limits.max_terms) return detail::bad_term_at("term has too many elements", at);
    --pending;
    const std::size_t left = size - at;
    auto tag = static_cast<unsigned char>(buf[at]);
    auto need = [&](std::size_t n) -> bool { return left >= n; };
    std::size_t add_terms = 0;
    switch (tag) {
      case ERL_SMALL_INTEGER_EXT:
        if (!need(2)) return detail::bad_term_at("truncated small integer", at);
        at += 2;
        break;
      case ERL_INTEGER_EXT:
        if (!need(5)) return detail::bad_term_at("truncated integer", at);
        at += 5;
        break;
      case NEW_FLOAT_EXT:
        if (!need(9)) return detail::bad_term_at("truncated float", at);
        at += 9;
        break;
      case ERL_FLOAT_EXT:
        if (!need(32)) return detail::bad_term_at("truncated float", at);
        at += 32;
        break;
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT: {
        auto n = atom_extent(buf, size, at);
        if (!n) return n.error();
        at += *n;
        break;
      }
      case ERL_SMALL_TUPLE_EXT:
        if (!need(2)) return detail::bad_term_at("truncated tuple header", at);
        add_terms = static_cast<unsigned char>(buf[at + 1]);
        at += 2;
        break;
      case ERL_LARGE_TUPLE_EXT:
        if (!need(5)) return detail::bad_term_at("truncated tuple header", at);
        add_terms = get_u32(buf + at + 1);
        at += 5;
        break;
      case ERL_MAP_EXT:
        if (!need(5)) return detail::bad_term_at("truncated map header", at);
        add_terms = std::size_t{get_u32(buf + at + 1)} * 2;
        at += 5;
        break;
      case ERL_NIL_EXT:
        at += 1;
        break;
      case ERL_STRING_EXT: {
        if (!need(3)) return detail::bad_term_at("truncated string header", at);
        std::size_t n = get_u16(buf + at + 1);
        if (left - 3 < n) return detail::bad_term_at("truncated string", at);
        at += 3 + n;
        break;
      }
      case ERL_LIST_EXT:
        if (!need(5)) return detail::bad_term_at("truncated list header", at);
        add_terms = std::size_t{get_u32(buf + at + 1)} + 1;  // elements and the tail
        at += 5;
        break;
      case ERL_BINARY_EXT: {
        if (!need(5)) return detail::bad_term_at("truncated binary header", at);
        std::size_t n = get_u32(buf + at + 1);
        if (left - 5 < n) return detail::bad_term_at("truncated binary", at);
        at += 5 + n;
        break;
      }
      case ERL_BIT_BINARY_EXT: {
        if (!need(6)) return detail::bad_term_at("truncated bit binary header", at);
        std::size_t n = get_u32(buf + at + 1);
        if (left - 6 < n) return detail::bad_term_at("truncated bit binary", at);
        at += 6 + n;
        break;
      }
      case ERL_SMALL_BIG_EXT: {
        if (!need(3)) return detail::bad_term_at("truncated big integer header", at);
        std::size_t n = static_cast<unsigned char>(buf[at + 1]);
        if (left - 3 < n) return detail::bad_term_at("truncated big integer", at);
        at += 3 + n;
        break;
      }
      case ERL_LARGE_BIG_EXT: {
        if (!need(6)) return detail::bad_term_at("truncated big integer header", at);
        std::size_t n = get_u32(buf + at + 1);
        if (left - 6 < n) return detail::bad_term_at("truncated big integer", at);
        at += 6 + n;
        break;
      }
      case ERL_PID_EXT:
      case ERL_NEW_PID_EXT: {
        auto n = atom_extent(buf, size, at + 1);
        if (!n) return n.error();
        std::size_t fixed = tag == ERL_PID_EXT ? 9 : 12;
        if (left - 1 - *n < fixed) return detail::bad_term_at("truncated pid", at);
        at += 1 + *n + fixed;
        break;
      }
      case ERL_PORT_EXT:
      case ERL_NEW_PORT_EXT:
      case ERL_V4_PORT_EXT: {
        auto n = atom_extent(buf, size, at + 1);
        if (!n) return n.error();
        std::size_t fixed = tag == ERL_PORT_EXT ? 5 : tag == ERL_NEW_PORT_EXT ? 8 : 12;
        if (left - 1 - *n < fixed) return detail::bad_term_at("truncated port", at);
        at += 1 + *n + fixed;
        break;
      }
      case ERL_REFERENCE_EXT: {
        auto n = atom_extent(buf, size, at + 1);
        if (!n) return n.error();
        if (left - 1 - *n < 5) return detail::bad_term_at("truncated reference", at);
        at += 1 + *n + 5;
        break;
      }
      case ERL_NEW_REFERENCE_EXT:
      case ERL_NEWER_REFERENCE_EXT: {
        if (!need(3)) return detail::bad_term_at("truncated reference header", at);
        std::size_t words = get_u16(buf + at + 1);
        if (words == 0 || words > 5)
          return detail::bad_term_at("reference with " + std::to_string(words) + " words", at);
        auto n = atom_extent(buf, size, at + 3);
        if (!n) return n.error();
        std::size_t fixed = (tag == ERL_NEW_REFERENCE_EXT ? 1 : 4) + 4 * words;
        if (left - 3 - *n < fixed) return detail::bad_term_at("truncated reference", at);
        at += 3 + *n + fixed;
        break;
      }
      case ERL_NEW_FUN_EXT: {
        if (!need(5)) return detail::bad_term_at("truncated fun header", at);
        std::size_t n =
            get_u32(buf + at + 1);  // includes the size field and tag? size counts from Size
        if (n < 4 || left - 1 < n) return detail::bad_term_at("truncated fun", at);
        at += 1 + n;
        break;
      }
      case ERL_EXPORT_EXT:
        add_terms = 3;  // module, function, arity
        at += 1;
        break;
      default:
        return detail::bad_term_at("unsupported term tag " + std::to_string(tag), at);
    }
    pending += add_terms;
    // Every pending term needs at least one byte; refuse impossible counts
    // before they turn into a long walk.
    if (pending > size - at)
      return detail::bad_term_at("term claims more elements than bytes remain", at);
  }
  return at - index;
}

Result<TermReader> TermReader::from_external(std::span<const char> bytes) {
  if (bytes.empty()) return make_error(Errc::bad_term, "empty term");
  if (static_cast<unsigned char>(bytes[0]) != 131)
    return make_error(Errc::bad_term, "term does not start with version byte 131");
  return TermReader(bytes.data(), bytes.size(), 1);
}

Result<void> TermReader::ensure_valid(std::size_t* extent) const {
  // Decoders only ever move index_ from one term boundary to the next, so
  // any position before valid_until_ starts a sub-term of a term already
  // walked: no need to walk it again (walking each header's whole container
  // again would make reading nested terms quadratic).
  if (!extent && index_ < valid_until_) return {};
  auto n = term_extent(buf_, size_, index_);
  if (!n) return n.error();
  if (extent) *extent = *n;
  if (index_ + *n > valid_until_) valid_until_ = index_ + *n;
  return {};
}

Result<TermType> TermReader::peek() const {
  if (at_end()) return make_error(Errc::bad_term, "no term left");
  int type = 0, sz = 0;
  int idx = static_cast<int>(index_);
  // ei_get_type reads at most the tag and its header; check those exist.
  if (auto v = ensure_valid(nullptr); !v) return v.error();
  if (ei_get_type(buf_, &idx, &type, &sz) < 0)
    return detail::bad_term_at("undecodable term", index_);
  return TermType{type, sz};
}

bool TermReader::next_is_atom() const {
  auto t = peek();
  return t && (t->tag == ERL_ATOM_EXT || t->tag == ERL_SMALL_ATOM_EXT ||
               t->tag == ERL_ATOM_UTF8_EXT || t->tag == ERL_SMALL_ATOM_UTF8_EXT);
}

#define BEAMLINK_DECODE(call, what)                                                        \
  do {                                                                                     \
    if (auto valid = ensure_valid(nullptr); !valid) return valid.error();                  \
    int idx = static_cast<int>(index_);                                                    \
    if ((call) < 0) return detail::bad_term_at(std::string("expected ") + (what), index_); \
    index_ = static_cast<std::size_t>(idx);                                                \
  } while (0)

Result<std::string> TermReader::read_atom() {
  char atom[MAXATOMLEN_UTF8];
  BEAMLINK_DECODE(ei_decode_atom_as(buf_, &idx, atom, sizeof atom, ERLANG_UTF8, nullptr, nullptr),
                  "an atom");
  return std::string(atom);
}

Result<std::int64_t> TermReader::read_int() {
  long long v = 0;
  BEAMLINK_DECODE(ei_decode_longlong(buf_, &idx, &v), "an integer");
  return static_cast<std::int64_t>(v);
}

Result<double> TermReader::read_double() {
  double v = 0;
  BEAMLINK_DECODE(ei_decode_double(buf_, &idx, &v), "a float");
  return v;
}

Result<std::string_view> TermReader::read_binary() {
  std::size_t extent = 0;
  if (auto v = ensure_valid(&extent); !v) return v.error();
  if (static_cast<unsigned char>(buf_[index_]) != ERL_BINARY_EXT)
    return detail::bad_term_at("expected a binary", index_);
  std::size_t len = get_u32(buf_ + index_ + 1);
  std::string_view out(buf_ + index_ + 5, len);
  index_ += extent;
  return out;
}

Result<std::string> TermReader::read_string() {
  auto t = peek();
  if (!t) return t.error();
  if (t->tag == ERL_NIL_EXT) {
    index_ += 1;
    return std::string();
  }
  if (t->tag == ERL_STRING_EXT) {
    std::string s(static_cast<std::size_t>(t->size), '\0');
    BEAMLINK_DECODE(ei_decode_string(buf_, &idx, s.data()), "a string");
    return s;
  }
  if (t->tag == ERL_LIST_EXT) {
    TermReader r = *this;
    auto n = r.read_list_header();
    if (!n) return n.error();
    std::string s;
    for (int i = 0; i < *n; ++i) {
      auto c = r.read_int();
      if (!c || *c < 0 || *c > 255) return detail::bad_term_at("expected a list of bytes", index_);
      s.push_back(static_cast<char>(*c));
    }
    auto tail = r.read_list_header();
    if (!tail || *tail != 0) return detail::bad_term_at("expected a proper list", index_);
    *this = r;
    return s;
  }
  return detail::bad_term_at("expected a string", index_);
}

Result<int> TermReader::read_tuple_header() {
  int arity = 0;
  BEAMLINK_DECODE(ei_decode_tuple_header(buf_, &idx, &arity), "a tuple");
  return arity;
}

Result<int> TermReader::read_list_header() {
  int n = 0;
  BEAMLINK_DECODE(ei_decode_list_header(buf_, &idx, &n), "a list");
  return n;
}

Result<int> TermReader::read_map_header() {
  int n = 0;
  BEAMLINK_DECODE(ei_decode_map_header(buf_, &idx, &n), "a map");
  return n;
}

Result<Pid> TermReader::read_pid() {
  erlang_pid p;
  BEAMLINK_DECODE(ei_decode_pid(buf_, &idx, &p), "a pid");
  return Pid{p.node, p.num, p.serial, p.creation};
}

Result<Ref> TermReader::read_ref() {
  erlang_ref r;
  BEAMLINK_DECODE(ei_decode_ref(buf_, &idx, &r), "a reference");
  Ref out;
  out.node = r.node;
  out.creation = r.creation;
  out.len = static_cast<std::uint32_t>(r.len);
  for (int i = 0; i < r.len && i < 5; ++i) out.n[static_cast<std::size_t>(i)] = r.n[i];
  return out;
}

#undef BEAMLINK_DECODE

Result<std::span<const char>> TermReader::read_raw() {
  std::size_t extent = 0;
  if (auto v = ensure_valid(&extent); !v) return v.error();
  std::span<const char> out(buf_ + index_, extent);
  index_ += extent;
  return out;
}

Result<void> TermReader::skip() {
  auto r = read_raw();
  if (!r) return r.error();
  return {};
}

Result<void> TermReader::expect_atom(std::string_view atom) {
  auto a = read_atom();
  if (!a) return a.error();
  if (*a != atom)
    return make_error(Errc::bad_term,
                      "expected atom '" + std::string(atom) + "', got '" + *a + "'");
  return {};
}

// ---------------------------------------------------------------- TermWriter

TermWriter::TermWriter(bool with_version) : x_(new ei_x_buff) {
  // ei_x_new starts at 100 bytes and grows by reallocs of 200: a relay
  // broadcast (~400 bytes) took three. The buffer is ei's own struct and
  // ei_x_free frees it with free(), so it can start larger.
  constexpr int kInitial = 512;
  x_->buff = static_cast<char*>(std::malloc(kInitial));
  x_->buffsz = x_->buff ? kInitial : 0;
  x_->index = 0;
  if (!x_->buff || (with_version && ei_encode_version(x_->buff, &x_->index) < 0))
    fail("out of memory");
}

TermWriter::~TermWriter() {
  if (x_) {
    ei_x_free(x_);
    delete x_;
  }
}

TermWriter::TermWriter(TermWriter&& other) noexcept
    : x_(std::exchange(other.x_, nullptr)), error_(std::move(other.error_)) {}

TermWriter& TermWriter::operator=(TermWriter&& other) noexcept {
  if (this != &other) {
    if (x_) {
      ei_x_free(x_);
      delete x_;
    }
    x_ = std::exchange(other.x_, nullptr);
    error_ = std::move(other.error_);
  }
  return *this;
}

void TermWriter::fail(std::string what) {
  if (ok()) error_ = make_error(Errc::bad_term, "cannot encode " + what);
}

#define BEAMLINK_ENCODE(call, what)     \
  do {                                  \
    if (ok() && (call) < 0) fail(what); \
    return *this;                       \
  } while (0)

TermWriter& TermWriter::atom(std::string_view a) {
  // The limit is 255 characters, not bytes: a UTF-8 atom may take 1020.
  std::size_t chars = 0;
  for (char c : a) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  if (chars > 255 || a.size() > 255 * 4) {
    fail("atom longer than 255 characters");
    return *this;
  }
  BEAMLINK_ENCODE(
      ei_x_encode_atom_len_as(x_, a.data(), static_cast<int>(a.size()), ERLANG_UTF8, ERLANG_UTF8),
      "atom");
}

TermWriter& TermWriter::binary(std::string_view bytes) {
  BEAMLINK_ENCODE(ei_x_encode_binary(x_, bytes.data(), static_cast<int>(bytes.size())), "binary");
}

TermWriter& TermWriter::integer(std::int64_t v) {
  // ei writes INTEGER_EXT only for 28-bit values and SMALL_BIG_EXT above;
  // erl (and term_to_binary) use INTEGER_EXT for the whole 32-bit range.
  if ((v > 255 || v < 0) && v >= INT32_MIN && v <= INT32_MAX) {
    char b[5] = {static_cast<char>(ERL_INTEGER_EXT)};
    put_u32(b + 1, static_cast<std::uint32_t>(v));
    BEAMLINK_ENCODE(ei_x_append_buf(x_, b, sizeof b), "integer");
  }
  BEAMLINK_ENCODE(ei_x_encode_longlong(x_, v), "integer");
}

TermWriter& TermWriter::uinteger(std::uint64_t v) {
  if (v <= INT32_MAX) return integer(static_cast<std::int64_t>(v));
  BEAMLINK_ENCODE(ei_x_encode_ulonglong(x_, v), "integer");
}

TermWriter& TermWriter::floating(double v) {
  BEAMLINK_ENCODE(ei_x_encode_double(x_, v), "float");
}

TermWriter& TermWriter::string(std::string_view s) {
  BEAMLINK_ENCODE(ei_x_encode_string_len(x_, s.data(), static_cast<int>(s.size())), "string");
}

TermWriter& TermWriter::tuple(int arity) {
  BEAMLINK_ENCODE(ei_x_encode_tuple_header(x_, arity), "tuple header");
}

TermWriter& TermWriter::list(int length) {
  if (length == 0) return nil();
  BEAMLINK_ENCODE(ei_x_encode_list_header(x_, length), "list header");
}

TermWriter& TermWriter::nil() {
  BEAMLINK_ENCODE(ei_x_encode_empty_list(x_), "empty list");
}

TermWriter& TermWriter::map(int arity) {
  BEAMLINK_ENCODE(ei_x_encode_map_header(x_, arity), "map header");
}

TermWriter& TermWriter::pid(const Pid& p) {
  // NEW_PID_EXT written directly: ei's erlang_pid is a 1 KiB struct.
  if (!ok()) return *this;
  char head = static_cast<char>(ERL_NEW_PID_EXT);
  if (ei_x_append_buf(x_, &head, 1) < 0) {
    fail("pid");
    return *this;
  }
  atom(p.node);
  char fixed[12];
  put_u32(fixed, p.num);
  put_u32(fixed + 4, p.serial);
  put_u32(fixed + 8, p.creation);
  if (ok() && ei_x_append_buf(x_, fixed, sizeof fixed) < 0) fail("pid");
  return *this;
}

TermWriter& TermWriter::ref(const Ref& r) {
  if (!ok()) return *this;
  // A copy: atom() below could (as far as the compiler knows) change r.len.
  const std::uint32_t len = r.len;
  if (len == 0 || len > 5) {
    fail("reference with " + std::to_string(len) + " words");
    return *this;
  }
  char head[3] = {static_cast<char>(ERL_NEWER_REFERENCE_EXT), 0, static_cast<char>(len)};
  if (ei_x_append_buf(x_, head, 3) < 0) {
    fail("reference");
    return *this;
  }
  atom(r.node);
  char fixed[4 + 20];
  put_u32(fixed, r.creation);
  for (std::uint32_t i = 0; i < len; ++i) put_u32(fixed + 4 + 4 * i, r.n[i]);
  if (ok() && ei_x_append_buf(x_, fixed, static_cast<int>(4 + 4 * len)) < 0) fail("reference");
  return *this;
}

TermWriter& TermWriter::raw(std::span<const char> term) {
  BEAMLINK_ENCODE(ei_x_append_buf(x_, term.data(), static_cast<int>(term.size())), "raw term");
}

#undef BEAMLINK_ENCODE

Result<void> TermWriter::status() const {
  if (ok()) return {};
  return error_;
}

std::span<const char> TermWriter::bytes() const noexcept {
  return {x_->buff, static_cast<std::size_t>(x_->index)};
}

std::size_t TermWriter::size() const noexcept {
  return static_cast<std::size_t>(x_->index);
}

void TermWriter::clear(bool with_version) {
  x_->index = 0;
  error_ = Error{};
  if (with_version && ei_x_encode_version(x_) < 0) fail("version");
}

}  // namespace beamlink::term
