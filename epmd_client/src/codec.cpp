// The epmd protocol as bytes. Spec: ERTS User's Guide, "Distribution
// Protocol", section "EPMD Protocol".
#include "epmd_client/codec.hpp"

#include <cassert>
#include <charconv>

namespace beamlink::epmd_client {

namespace {

Error malformed(std::string what) {
  return make_error(Errc::protocol_error, "malformed epmd response: " + std::move(what));
}

// The one bounds-checked reader every decoder goes through. Each get_* returns
// false (and consumes nothing) when fewer bytes remain than it needs.
class Cursor {
 public:
  explicit Cursor(std::span<const char> bytes) : bytes_(bytes) {}

  std::size_t remaining() const { return bytes_.size() - pos_; }
  std::size_t position() const { return pos_; }

  bool get_u8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = byte(0);
    pos_ += 1;
    return true;
  }
  bool get_u16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = static_cast<uint16_t>((byte(0) << 8) | byte(1));
    pos_ += 2;
    return true;
  }
  bool get_u32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = (uint32_t{byte(0)} << 24) | (uint32_t{byte(1)} << 16) | (uint32_t{byte(2)} << 8) |
        uint32_t{byte(3)};
    pos_ += 4;
    return true;
  }
  bool get_bytes(std::size_t n, std::string& out) {
    if (remaining() < n) return false;
    out.assign(bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  uint8_t byte(std::size_t i) const { return static_cast<uint8_t>(bytes_[pos_ + i]); }
  std::span<const char> bytes_;
  std::size_t pos_ = 0;
};

// Appends with the length prefix once the body is complete.
class Writer {
 public:
  void u8(uint8_t v) { body_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v & 0xff));
  }
  void bytes(std::string_view s) { body_.append(s); }
  std::string finish() && {
    assert(body_.size() <= 0xffff);
    std::string out;
    out.reserve(body_.size() + 2);
    out.push_back(static_cast<char>((body_.size() >> 8) & 0xff));
    out.push_back(static_cast<char>(body_.size() & 0xff));
    out += body_;
    return out;
  }

 private:
  std::string body_;
};

Result<void> no_trailing(const Cursor& c, std::string_view what) {
  if (c.remaining() == 0) return {};
  return malformed(std::to_string(c.remaining()) + " unexpected bytes after the " +
                   std::string(what));
}

}  // namespace

Result<void> check_alive_name(std::string_view alive) {
  if (alive.empty())
    return make_error(Errc::invalid_argument,
                      "the node name is empty — pass a name like 'beamlink'");
  if (alive.size() > max_name_bytes)
    return make_error(Errc::invalid_argument, "the node name is " + std::to_string(alive.size()) +
                                                  " bytes long; epmd accepts at most " +
                                                  std::to_string(max_name_bytes));
  if (alive.find('@') != std::string_view::npos)
    return make_error(Errc::invalid_argument, "the node name '" + std::string(alive) +
                                                  "' contains '@' — pass only the part before "
                                                  "'@' (epmd knows names on its own host only)");
  for (char ch : alive) {
    auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f)
      return make_error(Errc::invalid_argument,
                        "the node name contains a control character — use letters, digits, "
                        "'_' and '-'");
  }
  return {};
}

// ALIVE2_REQ (120): PortNo(2) NodeType(1) Protocol(1) HighestVersion(2)
// LowestVersion(2) Nlen(2) NodeName Elen(2) Extra.
std::string encode_alive2_req(uint16_t port, std::string_view alive, uint8_t node_type,
                              uint16_t highest, uint16_t lowest, std::string_view extra) {
  assert(alive.size() <= max_name_bytes && extra.size() <= max_name_bytes);
  Writer w;
  w.u8(static_cast<uint8_t>(Tag::alive2_req));
  w.u16(port);
  w.u8(node_type);
  w.u8(protocol_tcp_ipv4);
  w.u16(highest);
  w.u16(lowest);
  w.u16(static_cast<uint16_t>(alive.size()));
  w.bytes(alive);
  w.u16(static_cast<uint16_t>(extra.size()));
  w.bytes(extra);
  return std::move(w).finish();
}

// PORT_PLEASE2_REQ (122): NodeName (the rest of the request).
std::string encode_port_please2_req(std::string_view alive) {
  assert(alive.size() <= max_name_bytes);
  Writer w;
  w.u8(static_cast<uint8_t>(Tag::port_please2_req));
  w.bytes(alive);
  return std::move(w).finish();
}

// NAMES_REQ (110): the tag alone.
std::string encode_names_req() {
  Writer w;
  w.u8(static_cast<uint8_t>(Tag::names_req));
  return std::move(w).finish();
}

// ALIVE2_X_RESP (118): Result(1) Creation(4).
// ALIVE2_RESP (121): Result(1) Creation(2).
Result<std::optional<uint32_t>> decode_alive2_resp(std::span<const char> bytes) {
  Cursor c(bytes);
  uint8_t tag = 0;
  if (!c.get_u8(tag)) return std::optional<uint32_t>{};
  if (tag != static_cast<uint8_t>(Tag::alive2_x_resp) &&
      tag != static_cast<uint8_t>(Tag::alive2_resp))
    return malformed("expected ALIVE2_X_RESP (118) or ALIVE2_RESP (121), got tag " +
                     std::to_string(tag));
  const bool x = tag == static_cast<uint8_t>(Tag::alive2_x_resp);
  uint8_t result = 0;
  if (!c.get_u8(result)) return std::optional<uint32_t>{};
  uint32_t creation = 0;
  if (x) {
    if (!c.get_u32(creation)) return std::optional<uint32_t>{};
  } else {
    uint16_t c16 = 0;
    if (!c.get_u16(c16)) return std::optional<uint32_t>{};
    creation = c16;
  }
  if (auto r = no_trailing(c, x ? "ALIVE2_X_RESP" : "ALIVE2_RESP"); !r) return r.error();
  if (result != 0)
    return make_error(Errc::already_exists,
                      "epmd refused the registration (ALIVE2 result " + std::to_string(result) +
                          "): the name is already registered",
                      ErrorDomain::epmd, result);
  return std::optional<uint32_t>{creation};
}

// PORT2_RESP (119): Result(1), then on success PortNo(2) NodeType(1)
// Protocol(1) HighestVersion(2) LowestVersion(2) Nlen(2) NodeName Elen(2)
// Extra. On failure the response is those 2 bytes.
Result<std::optional<NodeInfo>> decode_port2_resp(std::span<const char> bytes) {
  const std::optional<NodeInfo> more;
  Cursor c(bytes);
  uint8_t tag = 0;
  if (!c.get_u8(tag)) return more;
  if (tag != static_cast<uint8_t>(Tag::port2_resp))
    return malformed("expected PORT2_RESP (119), got tag " + std::to_string(tag));
  uint8_t result = 0;
  if (!c.get_u8(result)) return more;
  if (result != 0) {
    if (auto r = no_trailing(c, "PORT2_RESP error"); !r) return r.error();
    return make_error(
        Errc::not_found,
        "epmd has no node by that name (PORT2_RESP result " + std::to_string(result) + ")",
        ErrorDomain::epmd, result);
  }
  NodeInfo n;
  uint16_t nlen = 0;
  if (!c.get_u16(n.port) || !c.get_u8(n.node_type) || !c.get_u8(n.protocol) ||
      !c.get_u16(n.highest_version) || !c.get_u16(n.lowest_version) || !c.get_u16(nlen))
    return more;
  if (nlen == 0 || nlen > max_name_bytes)
    return malformed("PORT2_RESP node name length " + std::to_string(nlen) + " is outside 1.." +
                     std::to_string(max_name_bytes));
  if (!c.get_bytes(nlen, n.name)) return more;
  uint16_t elen = 0;
  if (!c.get_u16(elen)) return more;
  if (elen > max_name_bytes)
    return malformed("PORT2_RESP extra length " + std::to_string(elen) + " is over " +
                     std::to_string(max_name_bytes));
  if (!c.get_bytes(elen, n.extra)) return more;
  if (auto r = no_trailing(c, "PORT2_RESP"); !r) return r.error();
  return std::optional<NodeInfo>{std::move(n)};
}

// NAMES_RESP: EPMDPortNo(4) then NodeInfo text, one
// io_lib:format("name ~ts at port ~p~n") line per node, until epmd closes.
Result<std::vector<NameEntry>> parse_names_resp(std::span<const char> complete) {
  Cursor c(complete);
  uint32_t epmd_port = 0;
  if (!c.get_u32(epmd_port))
    return malformed("NAMES_RESP is " + std::to_string(complete.size()) +
                     " bytes; it starts with a 4-byte epmd port");
  std::string_view text(complete.data() + c.position(), c.remaining());
  std::vector<NameEntry> out;
  constexpr std::string_view prefix = "name ";
  constexpr std::string_view middle = " at port ";
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    const std::string where = "NAMES_RESP line " + std::to_string(line_no);
    if (nl == std::string_view::npos)
      return malformed(where + " is truncated (no newline): '" + std::string(text) + "'");
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    const auto at = line.rfind(middle);
    if (!line.starts_with(prefix) || at == std::string_view::npos || at < prefix.size())
      return malformed(where + " is not 'name <name> at port <port>': '" + std::string(line) + "'");
    NameEntry e;
    e.name = std::string(line.substr(prefix.size(), at - prefix.size()));
    if (e.name.empty()) return malformed(where + " has an empty name");
    const std::string_view digits = line.substr(at + middle.size());
    unsigned long port = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() ||
        port > 0xffff)
      return malformed(where + " has a bad port '" + std::string(digits) + "'");
    e.port = static_cast<uint16_t>(port);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace beamlink::epmd_client
