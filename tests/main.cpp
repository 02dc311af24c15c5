#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

// BEAMLINK_TEST_LOG=debug (or trace, info, ...) sets the library's log level
// while a test runs; the default shows warnings and errors only.
int main(int argc, char** argv) {
  const char* level = std::getenv("BEAMLINK_TEST_LOG");
  spdlog::set_level(spdlog::level::from_str(level ? level : "info"));
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
