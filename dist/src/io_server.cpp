#include "io_server.hpp"

#include <ei.h>
#include <spdlog/spdlog.h>

namespace beamlink::dist {

void serve_io_request(Node& node, term::TermReader io) {
  if (auto a = io.read_atom(); !a || *a != "io_request") return;
  auto from = io.read_pid();
  auto reply_as = io.read_raw();
  if (!from || !reply_as) return;
  term::TermReader req = io;
  bool put_chars = false;
  if (auto ra = req.read_tuple_header(); ra && *ra >= 2)
    if (auto a = req.read_atom(); a && *a == "put_chars") {
      put_chars = true;
      // {put_chars, Encoding, Chars} or {put_chars, Encoding, M, F, A}
      if (*ra == 3) {
        (void)req.skip();
        auto chars = req.peek();
        if (chars && chars->tag == ERL_BINARY_EXT) {
          if (auto b = req.read_binary()) spdlog::info("rpc output: {}", *b);
        } else if (auto s = req.read_string()) {
          spdlog::info("rpc output: {}", *s);
        }
      }
    }
  term::TermWriter reply;
  reply.tuple(3).atom("io_reply").raw(*reply_as);
  if (put_chars)
    reply.atom("ok");
  else
    reply.tuple(2).atom("error").atom("enotsup");
  if (reply.ok()) (void)node.send(*from, reply.bytes());
}

}  // namespace beamlink::dist
