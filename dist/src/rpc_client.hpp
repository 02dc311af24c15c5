// The rpc client: rpc:call(Node, M, F, A) through rex's gen_call protocol,
// the reply matched by a unique reference (unlike ei_rpc, which takes the
// first non-tick message), with a timeout per call.
//
// It is the registered process "$rpc": replies {Ref, Reply} come to it, and
// so do the io requests of the code it runs (it is the call's group leader;
// see io_server.hpp).
//
// Thread: the loop's. Each callback is called exactly once, later, never
// from inside call(); stop(drop = true) drops them uncalled.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "dist/node.hpp"

namespace beamlink::dist {

class RpcClient {
 public:
  // `late_replies` counts replies that came after their call timed out.
  RpcClient(Node& node, std::uint64_t& late_replies);
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Registers "$rpc"; called once the node's creation is known.
  Result<void> install();
  // The caller checked that the node is ready.
  void call(const std::string& node, const std::string& mod, const std::string& fun,
            std::span<const char> args, std::chrono::milliseconds timeout,
            std::function<void(Result<RpcReply>)> cb);
  // The connection to `node` closed: its pending calls fail now.
  void node_down(const std::string& node, const Error& why);
  // Fails every pending call with `why` (drop: forgets them uncalled).
  void stop(const Error& why, bool drop);

 private:
  struct Pending {
    std::function<void(Result<RpcReply>)> cb;
    UvHandle<uv_timer_t> timer;  // data: this Pending (stable in its map)
    std::string node;
    Error failure;  // what the timer reports when it fires
    RpcClient* owner = nullptr;
    term::Ref ref;
  };
  void on_message(const Envelope& e);
  void finish(const term::Ref& ref, Result<RpcReply> result);

  Node& node_;
  std::uint64_t& late_replies_;
  term::Pid pid_;
  std::map<term::Ref, Pending> pending_;
  Liveness alive_;
};

}  // namespace beamlink::dist
