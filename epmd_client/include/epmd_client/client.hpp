// One-shot epmd queries on a libuv loop: PORT_PLEASE2 (where does node X
// listen?) and NAMES (which nodes are registered?).
//
// Contract:
// - Thread: the loop's thread only, like the loop itself.
// - Each call opens its own TCP connection to the Endpoint and closes it when
//   the answer is complete; calls may overlap freely.
// - The callback is called exactly once, on a later loop iteration, never from
//   inside the call. Invalid arguments (a host that is not an IPv4 literal, a
//   bad node name) are reported the same way: through the callback, later,
//   with Errc::invalid_argument.
// - A callback may destroy the Client, or start new calls.
// - Destroying the Client cancels every pending call WITHOUT calling its
//   callback. Its sockets and timers are closed with uv_close and freed in
//   their close callbacks, so run the loop once more (as uv_loop_close needs
//   anyway) before closing it.
// - Errors (Error::message says where and what to do):
//     connection_refused  no epmd listens there
//     timeout             no complete answer within `timeout`
//     not_found           port_please: epmd has no node by that name
//     protocol_error      epmd sent bytes that break the protocol
//     frame_too_large     names: a NAMES_RESP over 1 MiB
//     io_error / connection_closed  the connection failed (Error::source = uv errno)
//     invalid_argument    see above
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "epmd_client/codec.hpp"
#include "epmd_client/endpoint.hpp"
#include "epmd_client/registration.hpp"  // the whole client API from one include

namespace beamlink::epmd_client {

// Largest NAMES_RESP accepted by Client::names.
inline constexpr std::size_t max_names_resp_bytes = 1 << 20;

class Client {
 public:
  // `loop` must outlive the Client.
  explicit Client(uv_loop_t* loop);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // PORT_PLEASE2_REQ for `alive` (the part before '@') → the node's port and
  // versions.
  void port_please(const Endpoint& epmd, std::string alive, std::chrono::milliseconds timeout,
                   std::function<void(Result<NodeInfo>)> cb);

  // NAMES_REQ → every registered name and port (possibly none).
  void names(const Endpoint& epmd, std::chrono::milliseconds timeout,
             std::function<void(Result<std::vector<NameEntry>>)> cb);

  // Calls whose callback has not run yet.
  std::size_t pending() const { return pending_.size(); }

 private:
  struct Request;
  Request& add(const Endpoint& epmd);
  void finish_port(Request* r, Result<NodeInfo> res);
  void finish_names(Request* r, Result<std::vector<NameEntry>> res);

  uv_loop_t* loop_;
  std::list<std::unique_ptr<Request>> pending_;
};

}  // namespace beamlink::epmd_client
