// The objects a server owns on the loop (its connections, its clients), and
// the one way such an object is destroyed when it asks to be from inside its
// own callback.
//
// LoopOwned<T> owns each object through a unique_ptr. retire(p) takes p out
// of the live set at once (size() and live() no longer count it) and
// destroys it on a later loop iteration, from a defer() guarded by this
// set's Liveness: a connection whose read callback closes it is still there
// when the callback returns, and gone before anything else can reach it.
// Destroying the LoopOwned destroys every object, live or retired, at once;
// a deferred step that comes later does nothing. Objects must not call back
// into the LoopOwned from their destructors.
//
// Thread: the loop's thread only.
#pragma once

#include <uv.h>

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/signal.hpp"
#include "common/uv_util.hpp"

namespace beamlink {

template <class T>
class LoopOwned {
 public:
  explicit LoopOwned(uv_loop_t* loop) noexcept : loop_(loop) {}
  ~LoopOwned() { alive_.expire(); }
  LoopOwned(const LoopOwned&) = delete;
  LoopOwned& operator=(const LoopOwned&) = delete;

  // Takes ownership of `obj` (not null); returns it.
  T* add(std::unique_ptr<T> obj) {
    T* p = obj.get();
    all_.emplace(p, Entry{std::move(obj), false});
    return p;
  }

  // Out of the live set now, destroyed on a later loop iteration. Safe from
  // inside p's own callbacks. Does nothing for an object already retired or
  // not owned here.
  void retire(T* p) {
    auto it = all_.find(p);
    if (it == all_.end() || it->second.retired) return;
    it->second.retired = true;
    ++retired_;
    defer(loop_, alive_.watch(), [this, p] {
      all_.erase(p);
      --retired_;
    });
  }

  bool contains(const T* p) const {
    auto it = all_.find(const_cast<T*>(p));
    return it != all_.end() && !it->second.retired;
  }

  // Live objects (not retired).
  std::size_t size() const noexcept { return all_.size() - retired_; }
  bool empty() const noexcept { return size() == 0; }

  // A snapshot of the live objects, for a loop whose calls may retire some
  // (they stay valid until the loop iteration ends) or add others (not in
  // the snapshot).
  std::vector<T*> live() const {
    std::vector<T*> out;
    out.reserve(size());
    for (const auto& [p, e] : all_)
      if (!e.retired) out.push_back(p);
    return out;
  }

 private:
  struct Entry {
    std::unique_ptr<T> obj;
    bool retired;
  };
  uv_loop_t* loop_;
  std::unordered_map<T*, Entry> all_;
  std::size_t retired_ = 0;
  Liveness alive_;
};

}  // namespace beamlink
