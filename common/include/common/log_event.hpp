// A log line that also carries what happened as fields: the event, the peer
// it concerns and the reason. The text line is the message as always; with
// LOG_FORMAT=json (app/src/logging.cpp) the fields become the object's
// "event", "peer" and "reason". A line logged with plain spdlog::info and
// friends has its message as its event.
//
//   log_event(spdlog::level::info, {"connected", peer, "outbound"},
//             "connected to {} (outbound)", peer);
//
// Thread: any; the fields are passed to the formatter through a thread-local
// for the duration of the call (spdlog formats in the calling thread).
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>
#include <utility>

namespace beamlink {

struct LogFields {
  std::string_view event;   // what happened, a short fixed phrase: "connected", "disconnected"
  std::string_view peer;    // the node (or address) it concerns, or empty
  std::string_view reason;  // why, or how, or empty
};

// The fields of the line being logged on this thread, or null.
inline thread_local const LogFields* current_log_fields = nullptr;

template <class... Args>
void log_event(spdlog::level::level_enum level, const LogFields& fields,
               spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (!spdlog::should_log(level)) return;
  struct Scope {
    explicit Scope(const LogFields* f) { current_log_fields = f; }
    ~Scope() { current_log_fields = nullptr; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  } scope(&fields);
  spdlog::log(level, fmt, std::forward<Args>(args)...);
}

}  // namespace beamlink
