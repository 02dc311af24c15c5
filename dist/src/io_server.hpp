// The io server of the rpc client: the code an rpc runs has us as its group
// leader, so its output comes as io requests. {io_request, From, ReplyAs,
// Request}: put_chars is printed (logged) and answered ok; anything else is
// answered {error, enotsup}.
#pragma once

#include "dist/node.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

// `in` is positioned on the request tuple's first element (after its
// 4-tuple header). Malformed requests are ignored.
void serve_io_request(Node& node, term::TermReader in);

}  // namespace beamlink::dist
