#include "dist/control.hpp"

#include <ei.h>

#include <utility>

namespace beamlink::dist {
namespace {

constexpr unsigned char kVersion = 131;

// What the spec says a control looks like: arity including the operation,
// the shape for error messages, and whether a message term follows.
struct Shape {
  int arity;
  const char* text;
  bool message;
};

Shape shape_of(ControlTag tag) noexcept {
  using T = ControlTag;
  switch (tag) {
    case T::link:
      return {3, "{1, FromPid, ToPid}", false};
    case T::send:
      return {3, "{2, Unused, ToPid}", true};
    case T::exit:
      return {4, "{3, FromPid, ToPid, Reason}", false};
    case T::unlink:
      return {3, "{4, FromPid, ToPid}", false};
    case T::node_link:
      return {1, "{5}", false};
    case T::reg_send:
      return {4, "{6, FromPid, Unused, ToName}", true};
    case T::group_leader:
      return {3, "{7, FromPid, ToPid}", false};
    case T::exit2:
      return {4, "{8, FromPid, ToPid, Reason}", false};
    case T::send_tt:
      return {4, "{12, Unused, ToPid, TraceToken}", true};
    case T::exit_tt:
      return {5, "{13, FromPid, ToPid, TraceToken, Reason}", false};
    case T::reg_send_tt:
      return {5, "{16, FromPid, Unused, ToName, TraceToken}", true};
    case T::exit2_tt:
      return {5, "{18, FromPid, ToPid, TraceToken, Reason}", false};
    case T::monitor_p:
      return {4, "{19, FromPid, ToProc, Ref}", false};
    case T::demonitor_p:
      return {4, "{20, FromPid, ToProc, Ref}", false};
    case T::monitor_p_exit:
      return {5, "{21, FromProc, ToPid, Ref, Reason}", false};
    case T::send_sender:
      return {3, "{22, FromPid, ToPid}", true};
    case T::send_sender_tt:
      return {4, "{23, FromPid, ToPid, TraceToken}", true};
    case T::payload_exit:
      return {3, "{24, FromPid, ToPid}", true};
    case T::payload_exit_tt:
      return {4, "{25, FromPid, ToPid, TraceToken}", true};
    case T::payload_exit2:
      return {3, "{26, FromPid, ToPid}", true};
    case T::payload_exit2_tt:
      return {4, "{27, FromPid, ToPid, TraceToken}", true};
    case T::payload_monitor_p_exit:
      return {4, "{28, FromProc, ToPid, Ref}", true};
    case T::spawn_request:
      return {6, "{29, ReqId, From, GroupLeader, {Module, Function, Arity}, OptList}", true};
    case T::spawn_request_tt:
      return {7, "{30, ReqId, From, GroupLeader, {Module, Function, Arity}, OptList, Token}", true};
    case T::spawn_reply:
      return {5, "{31, ReqId, To, Flags, Result}", false};
    case T::spawn_reply_tt:
      return {6, "{32, ReqId, To, Flags, Result, Token}", false};
    case T::alias_send:
      return {3, "{33, FromPid, Alias}", true};
    case T::alias_send_tt:
      return {4, "{34, FromPid, Alias, Token}", true};
    case T::unlink_id:
      return {4, "{35, Id, FromPid, ToPid}", false};
    case T::unlink_id_ack:
      return {4, "{36, Id, FromPid, ToPid}", false};
  }
  return {0, "?", false};
}

Error malformed(std::string what) {
  return make_error(Errc::protocol_error,
                    "malformed control message: " + what + "; closing the connection");
}

// Reads the elements of one control tuple, naming the field in every error.
class Fields {
 public:
  Fields(term::TermReader& r, ControlTag tag) : r_(r), tag_(tag) {}

  Result<void> pid(term::Pid& out, bool& has, const char* field) {
    auto p = r_.read_pid();
    if (!p) return fail(field, "a pid", p.error());
    out = std::move(*p);
    has = true;
    return {};
  }
  Result<void> atom(std::string& out, const char* field) {
    if (!r_.next_is_atom()) return fail(field, "an atom");
    auto a = r_.read_atom();
    if (!a) return fail(field, "an atom", a.error());
    out = std::move(*a);
    return {};
  }
  // A pid or a registered name.
  Result<void> proc(term::Pid& pid_out, bool& has_pid, std::string& name_out, const char* field) {
    if (r_.next_is_atom()) return atom(name_out, field);
    auto p = r_.read_pid();
    if (!p) return fail(field, "a pid or an atom", p.error());
    pid_out = std::move(*p);
    has_pid = true;
    return {};
  }
  Result<void> ref(term::Ref& out, bool& has, const char* field) {
    auto v = r_.read_ref();
    if (!v) return fail(field, "a reference", v.error());
    out = std::move(*v);
    has = true;
    return {};
  }
  Result<void> raw(std::span<const char>& out, const char* field) {
    auto v = r_.read_raw();
    if (!v) return fail(field, "a term", v.error());
    out = *v;
    return {};
  }
  Result<void> skip(const char* field) {
    std::span<const char> ignored;
    return raw(ignored, field);
  }
  Result<void> unsigned_integer(std::uint64_t& out, const char* field) {
    // The whole control was validated by term::term_extent(), so ei reads inside it.
    auto type = r_.peek();
    if (!type || (type->tag != ERL_SMALL_INTEGER_EXT && type->tag != ERL_INTEGER_EXT &&
                  type->tag != ERL_SMALL_BIG_EXT && type->tag != ERL_LARGE_BIG_EXT)) {
      return fail(field, "an integer");
    }
    int idx = static_cast<int>(r_.index());
    unsigned long long v = 0;
    if (ei_decode_ulonglong(r_.data(), &idx, &v) < 0) {
      return fail(field, "a non-negative 64-bit integer");
    }
    out = v;
    return skip(field);
  }
  Result<void> tuple_of(int arity, const char* field) {
    auto type = r_.peek();
    if (!type || (type->tag != ERL_SMALL_TUPLE_EXT && type->tag != ERL_LARGE_TUPLE_EXT) ||
        type->size != arity) {
      return fail(field, ("a tuple of " + std::to_string(arity)).c_str());
    }
    return skip(field);
  }
  Result<void> list(const char* field) {
    auto type = r_.peek();
    if (!type ||
        (type->tag != ERL_NIL_EXT && type->tag != ERL_LIST_EXT && type->tag != ERL_STRING_EXT)) {
      return fail(field, "a list");
    }
    return skip(field);
  }

 private:
  Error fail(const char* field, const char* expected, const Error& cause = {}) const {
    Shape s = shape_of(tag_);
    std::string what = std::string(control_tag_name(tag_)) + " " + s.text + ": " + field +
                       " is not " + expected + " (at byte " + std::to_string(r_.index()) + ")";
    if (cause.code != Errc::ok) what += ": " + cause.message;
    return malformed(what);
  }

  term::TermReader& r_;
  ControlTag tag_;
};

#define BEAMLINK_TRY(expr)                                                   \
  do {                                                                       \
    if (auto try_result_ = (expr); !try_result_) return try_result_.error(); \
  } while (0)

Result<void> decode_fields(Fields& f, Control& c) {
  using T = ControlTag;
  const bool tt = base_tag(c.tag) != c.tag;
  switch (base_tag(c.tag)) {
    case T::node_link:
      return {};
    case T::link:
    case T::unlink:
    case T::group_leader:
    case T::send_sender:
    case T::payload_exit:
    case T::payload_exit2:
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "ToPid"));
      break;
    case T::send:
      BEAMLINK_TRY(f.skip("Unused"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "ToPid"));
      break;
    case T::exit:
    case T::exit2:
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "ToPid"));
      if (tt) BEAMLINK_TRY(f.raw(c.trace_token, "TraceToken"));
      BEAMLINK_TRY(f.raw(c.reason, "Reason"));
      return {};
    case T::reg_send:
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.skip("Unused"));
      BEAMLINK_TRY(f.atom(c.to_name, "ToName"));
      break;
    case T::monitor_p:
    case T::demonitor_p:
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.proc(c.to, c.has_to_pid, c.to_name, "ToProc"));
      BEAMLINK_TRY(f.ref(c.ref, c.has_ref, "Ref"));
      break;
    case T::monitor_p_exit:
    case T::payload_monitor_p_exit:
      BEAMLINK_TRY(f.proc(c.from, c.has_from, c.from_name, "FromProc"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "ToPid"));
      BEAMLINK_TRY(f.ref(c.ref, c.has_ref, "Ref"));
      if (c.tag == T::monitor_p_exit) BEAMLINK_TRY(f.raw(c.reason, "Reason"));
      break;
    case T::spawn_request: {
      BEAMLINK_TRY(f.ref(c.ref, c.has_ref, "ReqId"));
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "From"));
      term::Pid group_leader;
      bool has_group_leader = false;
      BEAMLINK_TRY(f.pid(group_leader, has_group_leader, "GroupLeader"));
      BEAMLINK_TRY(f.tuple_of(3, "{Module, Function, Arity}"));
      BEAMLINK_TRY(f.list("OptList"));
      break;
    }
    case T::spawn_reply:
      BEAMLINK_TRY(f.ref(c.ref, c.has_ref, "ReqId"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "To"));
      BEAMLINK_TRY(f.skip("Flags"));
      BEAMLINK_TRY(f.skip("Result"));
      break;
    case T::alias_send:
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.ref(c.ref, c.has_ref, "Alias"));
      break;
    case T::unlink_id:
    case T::unlink_id_ack:
      BEAMLINK_TRY(f.unsigned_integer(c.id, "Id"));
      BEAMLINK_TRY(f.pid(c.from, c.has_from, "FromPid"));
      BEAMLINK_TRY(f.pid(c.to, c.has_to_pid, "ToPid"));
      break;
    default:
      // base_tag() never returns a _TT tag.
      return malformed("internal: no decoder for " + std::string(control_tag_name(c.tag)));
  }
  // Every _TT variant other than EXIT_TT / EXIT2_TT ends with its token.
  if (tt) BEAMLINK_TRY(f.raw(c.trace_token, "TraceToken"));
  return {};
}

#undef BEAMLINK_TRY

std::span<const char> without_version(std::span<const char> term) {
  if (!term.empty() && static_cast<unsigned char>(term[0]) == kVersion) return term.subspan(1);
  return term;
}

void proc(term::TermWriter& w, const ProcRef& p) {
  if (const auto* pid = std::get_if<term::Pid>(&p)) {
    w.pid(*pid);
  } else {
    w.atom(std::get<std::string>(p));
  }
}

term::TermWriter fresh() {
  return term::TermWriter(true);
}

}  // namespace

std::string_view control_tag_name(ControlTag tag) noexcept {
  using T = ControlTag;
  switch (tag) {
    case T::link:
      return "LINK";
    case T::send:
      return "SEND";
    case T::exit:
      return "EXIT";
    case T::unlink:
      return "UNLINK";
    case T::node_link:
      return "NODE_LINK";
    case T::reg_send:
      return "REG_SEND";
    case T::group_leader:
      return "GROUP_LEADER";
    case T::exit2:
      return "EXIT2";
    case T::send_tt:
      return "SEND_TT";
    case T::exit_tt:
      return "EXIT_TT";
    case T::reg_send_tt:
      return "REG_SEND_TT";
    case T::exit2_tt:
      return "EXIT2_TT";
    case T::monitor_p:
      return "MONITOR_P";
    case T::demonitor_p:
      return "DEMONITOR_P";
    case T::monitor_p_exit:
      return "MONITOR_P_EXIT";
    case T::send_sender:
      return "SEND_SENDER";
    case T::send_sender_tt:
      return "SEND_SENDER_TT";
    case T::payload_exit:
      return "PAYLOAD_EXIT";
    case T::payload_exit_tt:
      return "PAYLOAD_EXIT_TT";
    case T::payload_exit2:
      return "PAYLOAD_EXIT2";
    case T::payload_exit2_tt:
      return "PAYLOAD_EXIT2_TT";
    case T::payload_monitor_p_exit:
      return "PAYLOAD_MONITOR_P_EXIT";
    case T::spawn_request:
      return "SPAWN_REQUEST";
    case T::spawn_request_tt:
      return "SPAWN_REQUEST_TT";
    case T::spawn_reply:
      return "SPAWN_REPLY";
    case T::spawn_reply_tt:
      return "SPAWN_REPLY_TT";
    case T::alias_send:
      return "ALIAS_SEND";
    case T::alias_send_tt:
      return "ALIAS_SEND_TT";
    case T::unlink_id:
      return "UNLINK_ID";
    case T::unlink_id_ack:
      return "UNLINK_ID_ACK";
  }
  return "?";
}

bool is_known_control_tag(std::int64_t value) noexcept {
  if (value < 1 || value > 36) return false;
  return control_tag_name(static_cast<ControlTag>(value)) != "?";
}

ControlTag base_tag(ControlTag tag) noexcept {
  using T = ControlTag;
  switch (tag) {
    case T::send_tt:
      return T::send;
    case T::exit_tt:
      return T::exit;
    case T::reg_send_tt:
      return T::reg_send;
    case T::exit2_tt:
      return T::exit2;
    case T::send_sender_tt:
      return T::send_sender;
    case T::payload_exit_tt:
      return T::payload_exit;
    case T::payload_exit2_tt:
      return T::payload_exit2;
    case T::spawn_request_tt:
      return T::spawn_request;
    case T::spawn_reply_tt:
      return T::spawn_reply;
    case T::alias_send_tt:
      return T::alias_send;
    default:
      return tag;
  }
}

Result<Control> decode_control(std::span<const char> bytes) {
  if (bytes.empty() || static_cast<unsigned char>(bytes[0]) != kVersion) {
    return malformed("the control term does not start with the version byte 131");
  }
  auto extent = term::term_extent(bytes.data(), bytes.size(), 1);
  if (!extent) return malformed("invalid external term format: " + extent.error().message);
  if (1 + *extent != bytes.size()) {
    return malformed(std::to_string(bytes.size() - 1 - *extent) + " bytes after the control term");
  }

  term::TermReader r(bytes.data(), bytes.size(), 1);
  auto type = r.peek();
  if (!type || (type->tag != ERL_SMALL_TUPLE_EXT && type->tag != ERL_LARGE_TUPLE_EXT)) {
    return malformed("the control is not a tuple (term tag " +
                     std::to_string(static_cast<unsigned char>(bytes[1])) + ")");
  }
  auto arity = r.read_tuple_header();
  if (!arity) return malformed(arity.error().message);
  if (*arity < 1) return malformed("the control is an empty tuple");

  auto op_type = r.peek();
  if (!op_type || (op_type->tag != ERL_SMALL_INTEGER_EXT && op_type->tag != ERL_INTEGER_EXT)) {
    return malformed("the control tuple's first element is not an integer operation number");
  }
  auto op = r.read_int();
  if (!op) return malformed(op.error().message);
  if (!is_known_control_tag(*op)) {
    return make_error(Errc::unexpected_message, "unknown control tag " + std::to_string(*op) +
                                                    " (a tuple of " + std::to_string(*arity) +
                                                    "); ignoring the frame");
  }

  Control c;
  c.tag = static_cast<ControlTag>(*op);
  const Shape shape = shape_of(c.tag);
  if (*arity != shape.arity) {
    return malformed(std::string(control_tag_name(c.tag)) + " has arity " + std::to_string(*arity) +
                     ", expected " + std::to_string(shape.arity) + " " + shape.text);
  }
  c.expects_message = shape.message;
  Fields fields(r, c.tag);
  if (auto ok = decode_fields(fields, c); !ok) return std::move(ok).error();
  return c;
}

// ------------------------------------------------------------------ encoders

void encode_send(term::TermWriter& w, const term::Pid& to) {
  w.tuple(3).integer(static_cast<int>(ControlTag::send)).atom("").pid(to);
}

void encode_reg_send(term::TermWriter& w, const term::Pid& from, std::string_view name) {
  w.tuple(4).integer(static_cast<int>(ControlTag::reg_send)).pid(from).atom("").atom(name);
}

void encode_link(term::TermWriter& w, const term::Pid& from, const term::Pid& to) {
  w.tuple(3).integer(static_cast<int>(ControlTag::link)).pid(from).pid(to);
}

void encode_exit(term::TermWriter& w, const term::Pid& from, const term::Pid& to,
                 std::span<const char> reason) {
  w.tuple(4)
      .integer(static_cast<int>(ControlTag::exit))
      .pid(from)
      .pid(to)
      .raw(without_version(reason));
}

void encode_exit2(term::TermWriter& w, const term::Pid& from, const term::Pid& to,
                  std::span<const char> reason) {
  w.tuple(4)
      .integer(static_cast<int>(ControlTag::exit2))
      .pid(from)
      .pid(to)
      .raw(without_version(reason));
}

void encode_unlink_id(term::TermWriter& w, std::uint64_t id, const term::Pid& from,
                      const term::Pid& to) {
  w.tuple(4).integer(static_cast<int>(ControlTag::unlink_id)).uinteger(id).pid(from).pid(to);
}

void encode_unlink_id_ack(term::TermWriter& w, std::uint64_t id, const term::Pid& from,
                          const term::Pid& to) {
  w.tuple(4).integer(static_cast<int>(ControlTag::unlink_id_ack)).uinteger(id).pid(from).pid(to);
}

void encode_monitor_p(term::TermWriter& w, const term::Pid& from, const ProcRef& to,
                      const term::Ref& ref) {
  w.tuple(4).integer(static_cast<int>(ControlTag::monitor_p)).pid(from);
  proc(w, to);
  w.ref(ref);
}

void encode_demonitor_p(term::TermWriter& w, const term::Pid& from, const ProcRef& to,
                        const term::Ref& ref) {
  w.tuple(4).integer(static_cast<int>(ControlTag::demonitor_p)).pid(from);
  proc(w, to);
  w.ref(ref);
}

void encode_monitor_p_exit(term::TermWriter& w, const ProcRef& from, const term::Pid& to,
                           const term::Ref& ref, std::span<const char> reason) {
  w.tuple(5).integer(static_cast<int>(ControlTag::monitor_p_exit));
  proc(w, from);
  w.pid(to).ref(ref).raw(without_version(reason));
}

void encode_alias_send(term::TermWriter& w, const term::Pid& from, const term::Ref& alias) {
  w.tuple(3).integer(static_cast<int>(ControlTag::alias_send)).pid(from).ref(alias);
}

term::TermWriter encode_send(const term::Pid& to) {
  auto w = fresh();
  encode_send(w, to);
  return w;
}

term::TermWriter encode_reg_send(const term::Pid& from, std::string_view name) {
  auto w = fresh();
  encode_reg_send(w, from, name);
  return w;
}

term::TermWriter encode_link(const term::Pid& from, const term::Pid& to) {
  auto w = fresh();
  encode_link(w, from, to);
  return w;
}

term::TermWriter encode_exit(const term::Pid& from, const term::Pid& to,
                             std::span<const char> reason) {
  auto w = fresh();
  encode_exit(w, from, to, reason);
  return w;
}

term::TermWriter encode_exit2(const term::Pid& from, const term::Pid& to,
                              std::span<const char> reason) {
  auto w = fresh();
  encode_exit2(w, from, to, reason);
  return w;
}

term::TermWriter encode_unlink_id(std::uint64_t id, const term::Pid& from, const term::Pid& to) {
  auto w = fresh();
  encode_unlink_id(w, id, from, to);
  return w;
}

term::TermWriter encode_unlink_id_ack(std::uint64_t id, const term::Pid& from,
                                      const term::Pid& to) {
  auto w = fresh();
  encode_unlink_id_ack(w, id, from, to);
  return w;
}

term::TermWriter encode_monitor_p(const term::Pid& from, const ProcRef& to, const term::Ref& ref) {
  auto w = fresh();
  encode_monitor_p(w, from, to, ref);
  return w;
}

term::TermWriter encode_demonitor_p(const term::Pid& from, const ProcRef& to,
                                    const term::Ref& ref) {
  auto w = fresh();
  encode_demonitor_p(w, from, to, ref);
  return w;
}

term::TermWriter encode_monitor_p_exit(const ProcRef& from, const term::Pid& to,
                                       const term::Ref& ref, std::span<const char> reason) {
  auto w = fresh();
  encode_monitor_p_exit(w, from, to, ref, reason);
  return w;
}

term::TermWriter encode_alias_send(const term::Pid& from, const term::Ref& alias) {
  auto w = fresh();
  encode_alias_send(w, from, alias);
  return w;
}

}  // namespace beamlink::dist
