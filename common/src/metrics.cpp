#include "common/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace beamlink {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

MetricsWriter& MetricsWriter::family(std::string_view name, Type type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  // HELP text escapes backslash and line feed.
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += type == Type::counter ? " counter\n" : " gauge\n";
  return *this;
}

void MetricsWriter::labels(const Labels& labels) {
  if (labels.empty()) return;
  out_ += '{';
  bool first = true;
  for (auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    out_ += escape_label_value(v);
    out_ += '"';
  }
  out_ += '}';
}

MetricsWriter& MetricsWriter::sample(std::string_view name, std::uint64_t value, const Labels& l) {
  out_ += name;
  labels(l);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
  return *this;
}

MetricsWriter& MetricsWriter::sample(std::string_view name, double value, const Labels& l) {
  out_ += name;
  labels(l);
  out_ += ' ';
  if (std::isnan(value)) {
    out_ += "NaN";
  } else if (std::isinf(value)) {
    out_ += value > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    out_ += buf;
  }
  out_ += '\n';
  return *this;
}

MetricsWriter& MetricsWriter::counter(std::string_view name, std::string_view help,
                                      std::uint64_t value) {
  return family(name, Type::counter, help).sample(name, value);
}

MetricsWriter& MetricsWriter::gauge(std::string_view name, std::string_view help, double value) {
  return family(name, Type::gauge, help).sample(name, value);
}

}  // namespace beamlink
