// LOG_FORMAT=json: one JSON object per line on stderr, for cluster log
// pipelines. Every line has the same keys:
//   {"time":"2024-05-01T10:00:00.123Z","level":"info","event":"connected",
//    "peer":"ewallet@10.0.0.5","reason":"outbound",
//    "message":"connected to ewallet@10.0.0.5 (outbound)"}
// time is UTC (RFC 3339, milliseconds); level is spdlog's (trace, debug,
// info, warning, error, critical); event, peer and reason come from
// log_event() (common/log_event.hpp) where the line has them, else event is
// the message and peer and reason are null.
#pragma once

#include <spdlog/formatter.h>

#include <memory>

namespace beamlink::app {

std::unique_ptr<spdlog::formatter> make_json_log_formatter();

}  // namespace beamlink::app
