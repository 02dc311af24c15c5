#include "dist/process_table.hpp"

#include <algorithm>

namespace beamlink::dist {

std::string atom_reason(std::string_view atom) {
  term::TermWriter w(false);
  w.atom(atom);
  auto b = w.bytes();
  return std::string(b.data(), b.size());
}

namespace {

// An exit signal from our process `from` to the remote `to`. Built field by
// field: from an aggregate with an empty Ref temporary GCC 12 at -O3 warns
// that the temporary's string may be used uninitialized.
Outgoing exit_signal(const term::Pid& from, const term::Pid& to, std::string reason) {
  Outgoing o{};
  o.kind = Outgoing::Kind::exit;
  o.from = from;
  o.to = to;
  o.reason = std::move(reason);
  return o;
}

}  // namespace

ProcessTable::ProcessTable(std::string node_name, std::uint32_t creation)
    : node_name_(std::move(node_name)), creation_(creation) {}

term::Pid ProcessTable::make_pid() {
  // As the BEAM's external pids: a 15-bit number and a 13-bit serial.
  term::Pid p{node_name_, next_num_, next_serial_, creation_};
  if (++next_num_ > 0x7fff) {
    next_num_ = 1;
    next_serial_ = (next_serial_ + 1) & 0x1fff;
  }
  return p;
}

term::Ref ProcessTable::make_ref() {
  term::Ref r;
  r.node = node_name_;
  r.creation = creation_;
  r.len = 3;
  std::uint64_t v = next_ref_++;
  r.n[0] = static_cast<std::uint32_t>(v & 0x3ffff);  // 18 bits, as the BEAM's first word
  r.n[1] = static_cast<std::uint32_t>(v >> 18);
  r.n[2] = static_cast<std::uint32_t>(v >> 50);
  return r;
}

term::Pid ProcessTable::spawn(Handler h) {
  term::Pid p = make_pid();
  while (procs_.count(p)) p = make_pid();
  auto proc = std::make_shared<Process>();
  proc->handler = std::move(h);
  procs_.emplace(p, std::move(proc));
  return p;
}

Result<term::Pid> ProcessTable::register_name(const std::string& name, Handler h) {
  if (names_.count(name))
    return make_error(Errc::already_exists,
                      "the name '" + name + "' is already registered on " + node_name_);
  term::Pid p = spawn(std::move(h));
  procs_[p]->name = name;
  names_.emplace(name, p);
  return p;
}

std::optional<term::Pid> ProcessTable::whereis(const std::string& name) const {
  auto it = names_.find(name);
  if (it == names_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> ProcessTable::registered() const {
  std::vector<std::string> out;
  for (auto& [n, p] : names_) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

ProcessTable::Process* ProcessTable::find(const term::Pid& p) {
  auto it = procs_.find(p);
  return it == procs_.end() ? nullptr : it->second.get();
}

ProcessTable::Process* ProcessTable::find(const std::variant<term::Pid, std::string>& target,
                                          term::Pid* resolved) {
  if (auto* pid = std::get_if<term::Pid>(&target)) {
    *resolved = *pid;
    return find(*pid);
  }
  auto named = whereis(std::get<std::string>(target));
  if (!named) return nullptr;
  *resolved = *named;
  return find(*named);
}

std::vector<Outgoing> ProcessTable::exit(const term::Pid& p, std::string_view reason_term) {
  std::vector<Outgoing> out;
  auto it = procs_.find(p);
  if (it == procs_.end()) return out;
  auto proc = it->second;  // keep alive: this may run inside the process's own handler
  procs_.erase(it);
  if (!proc->name.empty()) names_.erase(proc->name);
  for (auto& remote : proc->links) out.push_back(exit_signal(p, remote, std::string(reason_term)));
  for (auto& [ref, watcher] : proc->monitors) {
    std::variant<term::Pid, std::string> from = p;
    if (watcher.second) from = proc->name;
    out.push_back(Outgoing{Outgoing::Kind::monitor_p_exit, from, watcher.first, ref, 0,
                           std::string(reason_term)});
  }
  return out;
}

bool ProcessTable::deliver(const term::Pid& to, const Envelope& e) {
  auto it = procs_.find(to);
  if (it == procs_.end()) return false;
  auto proc = it->second;  // the handler may end this process
  if (proc->handler) proc->handler(to, e);
  return true;
}

bool ProcessTable::deliver(const std::string& name, const Envelope& e) {
  auto p = whereis(name);
  return p && deliver(*p, e);
}

std::vector<Outgoing> ProcessTable::link(const term::Pid& remote, const term::Pid& local) {
  if (auto* proc = find(local)) {
    proc->links.insert(remote);
    return {};
  }
  // Linking to a process that does not exist: the linker gets an exit signal
  // with reason noproc.
  std::vector<Outgoing> out;
  out.push_back(exit_signal(local, remote, atom_reason("noproc")));
  return out;
}

void ProcessTable::unlink(const term::Pid& remote, const term::Pid& local) {
  if (auto* proc = find(local)) proc->links.erase(remote);
}

std::vector<Outgoing> ProcessTable::unlink_id(std::uint64_t id, const term::Pid& remote,
                                              const term::Pid& local) {
  unlink(remote, local);
  // UNLINK_ID is always acknowledged, even for a process that is gone.
  return {Outgoing{Outgoing::Kind::unlink_id_ack, local, remote, {}, id, {}}};
}

void ProcessTable::linked_exit(const term::Pid& remote, const term::Pid& local,
                               std::span<const char> reason) {
  auto* proc = find(local);
  if (!proc) return;
  proc->links.erase(remote);
  Envelope e;
  e.kind = Envelope::Kind::exit;
  e.from = &remote;
  e.term = reason;
  deliver(local, e);
}

std::vector<Outgoing> ProcessTable::monitor(const term::Pid& watcher,
                                            const std::variant<term::Pid, std::string>& target,
                                            const term::Ref& ref) {
  term::Pid resolved;
  if (auto* proc = find(target, &resolved)) {
    proc->monitors[ref] = {watcher, std::holds_alternative<std::string>(target)};
    return {};
  }
  // Monitoring a process that does not exist: an immediate DOWN with noproc,
  // naming the target as it was given.
  return {Outgoing{Outgoing::Kind::monitor_p_exit, target, watcher, ref, 0, atom_reason("noproc")}};
}

void ProcessTable::demonitor(const term::Pid& watcher,
                             const std::variant<term::Pid, std::string>& target,
                             const term::Ref& ref) {
  term::Pid resolved;
  if (auto* proc = find(target, &resolved)) {
    auto it = proc->monitors.find(ref);
    if (it != proc->monitors.end() && it->second.first == watcher) proc->monitors.erase(it);
  }
}

void ProcessTable::node_down(const std::string& node) {
  const std::string reason = atom_reason("noconnection");
  std::vector<std::pair<term::Pid, term::Pid>> exits;  // (remote, local)
  for (auto& [pid, proc] : procs_) {
    for (auto it = proc->links.begin(); it != proc->links.end();) {
      if (it->node == node) {
        exits.emplace_back(*it, pid);
        it = proc->links.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = proc->monitors.begin(); it != proc->monitors.end();) {
      if (it->second.first.node == node)
        it = proc->monitors.erase(it);
      else
        ++it;
    }
  }
  for (auto& [remote, local] : exits) {
    Envelope e;
    e.kind = Envelope::Kind::exit;
    e.from = &remote;
    e.term = std::span<const char>(reason.data(), reason.size());
    deliver(local, e);
  }
}

std::size_t ProcessTable::link_count() const {
  std::size_t n = 0;
  for (auto& [p, proc] : procs_) n += proc->links.size();
  return n;
}

std::size_t ProcessTable::monitor_count() const {
  std::size_t n = 0;
  for (auto& [p, proc] : procs_) n += proc->monitors.size();
  return n;
}

}  // namespace beamlink::dist
