#include "support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace beamlink::test {
namespace {

void set_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void read_all(int fd, std::string& into) {
  if (fd < 0) return;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    return;
  }
}

int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

}  // namespace

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);  // poll interval of a deadline-bounded wait
  }
}

RefusedPort::RefusedPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("RefusedPort: cannot bind a loopback port");
  socklen_t len = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
}

RefusedPort::~RefusedPort() {
  if (fd_ >= 0) ::close(fd_);
}

int free_port(int count) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      continue;
    }
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    int base = ntohs(a.sin_port);
    ::close(fd);
    if (count == 1) return base;
    if (base + count > 65535) continue;
    bool all_free = true;
    for (int i = 1; i < count && all_free; ++i) {
      int f = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in b = a;
      b.sin_port = htons(static_cast<uint16_t>(base + i));
      if (::bind(f, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) all_free = false;
      ::close(f);
    }
    if (all_free) return base;
  }
  throw std::runtime_error("no free port found");
}

Subprocess::Subprocess(std::vector<std::string> argv, Options opts) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1};
  if (opts.capture_stdout && pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  if (opts.capture_stderr && pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  if (opts.pipe_stdin && pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe");

  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && opts.env.count(kv.substr(0, eq))) continue;
    envs.push_back(kv);
  }
  for (auto& [k, v] : opts.env) envs.push_back(k + "=" + v);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);  // its own group, so a terminal's SIGINT does not reach it
    int devnull = ::open("/dev/null", O_RDWR);
    dup2(opts.pipe_stdin ? in[0] : devnull, 0);
    dup2(opts.capture_stdout ? out[1] : devnull, 1);
    dup2(opts.capture_stderr ? err[1] : devnull, 2);
    execvpe(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  if (opts.capture_stdout) {
    ::close(out[1]);
    out_fd_ = out[0];
    set_nonblock(out_fd_);
  }
  if (opts.capture_stderr) {
    ::close(err[1]);
    err_fd_ = err[0];
    set_nonblock(err_fd_);
  }
  if (opts.pipe_stdin) {
    ::close(in[0]);
    in_fd_ = in[1];
  }
}

Subprocess::~Subprocess() {
  stop();
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
  if (in_fd_ >= 0) ::close(in_fd_);
}

bool Subprocess::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(st);
    return false;
  }
  return r == 0;
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds timeout) {
  if (wait_until([&] { return !running(); }, timeout)) return status_;
  return std::nullopt;
}

void Subprocess::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

void Subprocess::stop() {
  if (pid_ <= 0 || !running()) return;
  ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGTERM);
  if (!wait(3s)) {
    ::kill(pid_, SIGKILL);
    wait(5s);
  }
}

void Subprocess::write_stdin(const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(in_fd_, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("write to child stdin failed");
    }
    off += static_cast<std::size_t>(n);
  }
}

void Subprocess::close_stdin() {
  if (in_fd_ >= 0) ::close(in_fd_);
  in_fd_ = -1;
}

void Subprocess::drain() {
  read_all(out_fd_, out_);
  read_all(err_fd_, err_);
}

std::string Subprocess::out() {
  drain();
  return out_;
}

std::string Subprocess::err() {
  drain();
  return err_;
}

bool Subprocess::wait_out(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_until([&] { return out().find(needle) != std::string::npos; }, timeout);
}

bool Subprocess::wait_err(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_until([&] { return err().find(needle) != std::string::npos; }, timeout);
}

RunResult run(std::vector<std::string> argv, std::chrono::milliseconds timeout,
              std::map<std::string, std::string> env) {
  Subprocess::Options o;
  o.env = std::move(env);
  Subprocess p(std::move(argv), o);
  RunResult r;
  auto code = p.wait(timeout);
  r.out = p.out();
  r.err = p.err();
  if (!code) {
    p.stop();
    r.code = -1;
    r.err += "\n[test support: command timed out]";
  } else {
    r.code = *code;
  }
  return r;
}

// ---------------------------------------------------------------- Epmd

Epmd::Epmd() : Epmd(free_port()) {}

Epmd::Epmd(int port) : port_(port) {
  start();
}

void Epmd::start() {
  proc_ = std::make_unique<Subprocess>(
      std::vector<std::string>{"epmd", "-port", std::to_string(port_), "-address", "127.0.0.1"});
  if (!wait_until([&] { return up(); }, 10s))
    throw std::runtime_error("epmd did not start on port " + std::to_string(port_) + ": " +
                             proc_->err());
}

bool Epmd::up() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port_));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (ok) {
    const unsigned char names_req[] = {0, 1, 110};  // NAMES_REQ
    ok = ::write(fd, names_req, 3) == 3;
    unsigned char resp[4];
    ok = ok && ::read(fd, resp, 4) == 4;
  }
  ::close(fd);
  return ok;
}

void Epmd::kill() {
  if (proc_) {
    proc_->signal(SIGKILL);
    proc_->wait(5s);
    proc_.reset();
  }
}

void Epmd::restart() {
  kill();
  start();
}

// ---------------------------------------------------------------- ErlNode

std::string source_path(const std::string& rel) {
  return std::string(BEAMLINK_SOURCE_DIR) + "/" + rel;
}
std::string binary_path(const std::string& rel) {
  return std::string(BEAMLINK_BINARY_DIR) + "/" + rel;
}

namespace {
std::string compile_fixtures(const std::string& subdir, const std::string& erlc,
                             const std::vector<std::string>& only);
}  // namespace

std::string fixtures_ebin() {
  return compile_fixtures("tests/fixtures_ebin", "erlc", {});
}

std::string otp22_erl() {
  return source_path("../shared/otp22/bin/erl");
}

std::string otp22_fixtures_ebin() {
  return compile_fixtures("tests/fixtures_ebin_otp22", source_path("../shared/otp22/bin/erlc"),
                          {"erl_driver", "pubsub_v1_pg2", "peerage_loop"});
}

bool have_otp22() {
  return ::access(otp22_erl().c_str(), X_OK) == 0;
}

namespace {
std::string compile_fixtures(const std::string& subdir, const std::string& erlc,
                             const std::vector<std::string>& only) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::string dir = binary_path(subdir);
  std::filesystem::create_directories(dir);
  // ctest runs test processes in parallel: one compiles at a time (erlc
  // writes NAME.bea# then renames it; two at once race on the rename).
  int lock_fd = ::open((dir + "/.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX) != 0)
    throw std::runtime_error("cannot lock " + dir + "/.lock");
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }  // closing releases the flock
  } unlock{lock_fd};
  for (auto& entry : std::filesystem::directory_iterator(source_path("tests/fixtures"))) {
    if (entry.path().extension() != ".erl") continue;
    if (!only.empty() &&
        std::find(only.begin(), only.end(), entry.path().stem().string()) == only.end())
      continue;
    auto beam = std::filesystem::path(dir) / (entry.path().stem().string() + ".beam");
    if (std::filesystem::exists(beam) &&
        std::filesystem::last_write_time(beam) >= entry.last_write_time())
      continue;
    auto r = run({erlc, "-o", dir, entry.path().string()}, 60s);
    if (r.code != 0) throw std::runtime_error("erlc failed: " + r.out + r.err);
  }
  return dir;
}
}  // namespace

ErlNode::ErlNode(Options opts, bool wait) : opts_(std::move(opts)) {
  // -noshell without -noinput: the driver reads its requests from stdin.
  bool otp22 = opts_.erl != "erl";
  std::vector<std::string> argv = {opts_.erl,
                                   "-noshell",
                                   "-name",
                                   opts_.name,
                                   "-setcookie",
                                   opts_.cookie,
                                   "-pa",
                                   otp22 ? otp22_fixtures_ebin() : fixtures_ebin(),
                                   "-kernel",
                                   "net_ticktime",
                                   std::to_string(opts_.ticktime)};
  for (auto& a : opts_.extra_args) argv.push_back(a);
  argv.insert(argv.end(), {"-s", "erl_driver", "start"});
  Subprocess::Options o;
  o.pipe_stdin = true;
  o.env["ERL_EPMD_PORT"] = std::to_string(opts_.epmd_port);
  o.env["HOME"] = binary_path("tests");  // no ~/.erlang.cookie of the user's involved
  proc_ = std::make_unique<Subprocess>(argv, o);
  if (wait) wait_ready();
}

void ErlNode::wait_ready() {
  if (!proc_->wait_out("@@ready", 30s))
    throw std::runtime_error("erl node " + opts_.name + " did not start: " + proc_->out() +
                             proc_->err());
}

ErlNode::~ErlNode() {
  if (proc_ && proc_->running()) {
    proc_->close_stdin();  // the driver halts on eof
    if (!proc_->wait(5s)) proc_->stop();
  }
}

std::string ErlNode::eval(const std::string& expr, std::chrono::milliseconds timeout) {
  std::string seq = std::to_string(++seq_);
  std::string marker = "@@" + seq + " ";
  proc_->write_stdin(seq + " " + expr + "\n");
  std::string result;
  bool got = wait_until(
      [&] {
        auto out = proc_->out();
        auto at = out.find(marker);
        if (at == std::string::npos) return false;
        auto end = out.find('\n', at);
        if (end == std::string::npos) return false;
        result = out.substr(at + marker.size(), end - at - marker.size());
        return true;
      },
      timeout);
  if (!got) return "{driver_timeout}";
  return result;
}

ErlNode::Options erl_options(const std::string& name, int epmd_port, int ticktime,
                             const std::string& cookie) {
  ErlNode::Options o;
  o.name = name;
  o.epmd_port = epmd_port;
  o.ticktime = ticktime;
  o.cookie = cookie;
  return o;
}

ErlNode::Options otp22_options(const std::string& name, int epmd_port, int ticktime,
                               const std::string& cookie) {
  auto o = erl_options(name, epmd_port, ticktime, cookie);
  o.erl = otp22_erl();
  return o;
}

std::string beamlink_bin() {
  return binary_path("app/beamlink");
}

std::map<std::string, std::string> beamlink_env(int epmd_port, const std::string& cookie) {
  return {{"ERL_EPMD_PORT", std::to_string(epmd_port)},
          {"ERLANG_COOKIE", cookie},
          {"NODE_HOST", "127.0.0.1"},
          {"RELAY_LISTEN", "off"}};
}

HttpReply http(const std::string& method, const std::string& url, const std::string& body,
               std::vector<std::string> extra, std::vector<std::string> prefix) {
  // -w prints the status after the body on its own line; -D the headers.
  std::vector<std::string> argv = std::move(prefix);
  argv.insert(argv.end(),
              {"curl", "-sS", "-X", method, "-D", "/dev/stderr", "-w", "\n%{http_code}", url});
  if (!body.empty())
    argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = run(argv, 20s);
  HttpReply h;
  auto nl = r.out.rfind('\n');
  if (nl != std::string::npos) {
    h.body = r.out.substr(0, nl);
    h.status = std::atoi(r.out.c_str() + nl + 1);
  }
  h.headers = r.err;
  return h;
}

RelayProcess::RelayProcess(int epmd_port, const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {beamlink_bin(), "run", "--relay-listen",
                                   "127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  Subprocess::Options o;
  o.env = beamlink_env(epmd_port);
  for (auto& [k, v] : env) o.env[k] = v;
  o.env["DIST_PORT_MIN"] = o.env["DIST_PORT_MAX"] = std::to_string(free_port());
  proc = std::make_unique<Subprocess>(argv, o);
}

std::string RelayProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

std::string broadcast_body(const std::string& topic, const std::string& event, int n) {
  return R"({"topic":")" + topic + R"(","event":")" + event + R"(","payload":{"n":)" +
         std::to_string(n) + "}}";
}

std::string be(std::uint64_t v, int n) {
  std::string s;
  for (int i = n - 1; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

int occurrences(const std::string& s, const std::string& needle) {
  int n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace beamlink::test
