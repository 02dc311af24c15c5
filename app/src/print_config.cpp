// --print-config: what a subcommand will run with. Each option shows what
// CLI11 resolved (its flag, else its environment variable, else its
// default); then the node's name, cookie source and ports as
// make_node_config resolves them. Secrets are never printed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config.hpp"
#include "dist/identity.hpp"

namespace beamlink::app {

std::string cookie_source(const Config& cfg) {
  if (!cfg.cookie_file.empty()) return cfg.cookie_file;
  const char* env = std::getenv("ERLANG_COOKIE");
  if (env && *env) return "ERLANG_COOKIE";
  return dist::default_cookie_file();
}

int print_config(const CLI::App& cmd, const Config& cfg, bool publish) {
  auto nc = make_node_config(cfg, publish);
  if (!nc) {
    std::fprintf(stderr, "beamlink: %s\n", nc.error().message.c_str());
    return 2;
  }
  std::string out;
  for (const CLI::Option* opt : cmd.get_options()) {
    const std::string name = opt->get_name();  // --long, or the positional's name
    if (name.empty() || name == "--help" || name == "--print-config") continue;
    std::string value;
    if (opt->count() > 0) {
      for (auto& r : opt->results()) {
        if (!value.empty()) value += ',';
        value += r;
      }
    } else {
      value = opt->get_default_str();
    }
    if (name.find("token") != std::string::npos && name.find("file") == std::string::npos)
      value = value.empty() ? "(not set)" : "(set, never printed)";
    out += name + "=" + value + "\n";
  }
  out += "node=" + nc->name + "\n";
  out += "cookie=" + cookie_source(cfg) + " (the cookie is never printed)\n";
  out += "epmd=" + nc->epmd_host + ":" + std::to_string(nc->epmd_port) + "\n";
  out +=
      "dist-port-range=" + std::to_string(nc->port_min) + "-" + std::to_string(nc->port_max) + "\n";
  out += "net-ticktime=" +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(nc->ticktime).count()) +
         "\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace beamlink::app
