// The io server of the rpc client, on a Node: the code an rpc runs has our
// "$rpc" process as its group leader, so its output comes to us as io
// requests {io_request, From, ReplyAs, Request}. The request itself is parsed
// and answered by the pure core in dist/io_request.hpp; this is its driver:
// the text goes to NodeConfig::rpc_output (logged at info when unset),
// M:F(A) runs by an rpc to From's node, and {io_reply, ReplyAs, Reply} is
// sent to From.
//
// Thread: the loop's. The reply may be sent later (after an M:F(A) rpc);
// when the Node is destroyed first it is dropped.
#pragma once

#include <string>

#include "dist/io_request.hpp"
#include "dist/node.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

// `in` is positioned on the message tuple's first element (after its
// 4-tuple header). A message that is not a well-formed io_request is ignored.
void serve_io_request(Node& node, term::TermReader in);

// The hooks of a request that `from` sent to one of `node`'s processes;
// `reply_as` encoded without a version byte.
IoHooks node_io_hooks(Node& node, const term::Pid& from, std::string reply_as);

}  // namespace beamlink::dist
