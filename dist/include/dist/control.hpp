// Distribution control messages: typed decoding of the control term of a
// frame, and encoders for the controls beamlink sends.
//
// ERTS user's guide, "Distribution Protocol", section "Protocol between
// connected nodes" (control messages); operation numbers as in
// erts/emulator/beam/dist.h (DOP_*). A control is a tuple whose first element
// is the operation; the _TT variants insert a trace token and otherwise mean
// the same as their base operation. Some controls are followed by a message
// term in the same frame (Control::expects_message).
//
// Untrusted input: decode_control() validates the whole term with
// term_extent() before reading, and every element through TermReader.
// A malformed control closes the connection; an unknown operation is reported
// separately so the caller can log it and carry on (DESIGN.md).
//
// No I/O; thread-agnostic.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

// Operation numbers ("Protocol between connected nodes", one entry each;
// DOP_* in dist.h). The shape of each control is beside it.
enum class ControlTag : int {
  link = 1,                     // {1, FromPid, ToPid}
  send = 2,                     // {2, Unused, ToPid}                      + Message
  exit = 3,                     // {3, FromPid, ToPid, Reason}
  unlink = 4,                   // {4, FromPid, ToPid}  (obsolete: UNLINK_ID)
  node_link = 5,                // {5}
  reg_send = 6,                 // {6, FromPid, Unused, ToName}            + Message
  group_leader = 7,             // {7, FromPid, ToPid}
  exit2 = 8,                    // {8, FromPid, ToPid, Reason}
  send_tt = 12,                 // {12, Unused, ToPid, TraceToken}         + Message
  exit_tt = 13,                 // {13, FromPid, ToPid, TraceToken, Reason}
  reg_send_tt = 16,             // {16, FromPid, Unused, ToName, TraceToken} + Message
  exit2_tt = 18,                // {18, FromPid, ToPid, TraceToken, Reason}
  monitor_p = 19,               // {19, FromPid, ToProc, Ref}   ToProc: pid or name
  demonitor_p = 20,             // {20, FromPid, ToProc, Ref}
  monitor_p_exit = 21,          // {21, FromProc, ToPid, Ref, Reason}   FromProc: pid or name
  send_sender = 22,             // {22, FromPid, ToPid}                    + Message
  send_sender_tt = 23,          // {23, FromPid, ToPid, TraceToken}        + Message
  payload_exit = 24,            // {24, FromPid, ToPid}                    + Reason
  payload_exit_tt = 25,         // {25, FromPid, ToPid, TraceToken}        + Reason
  payload_exit2 = 26,           // {26, FromPid, ToPid}                    + Reason
  payload_exit2_tt = 27,        // {27, FromPid, ToPid, TraceToken}        + Reason
  payload_monitor_p_exit = 28,  // {28, FromProc, ToPid, Ref}              + Reason
  spawn_request = 29,           // {29, ReqId, From, GroupLeader, {M, F, A}, OptList} + ArgList
  spawn_request_tt = 30,  // {30, ReqId, From, GroupLeader, {M, F, A}, OptList, Token} + ArgList
  spawn_reply = 31,       // {31, ReqId, To, Flags, Result}
  spawn_reply_tt = 32,    // {32, ReqId, To, Flags, Result, Token}
  alias_send = 33,        // {33, FromPid, Alias}                          + Message
  alias_send_tt = 34,     // {34, FromPid, Alias, Token}                   + Message
  unlink_id = 35,         // {35, Id, FromPid, ToPid}
  unlink_id_ack = 36,     // {36, Id, FromPid, ToPid}
};

// The spec's name: "REG_SEND", "MONITOR_P_EXIT", … ("?" for other values).
std::string_view control_tag_name(ControlTag tag) noexcept;
// Whether `value` is one of the operations above.
bool is_known_control_tag(std::int64_t value) noexcept;
// The operation without its trace token: SEND_TT → SEND, ALIAS_SEND_TT →
// ALIAS_SEND, …; other tags map to themselves.
ControlTag base_tag(ControlTag tag) noexcept;

// A decoded control. Which fields are set depends on the tag (see the table
// above); unset fields keep their defaults. Spans point into the bytes given
// to decode_control() and live as long as they do.
struct Control {
  ControlTag tag = ControlTag::send;  // as received (a _TT tag stays _TT)

  term::Pid from;  // FromPid; MONITOR_P_EXIT's FromProc when a pid; SPAWN_REQUEST's From
  bool has_from = false;
  std::string from_name;  // MONITOR_P_EXIT / PAYLOAD_MONITOR_P_EXIT FromProc when a name

  term::Pid to;  // ToPid; MONITOR_P / DEMONITOR_P ToProc when a pid; SPAWN_REPLY's To
  bool has_to_pid = false;
  std::string to_name;  // REG_SEND ToName; MONITOR_P / DEMONITOR_P ToProc when a name

  term::Ref ref;  // the monitor reference, the ALIAS_SEND alias, or SPAWN_* ReqId
  bool has_ref = false;

  std::uint64_t id = 0;  // UNLINK_ID / UNLINK_ID_ACK

  // EXIT, EXIT2, MONITOR_P_EXIT (and _TT): the reason, raw term bytes without
  // a version byte. For PAYLOAD_* the reason is the frame's message instead.
  std::span<const char> reason;
  std::span<const char> trace_token;  // _TT variants: raw term bytes without a version byte

  bool expects_message = false;  // the frame must carry a message term after this control
};

// Decodes a control term that starts with its 131 version byte (Frame::control).
// Errors:
//   unexpected_message  a well-formed tuple whose operation number is unknown
//                       ("unknown control tag 99"): log it and ignore the frame
//   protocol_error      anything else: not a tuple, wrong arity for its tag, an
//                       element of the wrong type, bytes after the term,
//                       invalid external term format — close the connection
Result<Control> decode_control(std::span<const char> control_term_with_version);

// A process named in MONITOR_P / DEMONITOR_P / MONITOR_P_EXIT: a pid or a
// locally registered name (an atom).
using ProcRef = std::variant<term::Pid, std::string>;

// Encoders. Each returns a fresh TermWriter holding the control term with its
// 131 version byte (check status(); it fails only for an atom over 255
// characters or a malformed Ref), ready for append_frame(). The overloads
// taking `into` append the same term to an existing writer instead (clear()
// it first), which saves the allocation on hot paths.
//
// `reason` is one whole encoded term, without a version byte (a leading 131
// is skipped, so TermWriter(true).bytes() works too). It is not validated.
term::TermWriter encode_send(const term::Pid& to);  // {2, '', ToPid}
term::TermWriter encode_reg_send(const term::Pid& from,
                                 std::string_view name);  // {6, FromPid, '', ToName}
term::TermWriter encode_link(const term::Pid& from, const term::Pid& to);  // {1, FromPid, ToPid}
term::TermWriter encode_exit(const term::Pid& from, const term::Pid& to,
                             std::span<const char> reason);
term::TermWriter encode_exit2(const term::Pid& from, const term::Pid& to,
                              std::span<const char> reason);
term::TermWriter encode_unlink_id(std::uint64_t id, const term::Pid& from, const term::Pid& to);
term::TermWriter encode_unlink_id_ack(std::uint64_t id, const term::Pid& from, const term::Pid& to);
term::TermWriter encode_monitor_p(const term::Pid& from, const ProcRef& to, const term::Ref& ref);
term::TermWriter encode_demonitor_p(const term::Pid& from, const ProcRef& to, const term::Ref& ref);
term::TermWriter encode_monitor_p_exit(const ProcRef& from, const term::Pid& to,
                                       const term::Ref& ref, std::span<const char> reason);
term::TermWriter encode_alias_send(const term::Pid& from,
                                   const term::Ref& alias);  // {33, FromPid, Alias}

void encode_send(term::TermWriter& into, const term::Pid& to);
void encode_reg_send(term::TermWriter& into, const term::Pid& from, std::string_view name);
void encode_link(term::TermWriter& into, const term::Pid& from, const term::Pid& to);
void encode_exit(term::TermWriter& into, const term::Pid& from, const term::Pid& to,
                 std::span<const char> reason);
void encode_exit2(term::TermWriter& into, const term::Pid& from, const term::Pid& to,
                  std::span<const char> reason);
void encode_unlink_id(term::TermWriter& into, std::uint64_t id, const term::Pid& from,
                      const term::Pid& to);
void encode_unlink_id_ack(term::TermWriter& into, std::uint64_t id, const term::Pid& from,
                          const term::Pid& to);
void encode_monitor_p(term::TermWriter& into, const term::Pid& from, const ProcRef& to,
                      const term::Ref& ref);
void encode_demonitor_p(term::TermWriter& into, const term::Pid& from, const ProcRef& to,
                        const term::Ref& ref);
void encode_monitor_p_exit(term::TermWriter& into, const ProcRef& from, const term::Pid& to,
                           const term::Ref& ref, std::span<const char> reason);
void encode_alias_send(term::TermWriter& into, const term::Pid& from, const term::Ref& alias);

}  // namespace beamlink::dist
