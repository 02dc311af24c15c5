// Registering this node's name and port with epmd (ALIVE2_REQ), and keeping
// it registered.
//
// epmd keeps a registration exactly as long as the TCP connection that made
// it stays open, so a Registration holds that connection for the node's
// lifetime; stop() (or the destructor) closes it, which unregisters.
//
// Events (Event::Kind):
//   registered    the first attempt succeeded (creation = epmd's creation)
//   failed        the first attempt failed: the Registration stops; the owner
//                 decides (usually: exit with Event::error.message). While
//                 re-registering after `lost`, also reported when an attempt
//                 fails for a different reason than the previous failure
//                 (not on every retry); retrying goes on.
//   lost          after registered: epmd closed the connection (killed or
//                 restarted) or it failed. Reported once; then an attempt is
//                 made at once and every retry_interval until one succeeds.
//   reregistered  a retry succeeded (creation = the new creation).
// Error cases (Event::error, message says what to do): connection_refused (no
// epmd), timeout, already_exists (the name is taken), protocol_error,
// io_error/connection_closed, invalid_argument (bad alive name or a host that
// is not an IPv4 literal; reported as `failed`, later).
//
// Contract: loop thread only. Callbacks run on a later loop iteration, never
// from inside start() or stop(). A callback may call stop() or destroy the
// Registration. After stop() no callback runs. Handles are closed with
// uv_close and freed in their close callbacks: run the loop once more before
// uv_loop_close.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.hpp"
#include "common/uv_handle.hpp"
#include "epmd_client/codec.hpp"
#include "epmd_client/endpoint.hpp"

namespace beamlink::epmd_client {

namespace detail {
class Link;
}

class Registration {
 public:
  struct Options {
    Endpoint epmd;
    std::string alive;  // the part of the node name before '@'
    uint16_t port = 0;  // our distribution listen port
    uint8_t node_type = node_type_hidden;
    uint16_t highest = 6, lowest = 6;                // distribution protocol versions
    std::chrono::milliseconds timeout{3000};         // per attempt, connect to answer
    std::chrono::milliseconds retry_interval{1000};  // between attempts after `lost`
  };

  struct Event {
    enum class Kind { registered, lost, reregistered, failed } kind;
    uint32_t creation = 0;  // registered / reregistered
    Error error;            // lost / failed
  };

  // `loop` must outlive the Registration. Nothing happens until start().
  Registration(uv_loop_t* loop, Options opts, std::function<void(const Event&)> on_event);
  ~Registration();  // stop()
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  // The first attempt. Reports `registered` or `failed`, later. Only the first
  // call does anything.
  void start();
  // Closes the connection (epmd unregisters the name) and any retry timer.
  // No callback afterwards. Idempotent.
  void stop();

  bool registered() const { return state_ == State::registered; }
  uint32_t creation() const { return creation_; }  // of the latest registration
  const Options& options() const { return opts_; }

 private:
  enum class State { idle, registering, registered, retrying, stopped };

  void attempt();
  void on_data(std::span<const char> data);
  void on_end(Error e);
  void attempt_failed(Error e);
  void connection_lost(Error e);
  void emit(Event ev);  // always the caller's last action: it may destroy this
  Error explain(Error e) const;
  static void on_retry_timer(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  Options opts_;
  std::function<void(const Event&)> on_event_;
  std::unique_ptr<detail::Link> link_;
  UvHandle<uv_timer_t> retry_timer_;
  State state_ = State::idle;
  bool ever_registered_ = false;
  std::optional<Error> last_retry_failure_;
  std::string received_;
  uint32_t creation_ = 0;
};

}  // namespace beamlink::epmd_client
