// Events with RAII subscriptions, and the one "is my owner still alive" token.
//
// Signal<Args...> is a list of callbacks. subscribe() returns a Subscription;
// destroying the Subscription (or reset()) removes the callback, whether the
// Signal still exists or not. emit() calls the callbacks subscribed when it
// started, in order of subscription; a callback may subscribe (the new one is
// not called by this emit), unsubscribe itself or others (they are not called
// afterwards), and destroy the Signal's owner (emit then stops at once).
//
// Liveness is what a callback that can outlive its owner captures: the owner
// holds a Liveness member, the callback a Liveness::Watch, and checks
// `if (!watch) return;` before touching the owner.
//
// Thread: one thread (the loop's).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace beamlink {

// Removes one callback from a Signal when destroyed. Move-only; empty when
// default-constructed or moved from.
class [[nodiscard]] Subscription {
 public:
  Subscription() noexcept = default;
  explicit Subscription(std::function<void()> cancel) noexcept : cancel_(std::move(cancel)) {}
  ~Subscription() { reset(); }
  Subscription(Subscription&& o) noexcept : cancel_(std::exchange(o.cancel_, nullptr)) {}
  Subscription& operator=(Subscription&& o) noexcept {
    if (this != &o) {
      reset();
      cancel_ = std::exchange(o.cancel_, nullptr);
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  void reset() noexcept {
    if (auto c = std::exchange(cancel_, nullptr)) c();
  }
  explicit operator bool() const noexcept { return static_cast<bool>(cancel_); }

 private:
  std::function<void()> cancel_;
};

// Held by an owner; expires when the owner is destroyed (or on expire()).
class Liveness {
 public:
  class Watch {
   public:
    Watch() noexcept = default;
    explicit operator bool() const noexcept { return !w_.expired(); }

   private:
    friend class Liveness;
    explicit Watch(std::weak_ptr<const char> w) noexcept : w_(std::move(w)) {}
    std::weak_ptr<const char> w_;
  };

  Liveness() : p_(std::make_shared<const char>('\0')) {}
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  Watch watch() const noexcept { return Watch(p_); }
  // Expires every watch now (an owner that stops before it is destroyed).
  void expire() noexcept { p_.reset(); }

 private:
  std::shared_ptr<const char> p_;
};

template <class... Args>
class Signal {
 public:
  using Slot = std::function<void(Args...)>;

  Signal() = default;
  ~Signal() { state_->destroyed = true; }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  Subscription subscribe(Slot fn) {
    std::uint64_t id = state_->next_id++;
    state_->slots.push_back(Entry{id, std::move(fn)});
    return Subscription([w = std::weak_ptr<State>(state_), id] {
      if (auto s = w.lock()) s->remove(id);
    });
  }

  // Calls every callback subscribed now. The arguments are passed as lvalues
  // to each callback in turn.
  void emit(const Args&... args) {
    std::shared_ptr<State> s = state_;  // survives the owner's destruction
    const std::size_t n = s->slots.size();
    ++s->emitting;
    for (std::size_t i = 0; i < n && i < s->slots.size(); ++i) {
      if (!s->slots[i].fn) continue;  // removed during this emit
      Slot fn = s->slots[i].fn;       // a copy: the callback may remove itself
      fn(args...);
      if (s->destroyed) break;  // a callback destroyed the Signal's owner
    }
    if (--s->emitting == 0) s->compact();
  }

  std::size_t size() const noexcept {
    std::size_t n = 0;
    for (const auto& e : state_->slots) n += e.fn ? 1 : 0;
    return n;
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  struct Entry {
    std::uint64_t id;
    Slot fn;
  };
  struct State {
    std::vector<Entry> slots;
    std::uint64_t next_id = 1;
    int emitting = 0;
    bool destroyed = false;
    void remove(std::uint64_t id) {
      for (auto& e : slots)
        if (e.id == id) e.fn = nullptr;
      if (emitting == 0) compact();
    }
    void compact() {
      std::erase_if(slots, [](const Entry& e) { return !e.fn; });
    }
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace beamlink
