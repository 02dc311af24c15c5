// beamlink as a pg scope process (OTP 23+ `pg`, lib/kernel/src/pg.erl).
//
// A BEAM scope discovers only visible nodes (`nodes()`), so a hidden node
// must announce itself. The exchange, as pg.erl's handle_info/handle_cast
// implement it:
//
//   us   -> {Scope, Node}  {discover, OurPid}
//   BEAM -> OurPid         {'$gen_cast', {sync, ScopePid, [{Group, [Pid]}]}}
//   BEAM -> OurPid         {discover, ScopePid}          (only when it did not know us)
//   us   -> ScopePid       {'$gen_cast', {sync, OurPid, [{Group, [Pid]}]}}
//   us   -> ScopePid       {join, OurPid, Group, [Pid]}
//   us   -> ScopePid       {leave, OurPid, [Pid], [Group]}
//
// pg's catch-all clauses call erlang:error(badarg), and its leave_remote
// does maps:get(Group, ...) without a default: a leave for a group we never
// announced crashes the remote scope. So only these shapes are ever sent,
// and a leave only for a pid that joined that group.
//
// PgScopeCore is the protocol without I/O: a message in, the messages to send
// out. PgScope is the adapter that registers the core in a Node, feeds it,
// announces on every node up and periodically, and sends what it returns.
//
// Groups are any term on the wire; the API names atom groups by their text
// ("Elixir.MyApp.PubSub.Adapter"). Groups that are not atoms are tracked but
// not listed by groups_of().
//
// Thread: the loop's thread only (not synchronised).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "dist/process_table.hpp"
#include "term/term.hpp"

struct uv_timer_s;

namespace beamlink::dist {
class Node;
}  // namespace beamlink::dist

namespace beamlink::pubsub {

// One message the core asks to send: to a scope pid, or (without `to`) to
// the scope's registered name on `node`.
struct PgOut {
  std::optional<term::Pid> to;
  std::string node;  // the destination node (also set when `to` is)
  std::string term;  // the message, with its 131 version byte
};

// What one input did: the messages to send and the nodes whose known
// groups changed.
struct PgStep {
  std::vector<PgOut> out;
  std::vector<std::string> changed;
};

// An atom group's key (its encoding without version byte).
std::string pg_atom_group(std::string_view atom);

class PgScopeCore {
 public:
  // scope: the registered name (an atom's text); self: our scope pid.
  PgScopeCore(std::string scope, term::Pid self);

  const std::string& scope() const { return scope_; }
  const term::Pid& self() const { return self_; }

  // {discover, Self} to {Scope, Node} for each node.
  PgStep discover(const std::vector<std::string>& nodes) const;
  // A periodic refresh: discover for each node, and our full sync to every
  // scope we already know on them (pg answers a known peer's discover with
  // its own sync only, so this is what repairs a lost join).
  PgStep refresh(const std::vector<std::string>& nodes) const;

  // A message delivered to our scope process (with version byte). Fails with
  // bad_term for anything that is not one of pg's messages (then nothing
  // changed and nothing is sent).
  Result<PgStep> handle(std::span<const char> message);

  // The connection to `node` went: forget its scope and groups.
  PgStep node_down(const std::string& node);

  // Local membership (`pid` is ours). join of a pid already in the group and
  // leave of a pid not in it do nothing and send nothing.
  PgStep join(std::string_view group_atom, const term::Pid& pid);
  PgStep leave(std::string_view group_atom, const term::Pid& pid);

  // Remote members of an atom group, per node.
  std::map<std::string, std::vector<term::Pid>> members(std::string_view group_atom) const;
  // The atom groups `node`'s scope has members in.
  std::vector<std::string> groups_of(const std::string& node) const;
  // Nodes whose scope we know (a sync or discover came from it).
  std::vector<std::string> nodes() const;
  std::optional<term::Pid> scope_of(const std::string& node) const;
  // Our groups with their local members.
  std::vector<std::string> local_groups() const;

  // {'$gen_cast', {sync, Self, [{Group, [Pid]}]}} with our groups.
  std::string sync_message() const;

 private:
  using Groups = std::map<std::string, std::vector<term::Pid>>;  // group key -> pids
  struct Remote {
    term::Pid scope;
    Groups groups;
  };
  std::string discover_message() const;
  PgOut to_scope(const Remote& r, std::string term) const;
  PgStep on_discover(const term::Pid& peer);
  PgStep on_sync(const term::Pid& peer, Groups groups);
  PgStep on_join(const term::Pid& peer, const std::string& group, std::vector<term::Pid> pids);
  PgStep on_leave(const term::Pid& peer, const std::vector<term::Pid>& pids,
                  const std::vector<std::string>& groups);

  std::string scope_;
  term::Pid self_;
  Groups local_;
  std::map<std::string, Remote> remote_;  // node -> its scope
};

// The scope atom for a configured name: an Elixir alias ("Phoenix.PubSub",
// an upper-case first letter) becomes "Elixir.Phoenix.PubSub", as Elixir
// spells it; anything else ("my_scope", "Elixir.X") is the atom's text as
// is. invalid_argument when empty or over 255 bytes.
Result<std::string> pg_scope_name(std::string_view name);

struct PgScopeOptions {
  std::string scope = "Elixir.Phoenix.PubSub";  // Phoenix.PubSub 2.x's (PG2 adapter)
  std::chrono::milliseconds rediscover{5000};   // 0: only on node up and on demand
};

class PgScope {
 public:
  using ChangeEvent = std::function<void(const std::string& node)>;

  // Registers the scope process in `node` under options.scope and starts the
  // periodic announce. Fails with already_exists when the name is taken.
  // `node` must outlive the PgScope.
  static Result<std::unique_ptr<PgScope>> create(dist::Node& node, PgScopeOptions options = {});
  // Ends the scope process (peers drop our members when they notice) and
  // closes the timer.
  ~PgScope();
  PgScope(const PgScope&) = delete;
  PgScope& operator=(const PgScope&) = delete;

  const term::Pid& self() const { return core_.self(); }
  const std::string& scope() const { return core_.scope(); }

  // Announces now to every connected node (discover, and sync to known scopes).
  void refresh();

  // Local membership; sends join/leave to every known remote scope.
  void join(std::string_view group_atom, const term::Pid& pid);
  void leave(std::string_view group_atom, const term::Pid& pid);

  std::map<std::string, std::vector<term::Pid>> members(std::string_view group_atom) const {
    return core_.members(group_atom);
  }
  std::vector<std::string> groups_of(const std::string& node) const {
    return core_.groups_of(node);
  }
  std::vector<std::string> nodes() const { return core_.nodes(); }

  // Called (on the loop, never from inside the call that registers it) after
  // the groups known for `node` changed. Returns an id for remove_on_change.
  int on_change(ChangeEvent cb);
  void remove_on_change(int id);

  // Messages the core refused (malformed or not pg's) and sends that failed.
  std::uint64_t ignored_messages() const { return ignored_; }
  std::uint64_t failed_sends() const { return failed_sends_; }

 private:
  PgScope(dist::Node& node, PgScopeOptions options, term::Pid self);
  void apply(PgStep step);
  void on_message(const dist::Envelope& e);

  dist::Node& node_;
  PgScopeOptions options_;
  PgScopeCore core_;
  // The rediscover timer, in a struct defined with the adapter so that this
  // header (the core's) does not include uv.h.
  struct Timer;
  std::unique_ptr<Timer> timer_;
  // The scope process's handler (registered before this object existed)
  // finds it through this cell; cleared by the destructor.
  std::shared_ptr<PgScope*> handler_cell_;
  Subscription node_up_;
  Subscription node_down_;
  Liveness alive_;  // on_change callbacks may destroy this object
  std::map<int, ChangeEvent> on_change_;
  int next_id_ = 1;
  std::uint64_t ignored_ = 0;
  std::uint64_t failed_sends_ = 0;
};

}  // namespace beamlink::pubsub
