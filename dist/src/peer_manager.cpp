#include "dist/peer_manager.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log_event.hpp"
#include "common/uv_handle.hpp"

namespace beamlink::dist {
PeerManager::PeerManager(Node& node, Options options) : node_(node), options_(options) {
  node_down_ = node_.on_node_down([this](const std::string& n, const Error& why) {
    if (stopped_) return;
    auto it = peers_.find(n);
    if (it == peers_.end()) return;
    Peer& p = it->second;
    if (!p.wanted) {
      // It left DNS and now its connection went too: forget it.
      close_timer(p);
      peers_.erase(it);
      return;
    }
    log_event(spdlog::level::warn, {"lost; redialling", n, why.message}, "lost {}: {}; redialling",
              n, why.message);
    p.state = PeerState::backoff;
    p.failures = 0;
    p.backoff = std::chrono::milliseconds(0);
    schedule_retry(n);
  });
  node_up_ = node_.on_node_up([this](const std::string& n) {
    if (stopped_) return;
    auto it = peers_.find(n);
    if (it == peers_.end()) return;
    // An inbound connection from a peer we were waiting to redial.
    if (it->second.state == PeerState::backoff) close_timer(it->second);
    if (it->second.state != PeerState::dialling) it->second.state = PeerState::connected;
  });
}

PeerManager::~PeerManager() {
  stop();
}

void PeerManager::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& [n, p] : peers_) close_timer(p);
  node_up_.reset();
  node_down_.reset();
  alive_.expire();
}

void PeerManager::close_timer(Peer& p) {
  p.timer.reset();
}

void PeerManager::add(const std::string& peer) {
  if (stopped_) return;
  if (peer == node_.name()) {
    // Only this node itself is never a peer: PEER_NAME@<own IP> under
    // another name (the pod's node, beside a sidecar) is dialled like any.
    spdlog::debug("{} is this node itself: not a peer", peer);
    return;
  }
  auto [it, inserted] = peers_.try_emplace(peer);
  Peer& p = it->second;
  if (!inserted) {
    if (!p.wanted)
      log_event(spdlog::level::info, {"back in the peer set", peer, {}},
                "{} is back in the peer set", peer);
    p.wanted = true;
    return;
  }
  if (node_.is_connected(peer)) {
    p.state = PeerState::connected;
    return;
  }
  queue_.push_back(peer);
  pump();
}

void PeerManager::remove(const std::string& peer) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  Peer& p = it->second;
  p.wanted = false;
  if (p.state == PeerState::connected || p.state == PeerState::dialling) {
    // Keep a live (or nearly live) connection; just never redial it.
    if (p.state == PeerState::connected)
      log_event(spdlog::level::info,
                {"left the peer set", peer, "keeping its connection while it lasts"},
                "{} left the peer set; keeping its connection while it lasts", peer);
    return;
  }
  close_timer(p);
  queue_.erase(std::remove(queue_.begin(), queue_.end(), peer), queue_.end());
  peers_.erase(it);
}

void PeerManager::pump() {
  while (!stopped_ && in_flight_ < static_cast<std::size_t>(options_.max_parallel) &&
         !queue_.empty()) {
    std::string peer = queue_.front();
    queue_.erase(queue_.begin());
    auto it = peers_.find(peer);
    if (it == peers_.end() || !it->second.wanted) continue;
    dial(peer);
  }
}

void PeerManager::dial(const std::string& peer) {
  Peer& p = peers_[peer];
  p.state = PeerState::dialling;
  ++in_flight_;
  node_.connect(peer, [this, peer, alive = alive_.watch()](Result<void> r) {
    if (!alive || stopped_) return;
    --in_flight_;
    auto it = peers_.find(peer);
    if (it != peers_.end()) {
      Peer& q = it->second;
      if (r) {
        if (q.failures > 0)
          log_event(spdlog::level::info, {"reachable again", peer, {}}, "{} is reachable again",
                    peer);
        q.state = PeerState::connected;
        q.failures = 0;
        q.last_error.clear();
        q.backoff = std::chrono::milliseconds(0);
      } else if (!q.wanted) {
        peers_.erase(it);
      } else {
        ++q.failures;
        if (r.error().message != q.last_error) {
          // Node's errors name the peer and the step that failed.
          log_event(spdlog::level::warn, {"connect failed; retrying", peer, r.error().message},
                    "{} (retrying with backoff up to {:.1f} s)", r.error().message,
                    static_cast<double>(options_.max_backoff.count()) / 1000.0);
          q.last_error = r.error().message;
        }
        q.state = PeerState::backoff;
        schedule_retry(peer);
      }
    }
    pump();
  });
}

void PeerManager::schedule_retry(const std::string& peer) {
  auto entry = peers_.try_emplace(peer).first;
  Peer& p = entry->second;
  if (p.timer) return;
  p.backoff = p.backoff.count() == 0 ? options_.initial_backoff
                                     : std::min(p.backoff * 2, options_.max_backoff);
  std::uniform_int_distribution<long> jitter(0, static_cast<long>(p.backoff.count() / 2));
  auto delay = static_cast<std::uint64_t>(p.backoff.count() + jitter(rng_));
  // The timer's data is the peer's map entry (stable until it is erased,
  // which closes the timer first).
  if (int rc = p.timer.init(node_.loop(), &*entry, uv_timer_init); rc != 0) {
    spdlog::error("cannot schedule redialling {}: {}", peer, uv_strerror(rc));
    return;
  }
  p.owner = this;
  uv_timer_start(
      p.timer.get(),
      [](uv_timer_t* t) {
        auto* e = static_cast<std::pair<const std::string, Peer>*>(t->data);
        if (!e) return;
        PeerManager* self = e->second.owner;
        std::string name = e->first;
        auto it = self->peers_.find(name);
        if (it == self->peers_.end()) return;
        self->close_timer(it->second);
        if (self->node_.is_connected(name)) {
          it->second.state = PeerState::connected;
          return;
        }
        it->second.state = PeerState::waiting;
        self->queue_.push_back(name);
        self->pump();
      },
      delay, 0);
}

std::vector<PeerManager::PeerInfo> PeerManager::peers() const {
  std::vector<PeerInfo> out;
  for (auto& [n, p] : peers_)
    out.push_back(PeerInfo{n, p.state, p.failures, p.last_error, p.wanted});
  return out;
}

void PeerManager::write_metrics(MetricsWriter& m) const {
  static constexpr const char* kStates[] = {"waiting", "dialling", "connected", "backoff"};
  std::map<std::string, std::uint64_t> states;
  for (auto& p : peers()) ++states[kStates[static_cast<int>(p.state)]];
  m.family("beamlink_known_peers", MetricsWriter::Type::gauge,
           "Peers beamlink keeps connected, by state.");
  for (auto& [state, n] : states) m.sample("beamlink_known_peers", n, {{"state", state}});
}

}  // namespace beamlink::dist
