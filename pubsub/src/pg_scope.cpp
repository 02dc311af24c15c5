// pg's scope protocol (lib/kernel/src/pg.erl, OTP 23+): the core and its
// adapter on a Node.
#include "pubsub/pg_scope.hpp"

#include "common/uv_handle.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <set>

#include "dist/node.hpp"

namespace beamlink::pubsub {

namespace {

Error bad(std::string what) {
  return make_error(Errc::bad_term, "pg: " + std::move(what));
}

// pg accepts `pid() | [pid()]` in join and leave.
Result<std::vector<term::Pid>> read_pids(term::TermReader& r) {
  auto t = r.peek();
  if (!t) return t.error();
  std::vector<term::Pid> pids;
  if (r.next_is_atom()) return bad("expected a pid or a list of pids");
  if (auto p = r.read_pid()) {
    pids.push_back(*p);
    return pids;
  }
  auto n = r.read_list_header();
  if (!n) return bad("expected a pid or a list of pids");
  for (int i = 0; i < *n; ++i) {
    auto p = r.read_pid();
    if (!p) return bad("expected a pid in a member list");
    pids.push_back(*p);
  }
  if (*n > 0) {
    auto tail = r.read_list_header();  // the nil that ends a proper list
    if (!tail || *tail != 0) return bad("expected a proper list of pids");
  }
  return pids;
}

Result<std::vector<std::string>> read_groups(term::TermReader& r) {
  auto n = r.read_list_header();
  if (!n) return bad("expected a list of groups");
  std::vector<std::string> out;
  for (int i = 0; i < *n; ++i) {
    auto g = r.read_raw();
    if (!g) return g.error();
    out.emplace_back(g->data(), g->size());
  }
  if (*n > 0) {
    auto tail = r.read_list_header();
    if (!tail || *tail != 0) return bad("expected a proper list of groups");
  }
  return out;
}

std::optional<std::string> atom_of(const std::string& key) {
  term::TermReader r(key.data(), key.size());
  auto a = r.read_atom();
  if (!a) return std::nullopt;
  return *a;
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

}  // namespace

std::string pg_atom_group(std::string_view atom) {
  term::TermWriter w(false);
  w.atom(atom);
  return std::string(w.bytes().data(), w.bytes().size());
}

PgScopeCore::PgScopeCore(std::string scope, term::Pid self)
    : scope_(std::move(scope)), self_(std::move(self)) {}

std::string PgScopeCore::discover_message() const {
  term::TermWriter w;
  w.tuple(2).atom("discover").pid(self_);
  return std::string(w.bytes().data(), w.bytes().size());
}

std::string PgScopeCore::sync_message() const {
  // pg.erl handle_cast({sync, Peer, Groups}): Groups is [{Group, [Pid]}],
  // each group once (the peer keeps maps:from_list(Groups)).
  term::TermWriter w;
  w.tuple(2).atom("$gen_cast").tuple(3).atom("sync").pid(self_);
  if (!local_.empty()) {
    w.list(static_cast<int>(local_.size()));
    for (auto& [group, pids] : local_) {
      w.tuple(2).raw(std::span<const char>(group.data(), group.size()));
      w.list(static_cast<int>(pids.size()));
      for (auto& p : pids) w.pid(p);
      w.nil();
    }
  }
  w.nil();
  return std::string(w.bytes().data(), w.bytes().size());
}

PgOut PgScopeCore::to_scope(const Remote& r, std::string term) const {
  return PgOut{r.scope, r.scope.node, std::move(term)};
}

PgStep PgScopeCore::discover(const std::vector<std::string>& nodes) const {
  PgStep step;
  auto msg = discover_message();
  for (auto& n : nodes) {
    if (n == self_.node) continue;
    step.out.push_back(PgOut{std::nullopt, n, msg});
  }
  return step;
}

PgStep PgScopeCore::refresh(const std::vector<std::string>& nodes) const {
  PgStep step = discover(nodes);
  auto sync = sync_message();
  for (auto& n : nodes) {
    auto it = remote_.find(n);
    if (it != remote_.end()) step.out.push_back(to_scope(it->second, sync));
  }
  return step;
}

Result<PgStep> PgScopeCore::handle(std::span<const char> message) {
  auto rr = term::TermReader::from_external(message);
  if (!rr) return rr.error();
  term::TermReader& r = *rr;
  auto arity = r.read_tuple_header();
  if (!arity) return bad("expected a tuple");
  auto tag = r.read_atom();
  if (!tag) return bad("expected a tuple tagged with an atom");

  if (*tag == "discover" && (*arity == 2 || *arity == 3)) {
    // {discover, Peer} and (OTP 26+) {discover, Peer, ProtocolVersion}.
    auto peer = r.read_pid();
    if (!peer) return bad("discover without a pid");
    return on_discover(*peer);
  }
  if (*tag == "$gen_cast" && *arity == 2) {
    auto a = r.read_tuple_header();
    if (!a || *a != 3 || !r.expect_atom("sync").ok()) return bad("a cast that is not a sync");
    auto peer = r.read_pid();
    if (!peer) return bad("sync without a pid");
    auto n = r.read_list_header();
    if (!n) return bad("sync without a group list");
    Groups groups;
    for (int i = 0; i < *n; ++i) {
      auto t = r.read_tuple_header();
      if (!t || *t != 2) return bad("sync: expected {Group, Pids}");
      auto g = r.read_raw();
      if (!g) return g.error();
      auto pids = read_pids(r);
      if (!pids) return pids.error();
      groups[std::string(g->data(), g->size())] = std::move(*pids);
    }
    if (*n > 0) {
      auto tail = r.read_list_header();
      if (!tail || *tail != 0) return bad("sync: improper group list");
    }
    return on_sync(*peer, std::move(groups));
  }
  if (*tag == "join" && *arity == 4) {
    auto peer = r.read_pid();
    if (!peer) return bad("join without a peer pid");
    auto g = r.read_raw();
    if (!g) return g.error();
    auto pids = read_pids(r);
    if (!pids) return pids.error();
    return on_join(*peer, std::string(g->data(), g->size()), std::move(*pids));
  }
  if (*tag == "leave" && *arity == 4) {
    auto peer = r.read_pid();
    if (!peer) return bad("leave without a peer pid");
    auto pids = read_pids(r);
    if (!pids) return pids.error();
    auto groups = read_groups(r);
    if (!groups) return groups.error();
    return on_leave(*peer, *pids, *groups);
  }
  return bad("not a pg message: '" + *tag + "'");
}

PgStep PgScopeCore::on_discover(const term::Pid& peer) {
  // pg.erl handle_discover: cast our sync to the peer; when the peer is new,
  // remember it and discover it back (its answer is its own sync).
  PgStep step;
  if (peer.node == self_.node) return step;
  auto it = remote_.find(peer.node);
  bool known = it != remote_.end() && it->second.scope == peer;
  if (!known) {
    bool had_groups = it != remote_.end() && !it->second.groups.empty();
    remote_[peer.node] = Remote{peer, {}};  // a restarted scope replaces the old one
    if (had_groups) step.changed.push_back(peer.node);
  }
  const Remote& r = remote_[peer.node];
  step.out.push_back(to_scope(r, sync_message()));
  if (!known) step.out.push_back(to_scope(r, discover_message()));
  return step;
}

PgStep PgScopeCore::on_sync(const term::Pid& peer, Groups groups) {
  // pg.erl handle_sync: everything the peer says overrides what we knew.
  PgStep step;
  if (peer.node == self_.node) return step;
  auto& r = remote_[peer.node];
  bool changed = !(r.scope == peer) || r.groups != groups;
  r.scope = peer;
  r.groups = std::move(groups);
  if (changed) step.changed.push_back(peer.node);
  return step;
}

PgStep PgScopeCore::on_join(const term::Pid& peer, const std::string& group,
                            std::vector<term::Pid> pids) {
  // A join from a scope we do not know is ignored, as pg does.
  PgStep step;
  auto it = remote_.find(peer.node);
  if (it == remote_.end() || !(it->second.scope == peer) || pids.empty()) return step;
  auto& members = it->second.groups[group];
  members.insert(members.begin(), pids.begin(), pids.end());
  step.changed.push_back(peer.node);
  return step;
}

PgStep PgScopeCore::on_leave(const term::Pid& peer, const std::vector<term::Pid>& pids,
                             const std::vector<std::string>& groups) {
  PgStep step;
  auto it = remote_.find(peer.node);
  if (it == remote_.end() || !(it->second.scope == peer)) return step;
  auto& known = it->second.groups;
  bool changed = false;
  for (auto& g : groups) {
    auto git = known.find(g);
    if (git == known.end()) continue;
    auto& members = git->second;
    for (auto& p : pids) {
      auto m = std::find(members.begin(), members.end(), p);
      if (m != members.end()) {
        members.erase(m);
        changed = true;
      }
    }
    if (members.empty()) known.erase(git);
  }
  if (changed) step.changed.push_back(peer.node);
  return step;
}

PgStep PgScopeCore::node_down(const std::string& node) {
  PgStep step;
  auto it = remote_.find(node);
  if (it == remote_.end()) return step;
  bool had = !it->second.groups.empty();
  remote_.erase(it);
  if (had) step.changed.push_back(node);
  return step;
}

PgStep PgScopeCore::join(std::string_view group_atom, const term::Pid& pid) {
  PgStep step;
  auto key = pg_atom_group(group_atom);
  auto& members = local_[key];
  if (std::find(members.begin(), members.end(), pid) != members.end()) return step;
  members.push_back(pid);
  term::TermWriter w;
  w.tuple(4).atom("join").pid(self_).atom(group_atom).list(1).pid(pid).nil();
  std::string msg(w.bytes().data(), w.bytes().size());
  for (auto& [node, r] : remote_) step.out.push_back(to_scope(r, msg));
  return step;
}

PgStep PgScopeCore::leave(std::string_view group_atom, const term::Pid& pid) {
  PgStep step;
  auto key = pg_atom_group(group_atom);
  auto it = local_.find(key);
  if (it == local_.end()) return step;
  auto m = std::find(it->second.begin(), it->second.end(), pid);
  if (m == it->second.end()) return step;
  it->second.erase(m);
  if (it->second.empty()) local_.erase(it);
  term::TermWriter w;
  w.tuple(4).atom("leave").pid(self_).list(1).pid(pid).nil().list(1).atom(group_atom).nil();
  std::string msg(w.bytes().data(), w.bytes().size());
  for (auto& [node, r] : remote_) step.out.push_back(to_scope(r, msg));
  return step;
}

std::map<std::string, std::vector<term::Pid>> PgScopeCore::members(
    std::string_view group_atom) const {
  std::map<std::string, std::vector<term::Pid>> out;
  auto key = pg_atom_group(group_atom);
  for (auto& [node, r] : remote_) {
    auto it = r.groups.find(key);
    if (it != r.groups.end() && !it->second.empty()) out[node] = it->second;
  }
  return out;
}

std::vector<std::string> PgScopeCore::groups_of(const std::string& node) const {
  std::vector<std::string> out;
  auto it = remote_.find(node);
  if (it == remote_.end()) return out;
  for (auto& [key, pids] : it->second.groups)
    if (auto a = atom_of(key); a && !pids.empty()) add_unique(out, *a);
  return out;
}

std::vector<std::string> PgScopeCore::nodes() const {
  std::vector<std::string> out;
  for (auto& [node, r] : remote_) out.push_back(node);
  return out;
}

std::optional<term::Pid> PgScopeCore::scope_of(const std::string& node) const {
  auto it = remote_.find(node);
  if (it == remote_.end()) return std::nullopt;
  return it->second.scope;
}

std::vector<std::string> PgScopeCore::local_groups() const {
  std::vector<std::string> out;
  for (auto& [key, pids] : local_)
    if (auto a = atom_of(key)) out.push_back(*a);
  return out;
}

// ---------------------------------------------------------------------------
// The adapter.

struct PgScope::Timer {
  UvHandle<uv_timer_t> h;
};

Result<std::unique_ptr<PgScope>> PgScope::create(dist::Node& node, PgScopeOptions options) {
  if (options.scope.empty()) return make_error(Errc::invalid_argument, "pg: empty scope name");
  // Register first with a forwarding handler that finds the PgScope through
  // a shared cell, so the pid is known before the core is built.
  auto cell = std::make_shared<PgScope*>(nullptr);
  auto pid = node.register_name(options.scope, [cell](const term::Pid&, const dist::Envelope& e) {
    if (*cell) (*cell)->on_message(e);
  });
  if (!pid)
    return make_error(Errc::already_exists, "pg: cannot register the scope '" + options.scope +
                                                "' in " + node.name() + ": " + pid.error().message);
  std::unique_ptr<PgScope> s(new PgScope(node, std::move(options), *pid));
  *cell = s.get();
  s->handler_cell_ = cell;
  PgScope* self = s.get();
  s->node_up_ = node.on_node_up(
      [self](const std::string& peer) { self->apply(self->core_.discover({peer})); });
  s->node_down_ = node.on_node_down(
      [self](const std::string& peer, const Error&) { self->apply(self->core_.node_down(peer)); });
  if (s->options_.rediscover.count() > 0) {
    s->timer_ = std::make_unique<Timer>();
    if (int rc = s->timer_->h.init(node.loop(), self, uv_timer_init); rc != 0)
      return uv_error(Errc::io_error,
                      std::string("pg: cannot create the rediscover timer: ") + uv_strerror(rc),
                      rc);
    auto period = static_cast<std::uint64_t>(s->options_.rediscover.count());
    uv_timer_start(
        s->timer_->h.get(),
        [](uv_timer_t* t) {
          if (auto* scope = static_cast<PgScope*>(t->data)) scope->refresh();
        },
        period, period);
    uv_unref(s->timer_->h.handle());
  }
  // Announce to whoever is already connected.
  s->apply(s->core_.discover(node.connected_nodes()));
  return s;
}

PgScope::PgScope(dist::Node& node, PgScopeOptions options, term::Pid self)
    : node_(node), options_(std::move(options)), core_(options_.scope, std::move(self)) {}

PgScope::~PgScope() {
  alive_.expire();
  if (handler_cell_) *handler_cell_ = nullptr;
  timer_.reset();  // closes the handle (its data cleared first)
  node_.exit(core_.self(), "shutdown");
}

void PgScope::refresh() {
  apply(core_.refresh(node_.connected_nodes()));
}

void PgScope::join(std::string_view group_atom, const term::Pid& pid) {
  apply(core_.join(group_atom, pid));
}

void PgScope::leave(std::string_view group_atom, const term::Pid& pid) {
  apply(core_.leave(group_atom, pid));
}

int PgScope::on_change(ChangeEvent cb) {
  int id = next_id_++;
  on_change_.emplace(id, std::move(cb));
  return id;
}

void PgScope::remove_on_change(int id) {
  on_change_.erase(id);
}

void PgScope::on_message(const dist::Envelope& e) {
  if (e.kind != dist::Envelope::Kind::message) return;
  auto step = core_.handle(e.term);
  if (!step) {
    ++ignored_;
    spdlog::debug("pg scope {}: ignoring a message: {}", core_.scope(), step.error().message);
    return;
  }
  apply(std::move(*step));
}

void PgScope::apply(PgStep step) {
  for (auto& o : step.out) {
    std::span<const char> msg(o.term.data(), o.term.size());
    auto r =
        o.to ? node_.send(*o.to, msg) : node_.reg_send(core_.self(), o.node, core_.scope(), msg);
    if (!r) {
      ++failed_sends_;
      spdlog::debug("pg scope {}: send to {} failed (the next refresh repairs it): {}",
                    core_.scope(), o.node, r.error().message);
    }
  }
  if (step.changed.empty() || on_change_.empty()) return;
  // Copy: a callback may add or remove callbacks, or join groups.
  auto alive = alive_.watch();
  auto callbacks = on_change_;
  for (auto& node : step.changed)
    for (auto& [id, cb] : callbacks) {
      if (!alive) return;  // a callback destroyed us
      if (on_change_.count(id)) cb(node);
    }
}

Result<std::string> pg_scope_name(std::string_view name) {
  if (name.empty()) return make_error(Errc::invalid_argument, "the pg scope name is empty");
  std::string atom =
      name.front() >= 'A' && name.front() <= 'Z' && !name.starts_with("Elixir.") && name != "Elixir"
          ? "Elixir." + std::string(name)
          : std::string(name);
  if (atom.size() > 255)
    return make_error(Errc::invalid_argument,
                      "the pg scope name is over 255 bytes (the longest atom)");
  return atom;
}

}  // namespace beamlink::pubsub
