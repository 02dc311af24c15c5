// SendDone, the completion of a send that dist::Node accepted, in a header
// of its own so that cores without I/O (relay/delivery_core.hpp) can name it
// without including the node and libuv.
#pragma once

#include <functional>

#include "common/result.hpp"

namespace beamlink::dist {

// The completion of one accepted send: called exactly once, later, never
// from inside the send. Ok once the frame's bytes were written to the socket
// (the uv_write callback with status 0, also when it runs after the
// connection closed); Errc::connection_closed when the connection closed
// before the frame was written (cancelled in flight or still queued). The
// completions of one connection run in the order of the sends. They may run
// after the Node is destroyed (its connections' writes end later): a
// completion guards whatever it touches. A send that fails (not_connected,
// queue_full, ...) never calls it.
using SendDone = std::function<void(Result<void>)>;

}  // namespace beamlink::dist
