#include "logging.hpp"

#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include "common/log_event.hpp"
#include "term/term_json.hpp"

namespace beamlink::app {
namespace {

// `s` with every byte that is not part of valid UTF-8 replaced by U+FFFD: a
// log line may quote what a peer sent, and the JSON must stay valid.
std::string_view valid_utf8(std::string_view s, std::string& scratch) {
  auto seq_len = [&](std::size_t i) -> std::size_t {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) return 1;
    std::size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (n == 0 || (n == 3 && c >= 0xF0) || i + n > s.size()) return 0;
    auto c1 = static_cast<unsigned char>(s[i + 1]);
    if ((c1 & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) ||
        (c == 0xF4 && c1 >= 0x90))
      return 0;
    for (std::size_t k = 2; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
    return n;
  };
  std::size_t i = 0;
  while (i < s.size()) {
    auto n = seq_len(i);
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return s;
  scratch.assign(s.substr(0, i));
  while (i < s.size()) {
    auto n = seq_len(i);
    if (n == 0) {
      scratch += "\xEF\xBF\xBD";
      ++i;
    } else {
      scratch.append(s.substr(i, n));
      i += n;
    }
  }
  return scratch;
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    line_.clear();
    line_ += "{\"time\":\"";
    append_time(msg.time);
    line_ += "\",\"level\":";
    auto level = spdlog::level::to_string_view(msg.level);
    term::append_json_quoted(line_, std::string_view(level.data(), level.size()));
    const std::string_view message(msg.payload.data(), msg.payload.size());
    const LogFields* f = current_log_fields;
    line_ += ",\"event\":";
    quoted(f ? f->event : message);
    line_ += ",\"peer\":";
    append_or_null(f ? f->peer : std::string_view());
    line_ += ",\"reason\":";
    append_or_null(f ? f->reason : std::string_view());
    line_ += ",\"message\":";
    quoted(message);
    line_ += "}\n";
    dest.append(line_.data(), line_.data() + line_.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }

 private:
  void quoted(std::string_view s) { term::append_json_quoted(line_, valid_utf8(s, scratch_)); }

  void append_or_null(std::string_view s) {
    if (s.empty())
      line_ += "null";
    else
      quoted(s);
  }

  void append_time(spdlog::log_clock::time_point t) {
    using namespace std::chrono;
    auto since = t.time_since_epoch();
    auto secs = duration_cast<seconds>(since);
    auto ms = duration_cast<milliseconds>(since - secs).count();
    std::time_t tt = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[96];  // room for any int in each field: no truncation warning
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    line_ += buf;
  }

  std::string line_, scratch_;
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_json_log_formatter() {
  return std::make_unique<JsonFormatter>();
}

}  // namespace beamlink::app
