// The io server beamlink is for its rpcs: an rpc runs with beamlink's rpc
// process as its group leader, so the call's output comes back as Erlang io
// protocol requests ({io_request, From, ReplyAs, Request}). This turns a
// request into the text to print and the reply, as erl_call -fetch_stdout's
// group leader (rpc.erl's cnode_call_group_leader) does.
//
// ei does not offer DFLAG_UNICODE_IO, so a BEAM sends its requests to us in
// the old forms as well as the new ones (io.erl's bc_req):
//   {put_chars, Chars}                   old: Chars latin1 (a binary of bytes or a list)
//   {put_chars, Encoding, Chars}         new (and any binary, even to an old server)
//   {put_chars, M, F, A}                 old: io:format/fwrite/write
//   {put_chars, Encoding, M, F, A}       new
//   {requests, [Request...]}             one after another, stopping at the first error
// Every form prints as UTF-8. M:F(A) is applied on the node the request came
// from (by an rpc), as erl_call's group leader applies it on that node.
// Input requests, setopts and getopts are answered {error, enotsup}; anything
// else {error, request}.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

enum class IoEncoding { latin1, unicode };

// One step of a request: text ready to print, an M:F(A) whose result is the
// text, or a refusal (the request's reply, an error term).
struct IoText {
  std::string utf8;
};
struct IoApply {
  std::string mod, fun;
  std::string args;  // the argument list, encoded with its version byte
  IoEncoding encoding = IoEncoding::unicode;
};
struct IoRefuse {
  std::string reply;  // the reply term, encoded without a version byte
};
using IoStep = std::variant<IoText, IoApply, IoRefuse>;

// The steps of one request (no version byte), in order; a refusal ends them.
// A malformed term or chardata gives a refusal ({error, badarg} or
// {error, request}), never an error.
std::vector<IoStep> parse_io_request(std::span<const char> request);

// Chardata (a binary, a string, an iolist of code points and binaries,
// nested, with a binary tail allowed; no version byte) as UTF-8 text:
// binaries are UTF-8 when `encoding` is unicode, latin1 otherwise.
Result<std::string> chardata_to_utf8(std::span<const char> chars, IoEncoding encoding);

// Encoded replies (no version byte): ok, {error, Reason}.
std::string io_reply_ok();
std::string io_reply_error(std::string_view reason);

// Serves one request: prints each step's text through `output`, applies
// M:F(A) through `apply` (which calls back with the encoded result, version
// byte included; at once or later), and answers once through `reply` with
// the reply term (encoded, no version byte): ok, or the first step's error —
// {error, F} when M:F(A) failed, as erl_call's group leader answers. The
// driver on a Node (the rpc client's group leader) is dist/src/io_server.hpp.
struct IoHooks {
  std::function<void(const std::string& utf8)> output;
  std::function<void(const IoApply&, std::function<void(Result<std::string>)>)> apply;
  std::function<void(const std::string& reply)> reply;
};
void serve_io_request(std::span<const char> request, IoHooks hooks);

}  // namespace beamlink::dist
