#include "rpc_client.hpp"

#include <ei.h>
#include <spdlog/spdlog.h>

#include "common/uv_util.hpp"
#include "io_server.hpp"
#include "term/term_text.hpp"

namespace beamlink::dist {

RpcClient::RpcClient(Node& node, std::uint64_t& late_replies)
    : node_(node), late_replies_(late_replies) {}

Result<void> RpcClient::install() {
  auto pid = node_.register_name(
      "$rpc", [this, alive = alive_.watch()](const term::Pid&, const Envelope& e) {
        if (alive) on_message(e);
      });
  if (!pid) return pid.error();
  pid_ = *pid;
  return {};
}

// Replies {Ref, Reply} from rex, and io requests from the code it runs (we
// are its group leader).
void RpcClient::on_message(const Envelope& e) {
  if (e.kind != Envelope::Kind::message) return;
  auto r = term::TermReader::from_external(e.term);
  if (!r) return;
  term::TermReader in = *r;
  auto arity = in.read_tuple_header();
  if (!arity) return;
  if (*arity == 2) {
    term::TermReader probe = in;
    auto t = probe.peek();
    if (t && (t->tag == ERL_NEWER_REFERENCE_EXT || t->tag == ERL_NEW_REFERENCE_EXT)) {
      auto ref = in.read_ref();
      auto reply = in.read_raw();
      if (!ref || !reply) return;
      if (!pending_.count(*ref)) {
        ++late_replies_;
        spdlog::debug("an rpc reply arrived after its call timed out: dropped");
        return;
      }
      RpcReply out;
      term::TermWriter w;
      w.raw(*reply);
      out.term = std::string(w.bytes().data(), w.bytes().size());
      // {badrpc, Reason} is the remote side's error.
      term::TermReader br(*reply);
      if (auto ba = br.read_tuple_header(); ba && *ba == 2 && br.next_is_atom()) {
        term::TermReader br2 = br;
        if (auto a = br2.read_atom(); a && *a == "badrpc") {
          auto reason = br2.read_raw();
          std::string text = "?";
          if (reason) {
            term::TermReader rr(*reason);
            if (auto f = term::format_term(rr)) text = *f;
          }
          finish(*ref, make_error(Errc::badrpc, "badrpc: " + text));
          return;
        }
      }
      finish(*ref, std::move(out));
      return;
    }
  }
  if (*arity == 4 && in.next_is_atom()) serve_io_request(node_, in);
}

void RpcClient::finish(const term::Ref& ref, Result<RpcReply> result) {
  auto it = pending_.find(ref);
  if (it == pending_.end()) return;
  auto pending = std::move(it->second);
  pending_.erase(it);
  pending.timer.reset();
  pending.cb(std::move(result));
}

void RpcClient::call(const std::string& node, const std::string& mod, const std::string& fun,
                     std::span<const char> args, std::chrono::milliseconds timeout,
                     std::function<void(Result<RpcReply>)> cb) {
  // The gen_call form of rex's protocol: {'$gen_call', {Self, Ref}, {call,
  // M, F, Args, GroupLeader}}; the reply {Ref, Reply} is matched by Ref, so
  // ticks and unrelated messages are never mistaken for it (unlike ei_rpc).
  // We are the call's group leader: its output comes to us.
  term::Ref ref = node_.make_ref();
  term::TermWriter msg;
  msg.tuple(3).atom("$gen_call").tuple(2).pid(pid_).ref(ref);
  msg.tuple(5).atom("call").atom(mod).atom(fun);
  if (args.size() > 1 && static_cast<unsigned char>(args[0]) == 131)
    msg.raw(args.subspan(1));
  else
    msg.nil();
  msg.pid(pid_);

  auto& pending = pending_[ref];
  pending.cb = std::move(cb);
  pending.node = node;
  pending.owner = this;
  pending.ref = ref;
  if (int rc = pending.timer.init(node_.loop(), &pending, uv_timer_init); rc != 0) {
    auto failed = std::move(pending.cb);
    pending_.erase(ref);
    defer(node_.loop(), alive_.watch(), [cb = std::move(failed), rc] {
      cb(uv_error(Errc::io_error, std::string("rpc: cannot create its timer: ") + uv_strerror(rc),
                  rc));
    });
    return;
  }
  auto sent = msg.status();
  if (sent) sent = node_.reg_send(pid_, node, "rex", msg.bytes());
  if (!sent) {
    pending.failure = std::move(sent).error();
    timeout = std::chrono::milliseconds(0);  // report it on the next loop iteration
  } else {
    pending.failure =
        make_error(Errc::timeout, "rpc " + mod + ":" + fun + " on " + node +
                                      " got no reply within " + std::to_string(timeout.count()) +
                                      " ms — the call may still be running there");
  }
  // This client outlives the timer: stop() finishes and closes every call.
  uv_timer_start(
      pending.timer.get(),
      [](uv_timer_t* t) {
        auto* p = static_cast<Pending*>(t->data);
        if (!p) return;
        RpcClient* self = p->owner;
        term::Ref r = p->ref;
        Error why = p->failure;
        self->finish(r, std::move(why));
      },
      static_cast<std::uint64_t>(timeout.count()), 0);
}

void RpcClient::node_down(const std::string& node, const Error& why) {
  std::vector<term::Ref> lost;
  for (auto& [ref, pending] : pending_)
    if (pending.node == node) lost.push_back(ref);
  for (auto& ref : lost)
    finish(ref, make_error(Errc::not_connected,
                           "connection to " + node + " lost during rpc: " + why.message));
}

void RpcClient::stop(const Error& why, bool drop) {
  std::vector<term::Ref> refs;
  for (auto& [ref, p] : pending_) refs.push_back(ref);
  for (auto& ref : refs) {
    auto it = pending_.find(ref);
    if (it == pending_.end()) continue;
    if (drop) it->second.cb = [](Result<RpcReply>) {};
    finish(ref, why);
  }
}

}  // namespace beamlink::dist
