#include "io_server.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <string_view>
#include <utility>

namespace beamlink::dist {

void serve_io_request(Node& node, term::TermReader io) {
  if (auto a = io.read_atom(); !a || *a != "io_request") return;
  auto from = io.read_pid();
  auto reply_as = io.read_raw();
  auto request = reply_as ? io.read_raw() : Result<std::span<const char>>(reply_as.error());
  if (!from || !request) return;
  serve_io_request(*request,
                   node_io_hooks(node, *from, std::string(reply_as->data(), reply_as->size())));
}

IoHooks node_io_hooks(Node& node, const term::Pid& from, std::string reply_as) {
  IoHooks h;
  h.output = [&node](const std::string& text) {
    if (node.config().rpc_output) return node.config().rpc_output(text);
    std::string_view line = text;
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    spdlog::info("rpc output: {}", line);
  };
  h.apply = [&node, peer = from.node](const IoApply& a,
                                      std::function<void(Result<std::string>)> done) {
    node.rpc(peer, a.mod, a.fun, a.args, std::chrono::seconds(10),
             [done = std::move(done)](Result<RpcReply> r) {
               if (!r) return done(r.error());
               done(std::move(r->term));
             });
  };
  h.reply = [&node, from, reply_as = std::move(reply_as)](const std::string& reply) {
    term::TermWriter w;
    w.tuple(3).atom("io_reply").raw(reply_as).raw(reply);
    if (w.ok()) (void)node.send(from, w.bytes());
  };
  return h;
}

}  // namespace beamlink::dist
