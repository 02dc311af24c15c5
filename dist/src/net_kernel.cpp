#include "net_kernel.hpp"

#include <spdlog/spdlog.h>

namespace beamlink::dist {

Result<term::Pid> register_net_kernel(Node& node) {
  return node.register_name("net_kernel", [&node](const term::Pid&, const Envelope& e) {
    if (e.kind != Envelope::Kind::message) return;
    auto r = term::TermReader::from_external(e.term);
    if (!r) return;
    term::TermReader& in = *r;
    auto arity = in.read_tuple_header();
    if (!arity || *arity != 3 || !in.expect_atom("$gen_call")) return;
    auto from_arity = in.read_tuple_header();
    if (!from_arity || *from_arity != 2) return;
    auto from = in.read_pid();
    auto tag = in.read_raw();
    if (!from || !tag) return;
    term::TermReader req = in;
    std::string request = "unknown";
    if (auto ra = req.read_tuple_header(); ra && *ra >= 1)
      if (auto a = req.read_atom()) request = *a;
    term::TermWriter reply;
    reply.tuple(2).raw(*tag);
    if (request == "is_auth") {
      reply.atom("yes");
    } else {
      spdlog::debug("net_kernel: unsupported call '{}' from {}", request, to_string(*from));
      reply.tuple(2).atom("error").atom("not_supported");
    }
    if (reply.ok()) (void)node.send(*from, reply.bytes());
  });
}

}  // namespace beamlink::dist
