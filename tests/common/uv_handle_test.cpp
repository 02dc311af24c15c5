// UvHandle and defer on a real loop: a handle is freed in its close callback,
// a cancelled callback sees data == nullptr, a deferred call runs later or
// not at all once its owner has gone.
#include "common/uv_handle.hpp"

#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <string>

#include "common/uv_util.hpp"

namespace beamlink {
namespace {

TEST_CASE("uv handle: closes in its destructor and the loop ends cleanly") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int fired = 0;
  {
    UvHandle<uv_timer_t> t;
    REQUIRE(t.init(&loop, &fired, uv_timer_init) == 0);
    CHECK(t->data == &fired);
    REQUIRE(uv_timer_start(
                t.get(), [](uv_timer_t* h) { ++*static_cast<int*>(h->data); }, 0, 0) == 0);
  }  // closed before it could fire
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(fired == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("uv handle: a pending write completes with ECANCELED and data cleared") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int fds[2];
  REQUIRE(uv_socketpair(SOCK_STREAM, 0, fds, 0, 0) == 0);
  struct Seen {
    int status = 1;
    bool data_was_null = false;
  } seen;
  UvHandle<uv_pipe_t> p;
  REQUIRE(p.init(&loop, &seen, uv_pipe_init, 0) == 0);
  REQUIRE(uv_pipe_open(p.get(), fds[0]) == 0);
  // Fill the socket buffer so the next write stays queued.
  std::string big(8 << 20, 'x');
  uv_buf_t buf = uv_buf_init(big.data(), static_cast<unsigned>(big.size()));
  uv_write_t req;
  req.data = &seen;
  REQUIRE(uv_write(&req, p.stream(), &buf, 1, [](uv_write_t* r, int status) {
            auto* s = static_cast<Seen*>(r->data);
            s->status = status;
            s->data_was_null = r->handle->data == nullptr;
          }) == 0);
  p.reset();
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(seen.status == UV_ECANCELED);
  CHECK(seen.data_was_null);
  CHECK(uv_loop_close(&loop) == 0);
  uv_os_fd_t other = fds[1];
  close(other);
}

TEST_CASE("defer: runs later - never inside the call - and not after its owner went") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  int ran = 0, skipped = 0;
  {
    Liveness owner;
    defer(&loop, owner.watch(), [&] { ++ran; });
    CHECK(ran == 0);
    Liveness gone;
    defer(&loop, gone.watch(), [&] { ++skipped; });
    gone.expire();
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  }
  defer(&loop, [&] { ++ran; });
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(ran == 2);
  CHECK(skipped == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace beamlink
