// Clocks of the relay load tools: CLOCK_REALTIME for send times that another
// process on the machine compares with its own receive times, CLOCK_MONOTONIC
// for durations, and this process's CPU time.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <ctime>

namespace beamlink::bench {

inline std::int64_t realtime_us() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

inline std::int64_t mono_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

// User + system CPU of this process so far, us.
inline std::int64_t cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (std::int64_t{ru.ru_utime.tv_sec} + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

}  // namespace beamlink::bench
