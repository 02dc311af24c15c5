// `beamlink doctor`: wiring only; the checks live in the doctor library.
#include "doctor/doctor.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "commands.hpp"
#include "dist/identity.hpp"

namespace beamlink::app {

int cmd_doctor(const Config& cfg, const DoctorOptions& opts) {
  doctor::Options o;
  o.dns = cfg.dns;
  o.srv = cfg.dns_srv;
  o.peers = opts.peers;
  o.peer_name = cfg.peer_name;
  o.own_addresses = own_ipv4_addresses();
  o.resolver.servers = cfg.dns_servers;
  o.resolver.timeout = std::chrono::milliseconds(opts.timeout_ms);
  o.resolver.tries = 1;
  o.timeout = std::chrono::milliseconds(opts.timeout_ms);
  o.pubsub = opts.pubsub;
  o.pg_scope = opts.pg_scope;
  doctor::Report failed;
  failed.doctor_failed = true;
  auto print = [&](const doctor::Report& r) {
    if (opts.json)
      std::printf("%s\n", doctor::to_json(r).c_str());
    else
      std::fputs(doctor::to_text(r, ::isatty(1) != 0).c_str(), stdout);
  };
  std::string cookie_warning;
  auto nc = make_node_config(cfg, false, &cookie_warning);
  if (!nc) {
    failed.doctor_error = nc.error().message;
    print(failed);
    return 2;
  }
  o.cookie = nc->cookie;
  o.cookie_warning = cookie_warning;
  o.cookie_source = cookie_source(cfg);
  // A name of its own for the rpcs when the name is made up here (a pod
  // that still holds the probe's connection may refuse a second one under
  // the same name); a configured name is used for both (net_kernel:allow).
  const std::string host = nc->name.substr(nc->name.find('@') + 1);
  const std::string made = "beamlink_doctor_" + std::to_string(::getpid());
  o.our_name = cfg.node_name.empty() ? made + "@" + host : nc->name;
  if (cfg.node_name.empty()) o.rpc_name = made + "_rpc@" + host;
  o.epmd_port = nc->epmd_port;
  o.port_min = nc->port_min;
  o.port_max = nc->port_max;

  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 2;
  {
    doctor::Doctor d(&loop, o);
    d.run([&](doctor::Report r) {
      print(r);
      code = r.exit_code();
    });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  drain_and_close(&loop);
  return code;
}

}  // namespace beamlink::app
