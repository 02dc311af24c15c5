// Callbacks by topic: the one registry behind every "subscribe to a topic,
// deliver what arrives on it" in beamlink (a PubSub bridge's local
// subscribers, the relay's channel listeners).
//
// TopicRegistry<Args...> keeps a Signal<Args...> per topic that has
// subscribers. subscribe() returns a Subscription (RAII, signal.hpp);
// emit(topic, args...) calls that topic's callbacks subscribed when it
// started, in order of subscription, with Signal's guarantees: a callback
// may subscribe (not called by this emit), unsubscribe itself or any other
// (they are not called afterwards), including the topic's last subscriber.
//
// Hooks, for an owner that forwards its topics to another source: on_open
// runs when a topic gets its first subscriber (after it is added), on_close
// when its last one goes (the topic is no longer listed then). Neither runs
// from the destructor. A Subscription may outlive the registry: resetting
// it then does nothing.
//
// Thread: one thread (the loop's).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/signal.hpp"

namespace beamlink {

template <class... Args>
class TopicRegistry {
 public:
  using Slot = std::function<void(Args...)>;
  using Hook = std::function<void(const std::string& topic)>;

  explicit TopicRegistry(Hook on_open = {}, Hook on_close = {})
      : state_(std::make_shared<State>()) {
    state_->on_open = std::move(on_open);
    state_->on_close = std::move(on_close);
  }
  ~TopicRegistry() {
    state_->on_close = nullptr;  // the topics go with the registry, silently
  }
  TopicRegistry(const TopicRegistry&) = delete;
  TopicRegistry& operator=(const TopicRegistry&) = delete;

  Subscription subscribe(const std::string& topic, Slot fn) {
    auto it = state_->topics.find(topic);
    bool fresh = it == state_->topics.end();
    if (fresh) it = state_->topics.emplace(topic, std::make_unique<Signal<Args...>>()).first;
    auto inner = std::make_shared<Subscription>(it->second->subscribe(std::move(fn)));
    if (fresh && state_->on_open) state_->on_open(topic);
    return Subscription([w = std::weak_ptr<State>(state_), topic, inner] {
      inner->reset();
      if (auto s = w.lock()) s->close_if_empty(topic);
    });
  }

  // Calls the subscribers of `topic`; returns whether it had any.
  bool emit(std::string_view topic, const Args&... args) {
    auto it = state_->topics.find(topic);
    if (it == state_->topics.end()) return false;
    it->second->emit(args...);  // may erase the entry (its Signal survives the call)
    return true;
  }

  bool has(std::string_view topic) const { return state_->topics.contains(topic); }
  // Subscribers of `topic`.
  std::size_t count(std::string_view topic) const {
    auto it = state_->topics.find(topic);
    return it == state_->topics.end() ? 0 : it->second->size();
  }
  // Topics with subscribers.
  std::size_t size() const noexcept { return state_->topics.size(); }
  bool empty() const noexcept { return state_->topics.empty(); }
  std::vector<std::string> topics() const {
    std::vector<std::string> out;
    out.reserve(state_->topics.size());
    for (const auto& [t, s] : state_->topics) out.push_back(t);
    return out;
  }

 private:
  struct State {
    std::map<std::string, std::unique_ptr<Signal<Args...>>, std::less<>> topics;
    Hook on_open, on_close;
    void close_if_empty(const std::string& topic) {
      auto it = topics.find(topic);
      if (it == topics.end() || !it->second->empty()) return;
      topics.erase(it);
      if (on_close) {
        Hook hook = on_close;  // the hook may destroy the registry
        hook(topic);
      }
    }
  };
  std::shared_ptr<State> state_;
};

}  // namespace beamlink
