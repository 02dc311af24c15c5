// Helpers for tests that use the real thing: child processes tracked by PID
// (and ended by PID when their owner goes), waiting on a condition with a
// deadline instead of sleeping, free ports, a real epmd and real erl nodes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace beamlink::test {

using namespace std::chrono_literals;

// The cookie every test node and beamlink command shares unless a test says
// otherwise.
inline const std::string kCookie = "beamlink-test-cookie";

// Polls `cond` until it returns true or `timeout` passes. Returns whether it
// became true. The poll interval is short (5 ms); this is a deadline-bounded
// wait on a condition, not a sleep standing in for synchronisation.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s);

// A TCP port on 127.0.0.1 that was free when asked (bound to port 0, read back,
// closed). `count` consecutive free ports when count > 1.
int free_port(int count = 1);

// A loopback port with nothing listening that no one else can take while
// this holds it (bound, not listening: a connect is refused). An ended
// process's port could be reused by a test running alongside.
class RefusedPort {
 public:
  RefusedPort();
  ~RefusedPort();
  RefusedPort(const RefusedPort&) = delete;
  RefusedPort& operator=(const RefusedPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// A child process. The destructor sends SIGTERM then, after a grace period,
// SIGKILL, and reaps it: every process a test starts is ended by PID.
class Subprocess {
 public:
  struct Options {
    std::map<std::string, std::string> env;  // added to (or replacing in) the environment
    bool capture_stdout = true;
    bool capture_stderr = true;
    bool pipe_stdin = false;
  };
  Subprocess(std::vector<std::string> argv, Options opts);
  explicit Subprocess(std::vector<std::string> argv) : Subprocess(std::move(argv), Options{}) {}
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  int pid() const { return pid_; }
  bool running();  // not exited (zombie counts as exited)
  // Waits for exit; returns the exit code (128+signal when killed), or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = 10s);
  void signal(int sig);
  void stop();  // SIGTERM, wait, SIGKILL if needed
  void write_stdin(const std::string& s);
  void close_stdin();

  // Everything read so far (drained without blocking on each call).
  std::string out();
  std::string err();
  // Waits until stdout (or stderr) contains `needle`.
  bool wait_out(const std::string& needle, std::chrono::milliseconds timeout = 10s);
  bool wait_err(const std::string& needle, std::chrono::milliseconds timeout = 10s);

 private:
  void drain();
  int pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1, in_fd_ = -1;
  std::string out_, err_;
  std::optional<int> status_;
};

// Runs a command to completion with a timeout and returns {exit code, stdout, stderr}.
struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};
RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout = 30s,
              std::map<std::string, std::string> env = {});

// A real epmd on its own port, in the foreground, ended by PID.
class Epmd {
 public:
  Epmd();  // picks a free port
  explicit Epmd(int port);
  int port() const { return port_; }
  void kill();     // SIGKILL and reap
  void restart();  // start again on the same port
  bool up();       // answers NAMES
 private:
  void start();
  int port_;
  std::unique_ptr<Subprocess> proc_;
};

// A real erl node driven over its stdin: each eval() sends one Erlang
// expression and returns what it evaluated to, printed with ~0p on one line.
// The driver module lives in tests/fixtures/erl_driver.erl.
class ErlNode {
 public:
  struct Options {
    std::string name;  // full name, e.g. "t1@127.0.0.1"
    std::string cookie = "beamlink-test-cookie";
    int epmd_port = 4369;
    int ticktime = 60;
    std::vector<std::string> extra_args;
    // The erl to run: Debian's OTP 25 by default, otp22_erl() for an OTP 22
    // peer (the fixtures are then compiled by that release's erlc).
    std::string erl = "erl";
  };
  // Starts the node; waits until it is up unless wait_ready is false (then
  // call wait_ready() before eval: starting many nodes in parallel).
  explicit ErlNode(Options opts, bool wait_ready = true);
  ~ErlNode();
  void wait_ready();
  const std::string& name() const { return opts_.name; }
  int pid() const { return proc_->pid(); }
  Subprocess& process() { return *proc_; }
  // Evaluates `expr` (without the final dot) on the node; returns the ~0p text
  // of the result, or "{driver_error,...}" text when evaluation raised.
  std::string eval(const std::string& expr, std::chrono::milliseconds timeout = 15s);

 private:
  Options opts_;
  std::unique_ptr<Subprocess> proc_;
  int seq_ = 0;
};

// The options of a node `name` (e.g. "t1@127.0.0.1") registered with the
// epmd on `epmd_port`, with `ticktime` as net_ticktime and the tests' cookie
// unless `cookie` is given. otp22_options: the same node on the OTP 22.3
// runtime (otp22_erl()).
ErlNode::Options erl_options(const std::string& name, int epmd_port, int ticktime = 60,
                             const std::string& cookie = kCookie);
ErlNode::Options otp22_options(const std::string& name, int epmd_port, int ticktime = 60,
                               const std::string& cookie = kCookie);

// The built `beamlink` binary.
std::string beamlink_bin();

// The environment of a `beamlink` command against the test's epmd on
// `epmd_port`: ERL_EPMD_PORT, ERLANG_COOKIE, NODE_HOST=127.0.0.1 and
// RELAY_LISTEN=off (a test that runs the relay passes --relay-listen, which
// takes precedence over the variable).
std::map<std::string, std::string> beamlink_env(int epmd_port, const std::string& cookie = kCookie);

// An HTTP exchange made by curl: the status (0 when curl got no answer), the
// body, and the response headers as curl prints them.
struct HttpReply {
  int status = 0;
  std::string body;
  std::string headers;
};
// `curl -X METHOD URL`, with `body` sent as application/json when not empty
// and `extra` arguments appended; runs `prefix` first when given (e.g.
// {"ip", "netns", "exec", NS} to make the request inside a namespace).
HttpReply http(const std::string& method, const std::string& url, const std::string& body = "",
               std::vector<std::string> extra = {}, std::vector<std::string> prefix = {});

// `beamlink run ARGS...` with its relay on a free loopback port and a
// distribution port of its own, in beamlink_env(epmd_port) plus `env`.
struct RelayProcess {
  RelayProcess(int epmd_port, const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env = {});
  // http://127.0.0.1:PORT + path.
  std::string url(const std::string& path) const;
  int port = free_port();
  std::unique_ptr<Subprocess> proc;
};

// A POST /v1/broadcast body: {"topic":TOPIC,"event":EVENT,"payload":{"n":N}}.
std::string broadcast_body(const std::string& topic, const std::string& event, int n);

// `v` as `n` big-endian bytes (the byte order of every length and flag field
// on the wire).
std::string be(std::uint64_t v, int n);

// Whether `s` contains `needle`; how many times it does (overlaps counted).
bool contains(const std::string& s, const std::string& needle);
int occurrences(const std::string& s, const std::string& needle);

// Paths inside the source and build trees.
std::string source_path(const std::string& rel);
std::string binary_path(const std::string& rel);
// The compiled fixtures directory (erlc output), compiled on first use.
std::string fixtures_ebin();
// The OTP 22.3 runtime beside the project (../shared/otp22: version 5
// handshake, old link protocol, pg2), and the fixtures written for it
// (erl_driver, pubsub_v1_pg2, peerage_loop) compiled by its erlc.
std::string otp22_erl();
std::string otp22_fixtures_ebin();
// Whether that runtime is there (tests that need it report themselves skipped).
bool have_otp22();

}  // namespace beamlink::test

// A test that needs the OTP 22.3 runtime reports itself skipped without it
// (ctest's SKIP_REGULAR_EXPRESSION matches the message).
#define NEED_OTP22()                                      \
  if (!::beamlink::test::have_otp22()) {                  \
    MESSAGE("skipped: needs ../shared/otp22 (OTP 22.3)"); \
    return;                                               \
  }

namespace beamlink::test {}  // namespace beamlink::test
