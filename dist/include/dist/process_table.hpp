// The local process table: C++ handlers registered under pids and names, and
// the links and monitors that remote processes hold on them.
//
// This is a core without I/O: operations return the control messages that
// must be sent to keep peers consistent (an EXIT for a linked peer, a
// MONITOR_P_EXIT for a monitoring peer, noproc answers for a link or monitor
// on a process that does not exist). The Node sends them.
//
// Thread: the loop's thread only (not synchronised).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "term/term.hpp"

namespace beamlink::dist {

class Node;

// What a local process receives.
struct Envelope {
  enum class Kind {
    message,  // term: the message, starting with its 131 version byte
    exit,     // a linked process ended or sent an exit signal; term: reason (no version byte)
    down,     // a monitored process ended; term: reason (no version byte); ref set
  };
  Kind kind = Kind::message;
  const term::Pid* from = nullptr;  // the sender, when the control message names one
  std::span<const char> term;
  const term::Ref* ref = nullptr;
};

// A handler runs on the loop thread, synchronously from the read callback.
// It may send, spawn, register and end processes (even itself).
using Handler = std::function<void(const term::Pid& self, const Envelope&)>;

// A control message the table asks the node to send to a remote process.
struct Outgoing {
  enum class Kind { exit, monitor_p_exit, unlink_id_ack };
  Kind kind;
  std::variant<term::Pid, std::string> from;  // our pid, or our registered name (monitor by name)
  term::Pid to;
  term::Ref ref;         // monitor_p_exit
  std::uint64_t id = 0;  // unlink_id_ack
  std::string reason;    // encoded reason term, no version byte
};

// Encodes an atom reason such as noproc, noconnection or normal (no version byte).
std::string atom_reason(std::string_view atom);

class ProcessTable {
 public:
  ProcessTable(std::string node_name, std::uint32_t creation);

  const std::string& node_name() const { return node_name_; }
  std::uint32_t creation() const { return creation_; }
  void set_creation(std::uint32_t c) { creation_ = c; }

  term::Pid make_pid();
  term::Ref make_ref();

  term::Pid spawn(Handler h);
  // Fails with already_exists when the name is taken.
  Result<term::Pid> register_name(const std::string& name, Handler h);
  bool exists(const term::Pid& p) const { return procs_.count(p) != 0; }
  std::optional<term::Pid> whereis(const std::string& name) const;
  std::vector<std::string> registered() const;
  std::size_t size() const { return procs_.size(); }

  // Ends a local process: returns the EXITs for its links and the
  // MONITOR_P_EXITs for its monitors. No-op for an unknown pid.
  std::vector<Outgoing> exit(const term::Pid& p, std::string_view reason_term);

  // Deliver to a local pid or name. Returns false when there is no such
  // process (a message to a dead process is dropped, as on the BEAM).
  bool deliver(const term::Pid& to, const Envelope& e);
  bool deliver(const std::string& name, const Envelope& e);

  // Remote side of links and monitors, from control messages.
  std::vector<Outgoing> link(const term::Pid& remote, const term::Pid& local);
  void unlink(const term::Pid& remote, const term::Pid& local);
  std::vector<Outgoing> unlink_id(std::uint64_t id, const term::Pid& remote,
                                  const term::Pid& local);
  // An EXIT from a linked remote process: drops the link, delivers an exit
  // envelope to the local process.
  void linked_exit(const term::Pid& remote, const term::Pid& local, std::span<const char> reason);
  std::vector<Outgoing> monitor(const term::Pid& watcher,
                                const std::variant<term::Pid, std::string>& target,
                                const term::Ref& ref);
  void demonitor(const term::Pid& watcher, const std::variant<term::Pid, std::string>& target,
                 const term::Ref& ref);

  // A connection to `node` went down: forget every link and monitor held by
  // its processes, and tell local processes linked to them (reason
  // noconnection), as the BEAM does.
  void node_down(const std::string& node);

  // Number of links and monitors remote processes hold (for tests and metrics).
  std::size_t link_count() const;
  std::size_t monitor_count() const;

 private:
  struct Process {
    Handler handler;
    std::string name;
    std::set<term::Pid> links;                                 // remote pids
    std::map<term::Ref, std::pair<term::Pid, bool>> monitors;  // ref -> (watcher, by name)
  };
  Process* find(const term::Pid& p);
  Process* find(const std::variant<term::Pid, std::string>& target, term::Pid* resolved);

  std::string node_name_;
  std::uint32_t creation_;
  std::uint32_t next_num_ = 1;
  std::uint32_t next_serial_ = 0;
  std::uint64_t next_ref_ = 1;
  std::unordered_map<term::Pid, std::shared_ptr<Process>, term::PidHash>
      procs_;  // shared: a handler may end its own process
  std::unordered_map<std::string, term::Pid> names_;
};

}  // namespace beamlink::dist
