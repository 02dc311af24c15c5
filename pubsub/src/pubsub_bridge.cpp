// Phoenix.PubSub 2.x (and 1.1 publish) over beamlink's pg scope.
#include "pubsub/pubsub_bridge.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "common/uv_handle.hpp"
#include "dist/node.hpp"

namespace beamlink::pubsub {

namespace {

std::string owned(const term::TermWriter& w) {
  return std::string(w.bytes().data(), w.bytes().size());
}

}  // namespace

std::string elixir_atom(std::string_view module) {
  if (module.starts_with("Elixir.")) return std::string(module);
  return "Elixir." + std::string(module);
}

std::string pubsub_group(std::string_view pubsub_name, int index) {
  // Phoenix.PubSub.PG2: adapter_name = Module.concat(name, "Adapter");
  // groups = [adapter_name | for n <- 2..pool_size, do: :"#{adapter_name}_#{n}"].
  std::string g = elixir_atom(pubsub_name) + ".Adapter";
  if (index > 1) {
    g += '_';
    g += std::to_string(index);
  }
  return g;
}

int pubsub_pool_size(std::string_view pubsub_name, const std::vector<std::string>& groups) {
  std::string base = pubsub_group(pubsub_name, 1);
  int n = 0;
  for (auto& g : groups) {
    if (g == base) {
      n = std::max(n, 1);
      continue;
    }
    if (g.size() <= base.size() + 1 || !g.starts_with(base) || g[base.size()] != '_') continue;
    std::string_view digits(g.data() + base.size() + 1, g.size() - base.size() - 1);
    int k = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), k);
    if (ec != std::errc() || p != digits.data() + digits.size() || k < 2 || digits[0] == '0')
      continue;
    n = std::max(n, k);
  }
  return n;
}

Result<ForwardToLocal> decode_forward_to_local(std::span<const char> message) {
  auto r = term::TermReader::from_external(message);
  if (!r) return r.error();
  auto a = r->read_tuple_header();
  if (!a || *a != 4 || !r->expect_atom("forward_to_local").ok())
    return make_error(Errc::unexpected_message,
                      "pubsub: not {forward_to_local, Topic, Message, Dispatcher}");
  auto topic = r->read_binary();
  if (!topic) return make_error(Errc::bad_term, "pubsub: forward_to_local with a non-binary topic");
  auto msg = r->read_raw();
  if (!msg) return msg.error();
  auto dispatcher = r->read_atom();
  if (!dispatcher)
    return make_error(Errc::bad_term, "pubsub: forward_to_local with a non-atom dispatcher");
  return ForwardToLocal{*topic, *msg, std::move(*dispatcher)};
}

Result<std::string> encode_forward_to_local(std::string_view topic, std::span<const char> message,
                                            std::string_view dispatcher) {
  term::TermWriter w;
  w.tuple(4).atom("forward_to_local").binary(topic).raw(message).atom(dispatcher);
  if (auto s = w.status(); !s) return s.error();
  return owned(w);
}

Result<std::string> encode_forward_to_local_v1(std::string_view fastlane, std::string_view topic,
                                               std::span<const char> message) {
  term::TermWriter w;
  w.tuple(5).atom("forward_to_local").atom(fastlane).atom("none").binary(topic).raw(message);
  if (auto s = w.status(); !s) return s.error();
  return owned(w);
}

Result<ForwardToLocal> decode_forward_to_local_v1(std::span<const char> message,
                                                  std::optional<term::Pid>* from) {
  auto r = term::TermReader::from_external(message);
  if (!r) return r.error();
  auto a = r->read_tuple_header();
  if (!a || *a != 5 || !r->expect_atom("forward_to_local").ok())
    return make_error(Errc::unexpected_message,
                      "pubsub: not {forward_to_local, Fastlane, From, Topic, Message}");
  auto fastlane = r->read_atom();
  if (!fastlane)
    return make_error(Errc::bad_term, "pubsub: forward_to_local with a non-atom fastlane");
  // From: a pid, or the atom none (broadcast/3).
  if (r->next_is_atom()) {
    if (!r->read_atom())
      return make_error(Errc::bad_term, "pubsub: forward_to_local with a bad From");
  } else {
    auto pid = r->read_pid();
    if (!pid)
      return make_error(Errc::bad_term,
                        "pubsub: forward_to_local with a From neither pid nor atom");
    if (from) *from = *pid;
  }
  auto topic = r->read_binary();
  if (!topic) return make_error(Errc::bad_term, "pubsub: forward_to_local with a non-binary topic");
  auto msg = r->read_raw();
  if (!msg) return msg.error();
  return ForwardToLocal{*topic, *msg, std::move(*fastlane)};
}

Result<ForwardToLocal> decode_forward_to_local_any(std::span<const char> message,
                                                   std::optional<term::Pid>* from) {
  auto v2 = decode_forward_to_local(message);
  if (v2 || v2.error().code != Errc::unexpected_message) return v2;
  return decode_forward_to_local_v1(message, from);
}

Result<std::string> encode_pg2_group(std::string_view pubsub_name) {
  term::TermWriter w;
  w.tuple(2).atom("phx").atom(elixir_atom(pubsub_name));
  if (auto s = w.status(); !s) return s.error();
  return owned(w).substr(1);  // without the version byte
}

Result<std::string> encode_pg2_exchange(std::string_view our_node, std::string_view pubsub_name,
                                        const term::Pid& member) {
  // pg2.erl: handle_cast({exchange, _Node, List}) -> store(List), where List
  // is [[Name, Members]]: creates the group, joins each pid it lacks.
  term::TermWriter w;
  w.tuple(2).atom("$gen_cast");
  w.tuple(3).atom("exchange").atom(our_node);
  w.list(1).list(2);
  w.tuple(2).atom("phx").atom(elixir_atom(pubsub_name));
  w.list(1).pid(member).nil();
  w.nil().nil();
  if (auto s = w.status(); !s) return s.error();
  return owned(w);
}

Result<PubSubOptions::Version> parse_pubsub_version(std::string_view text) {
  if (text == "2" || text == "2.x") return PubSubOptions::Version::v2;
  if (text == "1.1") return PubSubOptions::Version::v1_1;
  if (text == "auto") return PubSubOptions::Version::automatic;
  return make_error(Errc::invalid_argument, "unknown Phoenix.PubSub version \"" +
                                                std::string(text) + "\" (expected 2, 1.1 or auto)");
}

std::string_view to_string(PubSubOptions::Version v) {
  switch (v) {
    case PubSubOptions::Version::v2:
      return "2.x";
    case PubSubOptions::Version::v1_1:
      return "1.1";
    case PubSubOptions::Version::automatic:
      return "auto";
  }
  return "?";
}

// ---------------------------------------------------------------------------

// The periodic pg2 announce: its data points to the bridge while it runs.
struct PubSubBridge::AnnounceTimer {
  UvHandle<uv_timer_t> h;
};

// A reprobe timer: its data points to this, cleared when it is closed.
struct PubSubBridge::ReprobeTimer {
  PubSubBridge* owner = nullptr;
  std::string peer;
  UvHandle<uv_timer_t> h;
};

Result<std::unique_ptr<PubSubBridge>> PubSubBridge::create(dist::Node& node, PgScope& scope,
                                                           PubSubOptions options) {
  if (options.name.empty())
    return make_error(Errc::invalid_argument, "pubsub: empty name (expected e.g. MyApp.PubSub)");
  std::unique_ptr<PubSubBridge> b(new PubSubBridge(node, scope, std::move(options)));
  PubSubBridge* self_ptr = b.get();
  // plan()'s targets follow connections, the scope's groups and probes.
  // Under automatic, a node that comes up is probed, one that goes down
  // forgotten.
  b->node_up_ = node.on_node_up([self_ptr](const std::string& peer) {
    self_ptr->targets_dirty_ = true;
    if (self_ptr->options_.version == PubSubOptions::Version::automatic) self_ptr->probe(peer);
    if (self_ptr->options_.version == PubSubOptions::Version::v1_1) self_ptr->announce_pg2(peer);
  });
  b->node_down_ = node.on_node_down([self_ptr](const std::string& peer, const Error&) {
    self_ptr->targets_dirty_ = true;
    if (self_ptr->options_.version == PubSubOptions::Version::automatic) {
      self_ptr->probed_.erase(peer);
      self_ptr->cancel_reprobe(peer);
      // Forgotten with the peer: peers that come and go must not accumulate.
      self_ptr->reprobe_attempts_.erase(peer);
    }
  });
  if (b->options_.version != PubSubOptions::Version::v2) {
    // 1.1's receiving side: one member process, announced to pg2.
    auto member = node.spawn(
        [alive = b->alive_.watch(), self_ptr](const term::Pid&, const dist::Envelope& e) {
          if (alive) self_ptr->on_worker_message(e);
        });
    b->pg2_member_ = member;
    auto x = encode_pg2_exchange(node.name(), b->options_.name, member);
    if (!x) return x.error();
    b->pg2_exchange_ = std::move(*x);
    if (b->options_.pg2_announce.count() > 0) {
      auto t = std::make_unique<AnnounceTimer>();
      if (int rc = t->h.init(node.loop(), self_ptr, uv_timer_init); rc != 0)
        return uv_error(
            Errc::io_error,
            std::string("pubsub: cannot start the pg2 announce timer: ") + uv_strerror(rc), rc);
      auto every = static_cast<std::uint64_t>(b->options_.pg2_announce.count());
      uv_timer_start(
          t->h.get(),
          [](uv_timer_t* timer) {
            if (auto* self = static_cast<PubSubBridge*>(timer->data)) self->announce_pg2();
          },
          every, every);
      uv_unref(t->h.handle());
      b->announce_timer_ = std::move(t);
    }
    if (b->options_.version == PubSubOptions::Version::v1_1) {
      b->announce_pg2();
      return b;
    }
  }
  if (auto r = b->grow_to(1); !r) return r.error();
  b->change_id_ = scope.on_change([self_ptr](const std::string& peer) {
    PubSubBridge& self = *self_ptr;
    self.targets_dirty_ = true;
    int n = pubsub_pool_size(self.options_.name, self.scope_.groups_of(peer));
    if (n > self.pool_size()) {
      if (auto r = self.grow_to(n); !r)
        spdlog::warn("pubsub {}: cannot grow the pool to {}: {}", self.atom_, n, r.error().message);
    }
  });
  // The peers already known may have a larger pool.
  int n = 1;
  for (auto& peer : scope.nodes())
    n = std::max(n, pubsub_pool_size(b->options_.name, scope.groups_of(peer)));
  if (auto r = b->grow_to(n); !r) return r.error();
  if (b->options_.version == PubSubOptions::Version::automatic)
    for (auto& peer : node.connected_nodes()) b->probe(peer);
  return b;
}

void PubSubBridge::probe(const std::string& peer) {
  term::TermWriter args;
  args.nil();
  node_.rpc(peer, "erlang", "registered", args.bytes(), options_.probe_timeout,
            [alive = alive_.watch(), this, peer](Result<dist::RpcReply> r) {
              if (!alive) return;
              PubSubBridge& self = *this;
              if (!r) {
                if (r.error().code == Errc::shutting_down) return;
                // Another beamlink has no rex: its scope's groups already
                // said it speaks 2.x.
                if (self.has_v2(peer)) return;
                spdlog::warn(
                    "pubsub {}: cannot tell which Phoenix.PubSub {} runs: {} (asking "
                    "again)",
                    self.atom_, peer, r.error().message);
                return self.schedule_reprobe(peer);
              }
              auto reader = term::TermReader::from_external(
                  std::span<const char>(r->term.data(), r->term.size()));
              bool has_name = false, has_adapter = false;
              const std::string adapter = pubsub_group(self.options_.name, 1);
              if (reader) {
                auto n = reader->read_list_header();
                for (int i = 0; n && i < *n; ++i) {
                  auto a = reader->read_atom();
                  if (!a) break;
                  has_name |= *a == self.atom_;
                  has_adapter |= *a == adapter;
                }
              }
              bool v1 = has_name && !has_adapter;
              self.probed_[peer] = v1;
              self.targets_dirty_ = true;
              if (v1) self.announce_pg2(peer);
              // Neither yet: the app may still be starting (libcluster-style
              // setups connect first). Ask again, with backoff.
              if (!has_name && !has_adapter)
                self.schedule_reprobe(peer);
              else
                self.reprobe_attempts_.erase(peer);
              if (v1)
                spdlog::info(
                    "pubsub {}: {} runs Phoenix.PubSub 1.1: publishing to its PG2Server and "
                    "joining {{phx, {}}} through its pg2 (OTP 21/22; OTP 24+ has no pg2)",
                    self.atom_, peer, self.atom_);
              else if (auto it = self.reprobe_attempts_.find(peer);
                       !has_adapter && (it == self.reprobe_attempts_.end() || it->second <= 1))
                spdlog::info(
                    "pubsub {}: {} has no such pubsub (yet): nothing goes there; "
                    "asking again with backoff",
                    self.atom_, peer);
            });
}

void PubSubBridge::schedule_reprobe(const std::string& peer) {
  if (!node_.is_connected(peer) || reprobe_timers_.count(peer)) return;
  int attempt = ++reprobe_attempts_[peer];
  auto delay = std::min<std::uint64_t>(30000, 1000ull << std::min(attempt - 1, 5));
  auto t = std::make_unique<ReprobeTimer>();
  t->owner = this;
  t->peer = peer;
  if (int rc = t->h.init(node_.loop(), t.get(), uv_timer_init); rc != 0) {
    spdlog::warn("pubsub {}: cannot schedule asking {} again: {}", atom_, peer, uv_strerror(rc));
    return;
  }
  uv_timer_start(
      t->h.get(),
      [](uv_timer_t* timer) {
        auto* rt = static_cast<ReprobeTimer*>(timer->data);
        if (!rt) return;
        PubSubBridge* self = rt->owner;
        std::string who = rt->peer;
        self->cancel_reprobe(who);  // destroys *rt
        if (self->node_.is_connected(who)) self->probe(who);
      },
      delay, 0);
  reprobe_timers_[peer] = std::move(t);
}

void PubSubBridge::cancel_reprobe(const std::string& peer) {
  auto it = reprobe_timers_.find(peer);
  if (it == reprobe_timers_.end()) return;
  reprobe_timers_.erase(it);  // closes the timer
}

bool PubSubBridge::knows(const std::string& peer) const {
  switch (options_.version) {
    case PubSubOptions::Version::v1_1:
      return node_.is_connected(peer);
    case PubSubOptions::Version::v2: {
      auto scopes = scope_.nodes();
      return std::find(scopes.begin(), scopes.end(), peer) != scopes.end() || has_v2(peer);
    }
    case PubSubOptions::Version::automatic:
      return has_v2(peer) || probed_.count(peer) != 0;
  }
  return false;
}

bool PubSubBridge::has_v2(const std::string& peer) const {
  auto members = scope_.members(pubsub_group(options_.name, 1));
  auto it = members.find(peer);
  return it != members.end() && !it->second.empty();
}

std::optional<PubSubOptions::Version> PubSubBridge::version_of(const std::string& peer) const {
  switch (options_.version) {
    case PubSubOptions::Version::v1_1:
      return PubSubOptions::Version::v1_1;
    case PubSubOptions::Version::v2:
      return PubSubOptions::Version::v2;
    case PubSubOptions::Version::automatic:
      break;
  }
  if (has_v2(peer)) return PubSubOptions::Version::v2;
  if (auto it = probed_.find(peer); it != probed_.end() && it->second)
    return PubSubOptions::Version::v1_1;
  return std::nullopt;
}

PubSubBridge::PubSubBridge(dist::Node& node, PgScope& scope, PubSubOptions options)
    : node_(node),
      scope_(scope),
      options_(std::move(options)),
      atom_(elixir_atom(options_.name)),
      group1_(pubsub_group(options_.name, 1)) {}

PubSubBridge::~PubSubBridge() {
  alive_.expire();
  reprobe_timers_.clear();
  if (announce_timer_) {
    announce_timer_->h.get()->data = nullptr;
    announce_timer_.reset();  // closes the timer
  }
  // pg2 drops the member when its monitor fires (the connection goes) or
  // when the process exits.
  if (pg2_member_) node_.exit(*pg2_member_, "shutdown");
  if (change_id_) scope_.remove_on_change(change_id_);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    scope_.leave(pubsub_group(options_.name, static_cast<int>(i + 1)), workers_[i]);
    node_.exit(workers_[i], "shutdown");
  }
}

Result<void> PubSubBridge::grow_to(int n) {
  while (pool_size() < n) {
    int index = pool_size() + 1;
    auto group = pubsub_group(options_.name, index);
    auto pid = node_.register_name(
        group, [alive = alive_.watch(), this](const term::Pid&, const dist::Envelope& e) {
          if (alive) on_worker_message(e);
        });
    if (!pid)
      return make_error(Errc::already_exists, "pubsub " + atom_ + ": cannot register the worker '" +
                                                  group + "': " + pid.error().message);
    workers_.push_back(*pid);
    scope_.join(group, *pid);
    spdlog::debug("pubsub {}: worker {} joined {}", atom_, to_string(*pid), group);
  }
  return {};
}

Subscription PubSubBridge::subscribe(const std::string& topic, Subscriber cb) {
  return subscribers_.subscribe(topic, std::move(cb));
}

void PubSubBridge::on_worker_message(const dist::Envelope& e) {
  if (e.kind != dist::Envelope::Kind::message) return;
  // The 2.x workers and the 1.1 member both accept both shapes, as 1.1.2's
  // PG2Server does; each broadcast is sent to one of them only.
  std::optional<term::Pid> from;
  auto f = decode_forward_to_local_any(e.term, &from);
  if (!f) {
    ++ignored_;
    spdlog::debug("pubsub {}: ignoring a message: {}", atom_, f.error().message);
    return;
  }
  ++received_;
  PubSubMessage m{f->topic, f->message, f->dispatcher, from ? &*from : e.from};
  subscribers_.emit(f->topic, m);  // a subscriber may drop any subscription meanwhile
}

bool PubSubBridge::takes_pg2(const std::string& peer) const {
  switch (options_.version) {
    case PubSubOptions::Version::v1_1:
      return true;
    case PubSubOptions::Version::v2:
      return false;
    case PubSubOptions::Version::automatic: {
      auto it = probed_.find(peer);
      return it != probed_.end() && it->second;
    }
  }
  return false;
}

void PubSubBridge::announce_pg2(const std::string& peer) {
  if (!pg2_member_ || peer == node_.name() || !node_.is_connected(peer) || !takes_pg2(peer)) return;
  auto r = node_.reg_send(*pg2_member_, peer, "pg2",
                          std::span<const char>(pg2_exchange_.data(), pg2_exchange_.size()));
  if (!r) {
    spdlog::debug("pubsub {}: cannot announce to pg2 on {}: {}", atom_, peer, r.error().message);
    return;
  }
  ++pg2_announcements_;
}

void PubSubBridge::announce_pg2() {
  for (auto& peer : node_.connected_nodes()) announce_pg2(peer);
}

std::vector<std::string> PubSubBridge::nodes() const {
  std::vector<std::string> out;
  if (options_.version == PubSubOptions::Version::v1_1) {
    for (auto& n : node_.connected_nodes())
      if (n != node_.name()) out.push_back(n);
    return out;
  }
  for (auto& [n, pids] : scope_.members(pubsub_group(options_.name, 1)))
    if (n != node_.name() && node_.is_connected(n) && !pids.empty()) out.push_back(n);
  if (options_.version == PubSubOptions::Version::automatic) {
    for (auto& [n, v1] : probed_)
      if (v1 && node_.is_connected(n) && std::find(out.begin(), out.end(), n) == out.end())
        out.push_back(n);
    std::sort(out.begin(), out.end());
  }
  return out;
}

Result<std::vector<PubSubSend>> PubSubBridge::plan(std::string_view topic,
                                                   std::span<const char> message,
                                                   std::string_view dispatcher) const {
  if (targets_dirty_) {
    targets_.clear();
    for (auto& n : nodes())
      targets_.push_back(Target{n, version_of(n) == PubSubOptions::Version::v1_1, nullptr});
    targets_dirty_ = false;
  }
  if (targets_.empty())
    return make_error(Errc::not_connected,
                      "pubsub " + atom_ + ": no connected node has this pubsub yet");
  // The 2.x destination is the worker registered under the first group
  // atom (every node's pool has it); 1.1's is the PG2Server under the name.
  std::shared_ptr<const std::string> v2_bytes, v1_bytes;
  std::vector<PubSubSend> out;
  out.reserve(targets_.size());
  for (auto& t : targets_) {
    auto& bytes = t.v1 ? v1_bytes : v2_bytes;
    if (!bytes) {
      auto msg = t.v1 ? encode_forward_to_local_v1(options_.fastlane, topic, message)
                      : encode_forward_to_local(topic, message, dispatcher);
      if (!msg) return msg.error();
      bytes = std::make_shared<const std::string>(std::move(*msg));
    }
    const term::Pid& from = t.v1 || workers_.empty() ? scope_.self() : workers_.front();
    const std::string& to = t.v1 ? atom_ : group1_;
    if (!t.route || t.route->from != from || t.route->to != to)
      t.route = std::make_shared<const PubSubRoute>(PubSubRoute{t.node, from, to});
    out.push_back(PubSubSend{t.route, bytes});
  }
  return out;
}

Result<std::vector<std::string>> PubSubBridge::publish(std::string_view topic,
                                                       std::span<const char> message,
                                                       std::string_view dispatcher) {
  auto sends = plan(topic, message, dispatcher);
  if (!sends) return sends.error();
  std::vector<std::string> sent;
  std::optional<Error> first;
  for (auto& m : *sends) {
    const auto& route = *m.route;
    auto r = node_.reg_send(route.from, route.node, route.to,
                            std::span<const char>(m.message->data(), m.message->size()));
    if (r) {
      sent.push_back(route.node);
    } else {
      spdlog::warn("pubsub {}: publish to {} on {} failed: {}", atom_, route.to, route.node,
                   r.error().message);
      if (!first) first = r.error();
    }
  }
  if (sent.empty() && first) return *first;
  return sent;
}

}  // namespace beamlink::pubsub
