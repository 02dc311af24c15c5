// Configuration precedence, in every subcommand: a flag on the command line
// wins, then the environment, then the default. One test per option family,
// through --print-config (the effective configuration), and the two
// cases through what beamlink does against a real epmd and erl node.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// Every variable beamlink reads: unset for each run but those a case sets,
// so the machine's own environment cannot decide a case.
const char* const kConfigVars[] = {"NODE_HOST",      "NODE_NAME",       "PEER_NAME",
                                   "ERLANG_COOKIE",  "ERL_EPMD_PORT",   "DIST_PORT_MIN",
                                   "DIST_PORT_MAX",  "NET_TICKTIME",    "LOG_LEVEL",
                                   "LOG_FORMAT",     "NODE_DNS",        "POLL_INTERVAL",
                                   "PUBSUB",         "PG_SCOPE",        "RELAY_LISTEN",
                                   "RELAY_TOKEN",    "RELAY_ATOM_KEYS", "RELAY_ATOM_VALUES",
                                   "METRICS_LISTEN", "RELAY_QUEUE",     "RELAY_QUEUE_BYTES"};

// A HOME with a private ~/.erlang.cookie: the default cookie source.
class Home {
 public:
  Home()
      : dir_(std::filesystem::temp_directory_path() /
             ("beamlink-home-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    { std::ofstream(cookie()) << kCookie << "\n"; }
    ::chmod(cookie().c_str(), 0400);
  }
  ~Home() { std::filesystem::remove_all(dir_); }
  Home(const Home&) = delete;
  Home& operator=(const Home&) = delete;
  std::string path() const { return dir_.string(); }
  std::string cookie() const { return (dir_ / ".erlang.cookie").string(); }

 private:
  std::filesystem::path dir_;
};

// The arguments each subcommand needs besides options.
struct Sub {
  std::string name;
  std::vector<std::string> args;
};
const std::vector<Sub>& subcommands() {
  static const std::vector<Sub> subs = {
      {"run", {}},
      {"watch", {}},
      {"subscribe", {"--pubsub", "My.PubSub", "room:1"}},
      {"broadcast", {"--pubsub", "My.PubSub", "room:1", "ev", "{}"}},
      {"ping", {"x@127.0.0.1"}},
      {"names", {}},
      {"rpc", {"x@127.0.0.1", "erlang", "node"}},
      {"doctor", {}},
  };
  return subs;
}

// `beamlink SUB --print-config FLAGS... ARGS...` with exactly `env` (and
// HOME) of beamlink's variables set; the key=value lines it printed.
std::map<std::string, std::string> effective(const Home& home, const std::string& sub,
                                             const std::vector<std::string>& flags,
                                             std::map<std::string, std::string> env,
                                             const std::vector<std::string>& args = {}) {
  if (!env.count("NODE_HOST")) env["NODE_HOST"] = "127.0.0.1";
  std::vector<std::string> argv = {"env"};
  for (const char* v : kConfigVars)
    if (!env.count(v)) argv.insert(argv.end(), {"-u", v});
  argv.push_back(beamlink_bin());
  argv.push_back(sub);
  argv.push_back("--print-config");
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), args.begin(), args.end());
  env["HOME"] = home.path();
  auto r = run(argv, 10s, env);
  REQUIRE_MESSAGE(r.code == 0, sub << ": " << r.err);
  std::map<std::string, std::string> out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

const std::vector<std::string>& args_of(const std::string& sub) {
  for (auto& s : subcommands())
    if (s.name == sub) return s.args;
  FAIL("no subcommand " << sub);
  static const std::vector<std::string> none;
  return none;
}

// One option: in each of `subs`, flag beats env beats default.
struct Case {
  std::vector<std::string> flag;                // e.g. {"--epmd-port", "14370"}
  std::map<std::string, std::string> env;       // e.g. {{"ERL_EPMD_PORT", "14369"}}
  std::string key;                              // the --print-config key to read
  std::string from_flag, from_env, by_default;  // what it must say in each case
};

void check_precedence(const Home& home, const Case& c, const std::vector<std::string>& subs) {
  for (auto& sub : subs) {
    CAPTURE(sub);
    CAPTURE(c.key);
    const auto& args = args_of(sub);
    CHECK(effective(home, sub, c.flag, c.env, args)[c.key] == c.from_flag);
    CHECK(effective(home, sub, {}, c.env, args)[c.key] == c.from_env);
    CHECK(effective(home, sub, {}, {}, args)[c.key] == c.by_default);
  }
}

std::vector<std::string> all_subcommands() {
  std::vector<std::string> out;
  for (auto& s : subcommands()) out.push_back(s.name);
  return out;
}

}  // namespace

TEST_CASE("config precedence: identity - --name over NODE_NAME and --host over NODE_HOST") {
  Home home;
  for (auto& sub : all_subcommands()) {
    CAPTURE(sub);
    const auto& args = args_of(sub);
    auto e = effective(home, sub, {"--name", "flagname@127.0.0.1"},
                       {{"NODE_NAME", "envname@127.0.0.1"}}, args);
    CHECK(e["node"] == "flagname@127.0.0.1");
    e = effective(home, sub, {}, {{"NODE_NAME", "envname@127.0.0.1"}}, args);
    CHECK(e["node"] == "envname@127.0.0.1");
    e = effective(home, sub, {}, {}, args);
    if (sub == "run")
      CHECK(e["node"] == "beamlink@127.0.0.1");
    else
      CHECK(e["node"].rfind("beamlink_", 0) == 0);

    e = effective(home, sub, {"--host", "10.9.9.2"}, {{"NODE_HOST", "10.9.9.1"}}, args);
    CHECK(e["node"].substr(e["node"].find('@')) == "@10.9.9.2");
    e = effective(home, sub, {}, {{"NODE_HOST", "10.9.9.1"}}, args);
    CHECK(e["node"].substr(e["node"].find('@')) == "@10.9.9.1");
  }
  check_precedence(home,
                   {{"--peer-name", "flagpeer"},
                    {{"PEER_NAME", "envpeer"}},
                    "--peer-name",
                    "flagpeer",
                    "envpeer",
                    "ewallet"},
                   all_subcommands());
}

TEST_CASE("config precedence: epmd - --epmd-port over ERL_EPMD_PORT") {
  Home home;
  check_precedence(home,
                   {{"--epmd-port", "14370"},
                    {{"ERL_EPMD_PORT", "14369"}},
                    "epmd",
                    "127.0.0.1:14370",
                    "127.0.0.1:14369",
                    "127.0.0.1:4369"},
                   all_subcommands());
}

TEST_CASE("config precedence: cookie - --cookie-file over ERLANG_COOKIE over ~/.erlang.cookie") {
  Home home;
  auto file = home.path() + "/flag.cookie";
  { std::ofstream(file) << "from-the-flag\n"; }
  ::chmod(file.c_str(), 0400);
  check_precedence(home,
                   {{"--cookie-file", file},
                    {{"ERLANG_COOKIE", "from-env"}},
                    "cookie",
                    file + " (the cookie is never printed)",
                    "ERLANG_COOKIE (the cookie is never printed)",
                    home.cookie() + " (the cookie is never printed)"},
                   all_subcommands());
  // The cookie itself is never printed.
  auto r = run({beamlink_bin(), "ping", "--print-config", "x@127.0.0.1"}, 10s,
               {{"ERLANG_COOKIE", "s3cret-value"}, {"HOME", home.path()}});
  CHECK(r.code == 0);
  CHECK(r.out.find("s3cret-value") == std::string::npos);
}

TEST_CASE("config precedence: distribution ports and ticktime") {
  Home home;
  check_precedence(home,
                   {{"--dist-ports", "7100-7101"},
                    {{"DIST_PORT_MIN", "7000"}, {"DIST_PORT_MAX", "7001"}},
                    "dist-port-range",
                    "7100-7101",
                    "7000-7001",
                    "6900-6909"},
                   all_subcommands());
  check_precedence(
      home, {{"--ticktime", "20"}, {{"NET_TICKTIME", "30"}}, "net-ticktime", "20", "30", "60"},
      all_subcommands());
}

TEST_CASE(
    "config precedence: logging - --log-level over LOG_LEVEL and --log-format over "
    "LOG_FORMAT") {
  Home home;
  check_precedence(
      home,
      {{"--log-level", "debug"}, {{"LOG_LEVEL", "error"}}, "--log-level", "debug", "error", ""},
      all_subcommands());
  check_precedence(
      home,
      {{"--log-format", "text"}, {{"LOG_FORMAT", "json"}}, "--log-format", "text", "json", "text"},
      all_subcommands());
}

TEST_CASE(
    "config precedence: discovery - --dns over NODE_DNS and --poll-interval over "
    "POLL_INTERVAL") {
  Home home;
  const std::vector<std::string> subs = {"run", "watch", "subscribe", "broadcast", "doctor"};
  check_precedence(home,
                   {{"--dns", "flag.example"},
                    {{"NODE_DNS", "env.example"}},
                    "--dns",
                    "flag.example",
                    "env.example",
                    ""},
                   subs);
  check_precedence(
      home, {{"--poll-interval", "7"}, {{"POLL_INTERVAL", "9"}}, "--poll-interval", "7", "9", "5"},
      subs);
}

TEST_CASE("config precedence: pubsub - --pubsub over PUBSUB and --pg-scope over PG_SCOPE") {
  Home home;
  // subscribe and broadcast require a pubsub: their cases give it by flag
  // or environment themselves.
  check_precedence(home,
                   {{"--pubsub", "Flag.PubSub"},
                    {{"PUBSUB", "Env.PubSub"}},
                    "--pubsub",
                    "Flag.PubSub",
                    "Env.PubSub",
                    ""},
                   {"run", "doctor"});
  for (const std::string sub : {"subscribe", "broadcast"}) {
    CAPTURE(sub);
    std::vector<std::string> rest(args_of(sub).begin() + 2, args_of(sub).end());
    auto flagged = rest;
    flagged.insert(flagged.begin(), {"--pubsub", "Flag.PubSub"});
    CHECK(effective(home, sub, {}, {{"PUBSUB", "Env.PubSub"}}, flagged)["--pubsub"] ==
          "Flag.PubSub");
    CHECK(effective(home, sub, {}, {{"PUBSUB", "Env.PubSub"}}, rest)["--pubsub"] == "Env.PubSub");
  }
  check_precedence(home,
                   {{"--pg-scope", "flag_scope"},
                    {{"PG_SCOPE", "env_scope"}},
                    "--pg-scope",
                    "flag_scope",
                    "env_scope",
                    "Elixir.Phoenix.PubSub"},
                   {"run", "subscribe", "broadcast", "doctor"});
}

TEST_CASE(
    "config precedence: relay options - flags over RELAY_LISTEN and RELAY_ATOM_KEYS and "
    "RELAY_ATOM_VALUES and METRICS_LISTEN") {
  Home home;
  const std::vector<std::string> run_only = {"run"};
  check_precedence(home,
                   {{"--relay-listen", "127.0.0.1:7072"},
                    {{"RELAY_LISTEN", "127.0.0.1:7071"}},
                    "--relay-listen",
                    "127.0.0.1:7072",
                    "127.0.0.1:7071",
                    "127.0.0.1:7070"},
                   run_only);
  check_precedence(home,
                   {{"--relay-atom-values", "kind"},
                    {{"RELAY_ATOM_VALUES", "status"}},
                    "--relay-atom-values",
                    "kind",
                    "status",
                    ""},
                   run_only);
  check_precedence(home,
                   {{"--relay-atom-keys=false"},
                    {{"RELAY_ATOM_KEYS", "true"}},
                    "--relay-atom-keys",
                    "false",
                    "true",
                    ""},
                   run_only);
  check_precedence(home,
                   {{"--metrics-listen", "127.0.0.1:9102"},
                    {{"METRICS_LISTEN", "127.0.0.1:9101"}},
                    "--metrics-listen",
                    "127.0.0.1:9102",
                    "127.0.0.1:9101",
                    "off"},
                   run_only);
  // The token is never printed, only whether there is one.
  auto e = effective(home, "run", {}, {{"RELAY_TOKEN", "tok-from-env"}});
  CHECK(e["--relay-token"] == "(set, never printed)");
  e = effective(home, "run", {}, {});
  CHECK(e["--relay-token"] == "(not set)");
}

TEST_CASE(
    "config precedence: delivery queue bounds - --relay-queue over RELAY_QUEUE and "
    "--relay-queue-bytes over RELAY_QUEUE_BYTES") {
  Home home;
  const std::vector<std::string> run_only = {"run"};
  check_precedence(
      home,
      {{"--relay-queue", "300"}, {{"RELAY_QUEUE", "200"}}, "--relay-queue", "300", "200", "10000"},
      run_only);
  check_precedence(home,
                   {{"--relay-queue-bytes", "65536"},
                    {{"RELAY_QUEUE_BYTES", "131072"}},
                    "--relay-queue-bytes",
                    "65536",
                    "131072",
                    "67108864"},
                   run_only);
  // 0 would refuse every broadcast: a configuration error, not a relay.
  auto r = run({"env", "NODE_HOST=127.0.0.1", beamlink_bin(), "run", "--print-config",
                "--relay-queue-bytes", "0"},
               10s);
  CHECK(r.code == 2);
  CHECK(r.err.find("--relay-queue-bytes") != std::string::npos);
  // Documented in `run --help`.
  auto help = run({beamlink_bin(), "run", "--help"}, 10s);
  CHECK(help.code == 0);
  CHECK(help.out.find("--relay-queue-bytes") != std::string::npos);
  CHECK(help.out.find("RELAY_QUEUE_BYTES") != std::string::npos);
}

TEST_CASE("config precedence: --relay-token wins over RELAY_TOKEN at the relay") {
  Epmd epmd;
  int port = free_port();
  Subprocess::Options o;
  o.env = {{"ERL_EPMD_PORT", std::to_string(epmd.port())},
           {"ERLANG_COOKIE", kCookie},
           {"NODE_HOST", "127.0.0.1"},
           {"RELAY_TOKEN", "env-token"}};
  int dist = free_port();
  Subprocess bl({beamlink_bin(), "run", "--relay-listen", "127.0.0.1:" + std::to_string(port),
                 "--relay-token", "flag-token", "--dist-ports",
                 std::to_string(dist) + "-" + std::to_string(dist)},
                o);
  REQUIRE_MESSAGE(bl.wait_err("relay listening", 60s), bl.err());
  auto status = [&](const std::string& token) {
    auto r = run(
        {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         "Authorization: Bearer " + token, "http://127.0.0.1:" + std::to_string(port) + "/healthz"},
        10s);
    return r.out;
  };
  CHECK(status("env-token") == "401");
  CHECK(status("flag-token") != "401");
}

TEST_CASE("config precedence: names --epmd-port asks that port whatever ERL_EPMD_PORT says") {
  Epmd epmd;
  RefusedPort closed;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "names", "--epmd-port", std::to_string(epmd.port())}, 60s,
               {{"ERL_EPMD_PORT", std::to_string(closed.port())}, {"ERLANG_COOKIE", kCookie}});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out.find("name t1 at port") != std::string::npos);
}

TEST_CASE("config precedence: rpc --name connects under that name whatever NODE_NAME says") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "rpc", "--name", "flagname@127.0.0.1", "t1@127.0.0.1", "erlang",
                "nodes", "[hidden]"},
               60s,
               {{"ERL_EPMD_PORT", std::to_string(epmd.port())},
                {"ERLANG_COOKIE", kCookie},
                {"NODE_HOST", "127.0.0.1"},
                {"NODE_NAME", "envname@127.0.0.1"}});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "['flagname@127.0.0.1']\n");
}
