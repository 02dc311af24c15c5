// Keeps a set of peers connected: the nodes given with --connect and the ones
// DNS discovery reports.
//
// - New peers are dialled in parallel, at most `max_parallel` at once, each
//   bounded by the node's connect timeout, so a dead address delays nobody.
// - A failed or lost peer is redialled after a delay that doubles from
//   `initial_backoff` up to `max_backoff`, plus up to 50% jitter.
// - A failure is logged when its reason changes, not on every attempt.
// - remove() stops redialling a peer but leaves a live connection alone
//   (during a rolling update a pod that left DNS is still a live node).
// - add() of this node's own name is ignored; any other name is a peer, an
//   address shared with this node included (a sidecar's pod node).
//
// Thread: the loop's thread. Owned by the caller; must be destroyed (or
// stop()ped) before the Node.
#pragma once

#include <uv.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "dist/node.hpp"

namespace beamlink::dist {

class PeerManager {
 public:
  struct Options {
    int max_parallel = 8;
    std::chrono::milliseconds initial_backoff{500};
    std::chrono::milliseconds max_backoff{30000};
  };
  enum class PeerState { waiting, dialling, connected, backoff };
  struct PeerInfo {
    std::string node;
    PeerState state;
    int failures;  // consecutive failures
    std::string last_error;
    bool wanted;  // still in the configured/discovered set
  };

  PeerManager(Node& node, Options options);
  PeerManager(Node& node) : PeerManager(node, Options{}) {}
  ~PeerManager();
  PeerManager(const PeerManager&) = delete;
  PeerManager& operator=(const PeerManager&) = delete;

  void add(const std::string& peer);
  void remove(const std::string& peer);
  void stop();

  std::vector<PeerInfo> peers() const;
  std::size_t dialling() const { return in_flight_; }
  // The peers kept connected, by state.
  void write_metrics(MetricsWriter& m) const;

 private:
  struct Peer {
    PeerState state = PeerState::waiting;
    int failures = 0;
    std::chrono::milliseconds backoff{0};
    std::string last_error;
    bool wanted = true;
    UvHandle<uv_timer_t> timer;  // data: this peer's entry in peers_
    PeerManager* owner = nullptr;
  };
  void pump();
  void dial(const std::string& peer);
  void schedule_retry(const std::string& peer);
  void close_timer(Peer& p);

  Node& node_;
  Options options_;
  std::map<std::string, Peer> peers_;
  std::vector<std::string> queue_;  // waiting to be dialled, in order
  std::size_t in_flight_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopped_ = false;
  Subscription node_up_;
  Subscription node_down_;
  Liveness alive_;  // connect callbacks watch it
};

}  // namespace beamlink::dist
