// What `beamlink doctor` found: one line per check, with a stable id for
// scripts, the finding and the fix. No I/O: rendering to text (with colour
// only when asked) and JSON is a pure function of the report.
#pragma once

#include <string>
#include <vector>

namespace beamlink::doctor {

enum class Status { pass, warn, fail, skip };

struct Check {
  std::string id;       // stable: "dns.resolve", "epmd.reachable", "handshake.cookie", ...
  std::string subject;  // what it is about: the cluster, NODE_DNS, or a peer "ewallet@10.0.0.5"
  Status status = Status::pass;
  std::string finding;  // what was seen
  std::string fix;      // what to do; empty when nothing is to be done
};

struct Report {
  std::vector<Check> checks;
  bool doctor_failed = false;  // the doctor itself could not run (bad configuration)
  std::string doctor_error;

  void add(Check c) { checks.push_back(std::move(c)); }
  // 0 every check passed (or was skipped), 1 problems found, 2 the doctor could not run.
  int exit_code() const;
  std::size_t count(Status s) const;
};

std::string to_text(const Report& r, bool color);
std::string to_json(const Report& r);
const char* status_name(Status s);

}  // namespace beamlink::doctor
