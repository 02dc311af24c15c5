// The Prometheus text writer: HELP and TYPE lines, samples with escaped
// labels, integer and float values.
#include "common/metrics.hpp"

#include <doctest/doctest.h>

#include <limits>

using namespace beamlink;

TEST_CASE("metrics writer: families and samples in the text format") {
  MetricsWriter m;
  m.gauge("beamlink_peers", "Connected BEAM nodes.", 3);
  m.family("beamlink_peer_up", MetricsWriter::Type::gauge, "1 for each\nnode \\ here.");
  m.sample("beamlink_peer_up", std::uint64_t{1}, {{"node", "a\"b\\c\nd"}, {"x", "y"}});
  m.counter("beamlink_connects_total", "Outbound connections established.", 7);
  m.sample("beamlink_nan", std::numeric_limits<double>::quiet_NaN());
  m.sample("beamlink_inf", -std::numeric_limits<double>::infinity());
  m.sample("beamlink_half", 0.5);
  CHECK(m.text() ==
        "# HELP beamlink_peers Connected BEAM nodes.\n"
        "# TYPE beamlink_peers gauge\n"
        "beamlink_peers 3\n"
        "# HELP beamlink_peer_up 1 for each\\nnode \\\\ here.\n"
        "# TYPE beamlink_peer_up gauge\n"
        "beamlink_peer_up{node=\"a\\\"b\\\\c\\nd\",x=\"y\"} 1\n"
        "# HELP beamlink_connects_total Outbound connections established.\n"
        "# TYPE beamlink_connects_total counter\n"
        "beamlink_connects_total 7\n"
        "beamlink_nan NaN\n"
        "beamlink_inf -Inf\n"
        "beamlink_half 0.5\n");
  CHECK(escape_label_value("plain") == "plain");
}
