#include "doctor/report.hpp"

#include <map>

#include "common/utf8.hpp"
#include "term/term_json.hpp"

namespace beamlink::doctor {

const char* status_name(Status s) {
  switch (s) {
    case Status::pass:
      return "pass";
    case Status::warn:
      return "warn";
    case Status::fail:
      return "fail";
    case Status::skip:
      return "skip";
  }
  return "?";
}

int Report::exit_code() const {
  if (doctor_failed) return 2;
  for (auto& c : checks)
    if (c.status == Status::fail || c.status == Status::warn) return 1;
  return 0;
}

std::size_t Report::count(Status s) const {
  std::size_t n = 0;
  for (auto& c : checks) n += c.status == s;
  return n;
}

namespace {

// A peer's node name, status text or epmd names end up in findings: printed
// to a terminal they must not carry escape sequences, and JSON must stay
// valid UTF-8 (json_quote escapes the control characters there).
std::string shown(const std::string& s) {
  return sanitize_utf8(s, /*escape_controls=*/true);
}
std::string quoted(const std::string& s) {
  return term::json_quote(sanitize_utf8(s));
}

}  // namespace

std::string to_text(const Report& r, bool color) {
  auto paint = [&](const char* code, const std::string& s) {
    return color ? std::string("\x1b[") + code + "m" + s + "\x1b[0m" : s;
  };
  std::string out;
  if (r.doctor_failed) return "doctor: cannot run: " + shown(r.doctor_error) + "\n";
  // Grouped by subject, in the order subjects first appear.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Check*>> by_subject;
  for (auto& c : r.checks) {
    if (!by_subject.count(c.subject)) order.push_back(c.subject);
    by_subject[c.subject].push_back(&c);
  }
  for (auto& subject : order) {
    out += paint("1", shown(subject)) + "\n";
    for (auto* c : by_subject[subject]) {
      std::string mark;
      switch (c->status) {
        case Status::pass:
          mark = paint("32", "✓");
          break;
        case Status::warn:
          mark = paint("33", "!");
          break;
        case Status::fail:
          mark = paint("31", "✗");
          break;
        case Status::skip:
          mark = paint("2", "-");
          break;
      }
      out += "  " + mark + " " + shown(c->id) + ": " + shown(c->finding) + "\n";
      if (!c->fix.empty()) out += "      fix: " + shown(c->fix) + "\n";
    }
  }
  out += std::to_string(r.count(Status::pass)) + " passed, " +
         std::to_string(r.count(Status::fail)) + " failed, " +
         std::to_string(r.count(Status::warn)) + " warnings, " +
         std::to_string(r.count(Status::skip)) + " skipped\n";
  return out;
}

std::string to_json(const Report& r) {
  std::string out = "{\"healthy\":";
  out += r.exit_code() == 0 ? "true" : "false";
  out += ",\"exit_code\":" + std::to_string(r.exit_code());
  if (r.doctor_failed) out += ",\"error\":" + quoted(r.doctor_error);
  out += ",\"checks\":[";
  bool first = true;
  for (auto& c : r.checks) {
    if (!first) out += ",";
    first = false;
    out += "{\"id\":" + quoted(c.id) + ",\"subject\":" + quoted(c.subject) +
           ",\"status\":" + quoted(status_name(c.status)) + ",\"finding\":" + quoted(c.finding) +
           ",\"fix\":" + quoted(c.fix) + "}";
  }
  out += "]}";
  return out;
}

}  // namespace beamlink::doctor
