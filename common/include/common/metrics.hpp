// The Prometheus text exposition format (version 0.0.4), written by hand:
// families with HELP and TYPE, samples with escaped label values.
//   # HELP beamlink_peers Connected BEAM nodes.
//   # TYPE beamlink_peers gauge
//   beamlink_peers 3
// https://prometheus.io/docs/instrumenting/exposition_formats/
//
// Each subsystem writes its own families (dist::Node::write_metrics, the
// relay's Delivery, ClusterHub, HttpServer, ChannelSocketServer, ...); the
// owner of a /metrics route calls each in turn.
//
// Thread: none; a MetricsWriter is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beamlink {

class MetricsWriter {
 public:
  using Labels = std::vector<std::pair<std::string_view, std::string_view>>;
  enum class Type { counter, gauge };

  // Starts a family; its samples follow. A name is written once per scrape.
  MetricsWriter& family(std::string_view name, Type type, std::string_view help);
  MetricsWriter& sample(std::string_view name, std::uint64_t value, const Labels& labels = {});
  MetricsWriter& sample(std::string_view name, double value, const Labels& labels = {});
  // A one-sample family.
  MetricsWriter& counter(std::string_view name, std::string_view help, std::uint64_t value);
  MetricsWriter& gauge(std::string_view name, std::string_view help, double value);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  void labels(const Labels& labels);
  std::string out_;
};

// A label value as the format wants it: backslash, double quote and line feed
// escaped.
std::string escape_label_value(std::string_view v);

}  // namespace beamlink
