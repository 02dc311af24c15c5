// Polls NODE_DNS and reports how the peer set changes: the libuv adapter
// around PeerSet (peer_set.hpp), which holds the rules (this node itself and
// IPv6 skipped, a failed poll keeps the last known set, failures reported once per
// change of state).
//
// Timing: start() polls at once; each next poll starts `interval` after the
// previous one started (or at once if it took longer). One poll at a time.
// poll_now() polls at once, or right after the poll in flight (whose answer
// may predate the call).
//
// Events, in this order within one poll (Event::Kind):
//   skipped  an address that is not a peer: PEER_NAME@IP is this node
//            itself, or IPv6 (ei is IPv4-only). Once per address, when it
//            appears.
//   changed  the peer set changed: diff.added / diff.removed (PEER_NAME@IP).
//            The first successful poll reports the whole set as added. Not
//            reported when nothing changed.
//   ok       the first successful poll, and the first success after failing;
//            `peers` is the size of the set.
//   failing  a poll failed (error says why and what to do) and the last
//            known set is kept. Once per change: the first failure, and a
//            failure of another kind after it (timeout, refused and I/O
//            errors are one kind: the server is unreachable).
// The poller does not log: the owner logs the events (suggested levels:
// changed/ok info, failing warn, skipped info).
//
// Contract: the loop's thread only. Events are delivered on a later loop
// iteration, never from inside start(), poll_now() or stop(). A callback may
// call stop() or destroy the poller. After stop() or destruction no event
// runs; the lookup in flight is cancelled with the Resolver. Handles are
// closed with uv_close and freed in their close callbacks: run the loop once
// more before uv_loop_close.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "discovery/address.hpp"
#include "discovery/peer_set.hpp"
#include "discovery/resolver.hpp"

namespace beamlink::discovery {

class DnsPoller {
 public:
  struct Options {
    std::string name;                        // NODE_DNS, e.g. "ewallet.default.svc.cluster.local"
    bool srv = false;                        // ask SRV records and use their targets' addresses
    std::string peer_name = "ewallet";       // PEER_NAME: peers are PEER_NAME@IP
    std::vector<std::string> own_addresses;  // this node's IPs
    // This node's name: PEER_NAME@IP is skipped only when it is this node
    // (same alive part, IP one of own_addresses); empty: nothing is skipped
    // as ours. In a sidecar PEER_NAME@<own IP> is the pod's node: a peer.
    std::string own_name;
    std::chrono::milliseconds interval{5000};  // POLL_INTERVAL
    Resolver::Options resolver;                // empty: resolv.conf
  };

  struct Event {
    enum class Kind { skipped, changed, ok, failing } kind;
    PeerDiff diff;          // changed
    std::size_t peers = 0;  // ok: how many peers are known
    Error error;            // failing
    Skipped skipped{};      // skipped
  };
  using EventCallback = std::function<void(const Event&)>;

  // `loop` must outlive the poller. Fails when the Resolver cannot be made
  // (bad server list) or the name is empty (invalid_argument). Nothing is
  // asked until start().
  static Result<std::unique_ptr<DnsPoller>> create(uv_loop_t* loop, Options opts,
                                                   EventCallback on_event);
  ~DnsPoller();
  DnsPoller(const DnsPoller&) = delete;
  DnsPoller& operator=(const DnsPoller&) = delete;

  // The first poll, at once; then every interval. Only the first call counts.
  void start();
  // Polls at once (or after the poll in flight). Starts polling if needed.
  void poll_now();
  // No more polls and no more events. Idempotent.
  void stop();

  const std::set<std::string>& peers() const { return set_.peers(); }
  PollState state() const { return set_.state(); }
  uint64_t polls_completed() const { return polls_completed_; }
  const Options& options() const { return opts_; }
  const Resolver& resolver() const { return *resolver_; }
  // The events reported so far, by kind ("skipped", "changed", "ok",
  // "failing"); empty until the first poll has said anything.
  const std::map<std::string, std::uint64_t>& events_by_kind() const { return events_; }
  // beamlink_dns_polls_total{result}: the events above, of `poller`; the
  // family with no sample when there is none (no NODE_DNS).
  static void write_metrics(MetricsWriter& m, const DnsPoller* poller);

 private:
  DnsPoller(uv_loop_t* loop, Options opts, EventCallback on_event,
            std::unique_ptr<Resolver> resolver);
  void poll();
  void finished(const Result<std::vector<Address>>& resolved);
  void schedule_next();

  uv_loop_t* loop_;
  Options opts_;
  EventCallback on_event_;
  std::unique_ptr<Resolver> resolver_;
  PeerSet set_;
  UvHandle<uv_timer_t> timer_;  // the next poll
  bool started_ = false;
  bool stopped_ = false;
  bool in_flight_ = false;
  bool again_ = false;         // poll_now() during a poll
  uint64_t poll_started_ = 0;  // uv_now
  uint64_t polls_completed_ = 0;
  std::map<std::string, std::uint64_t> events_;
  Liveness alive_;  // expires with *this
};

}  // namespace beamlink::discovery
