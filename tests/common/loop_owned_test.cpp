// LoopOwned on a real loop: a retired object leaves the live set at once and
// is destroyed on a later iteration, even when it retires itself from its
// own callback; destroying the set destroys everything and the deferred step
// then does nothing.
#include "common/loop_owned.hpp"

#include <doctest/doctest.h>
#include <uv.h>

#include <memory>

#include "common/uv_handle.hpp"

namespace beamlink {
namespace {

struct Tracked {
  int* destroyed;
  explicit Tracked(int* d) : destroyed(d) {}
  ~Tracked() { ++*destroyed; }
};

TEST_CASE("loop owned: retire leaves the live set now and destroys later") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int destroyed = 0;
  {
    LoopOwned<Tracked> set(&loop);
    Tracked* a = set.add(std::make_unique<Tracked>(&destroyed));
    Tracked* b = set.add(std::make_unique<Tracked>(&destroyed));
    CHECK(set.size() == 2);
    set.retire(a);
    set.retire(a);  // twice: once
    CHECK(set.size() == 1);
    CHECK_FALSE(set.contains(a));
    CHECK(set.contains(b));
    CHECK(set.live() == std::vector<Tracked*>{b});
    CHECK(destroyed == 0);  // still valid until a later iteration
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(destroyed == 1);
    CHECK(set.size() == 1);
  }
  CHECK(destroyed == 2);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

// An object with a timer that retires itself from the timer's callback.
struct SelfRetiring {
  LoopOwned<SelfRetiring>* owner;
  int* destroyed;
  bool after_retire_ok = false;
  UvHandle<uv_timer_t> timer;
  SelfRetiring(uv_loop_t* loop, LoopOwned<SelfRetiring>* o, int* d) : owner(o), destroyed(d) {
    REQUIRE(timer.init(loop, this, uv_timer_init) == 0);
    REQUIRE(uv_timer_start(
                timer.get(),
                [](uv_timer_t* t) {
                  auto* self = static_cast<SelfRetiring*>(t->data);
                  self->owner->retire(self);
                  self->after_retire_ok = true;  // still alive inside its callback
                  CHECK(*self->destroyed == 0);
                },
                0, 0) == 0);
  }
  ~SelfRetiring() { ++*destroyed; }
};

TEST_CASE("loop owned: an object may retire itself from its own callback") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int destroyed = 0;
  {
    LoopOwned<SelfRetiring> set(&loop);
    SelfRetiring* s = set.add(std::make_unique<SelfRetiring>(&loop, &set, &destroyed));
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(destroyed == 1);
    CHECK(set.empty());
    (void)s;
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("loop owned: destroyed before the deferred step runs") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int destroyed = 0;
  {
    LoopOwned<Tracked> set(&loop);
    set.retire(set.add(std::make_unique<Tracked>(&destroyed)));
    set.add(std::make_unique<Tracked>(&destroyed));
  }
  CHECK(destroyed == 2);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);  // the deferred step touches nothing
  CHECK(destroyed == 2);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace beamlink
