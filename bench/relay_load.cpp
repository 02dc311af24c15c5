// beamlink_bench_relay_load: HTTP load for scripts/bench relay.
//
//   beamlink_bench_relay_load --port P [--host IP] [--connections 64]
//       [--duration S] [--rate R] [--topic T] [--event E] [--payload-bytes 200]
//       [--token TOKEN] [--first-i 1]
//
// Opens --connections keep-alive HTTP/1.1 connections and POSTs
// /v1/broadcast {"topic","event","payload":{"t":US,"i":N,"pad":"..."}} with
// one request in flight per connection (as wrk does), for --duration seconds:
//   --rate 0 (default): closed loop, each connection sends its next request as
//     soon as the previous one is answered (as fast as the server takes them);
//   --rate R: paced, request k due at t0 + k/R, sent on an idle connection (a
//     request that finds none waits for one and counts as late).
// "t" is CLOCK_REALTIME in microseconds at the moment the request is written,
// so a subscriber on the same machine can compute POST -> delivery latency;
// "i" numbers the requests from 1 (--first-i: from another number, so that
// two load tools, one per relay, number theirs apart); "pad" makes the payload --payload-bytes
// long (the JSON of the payload object, not the whole body).
//
// Prints one line of JSON on stdout when done: sent, answered, by_status,
// elapsed_us (first send to the last answer or the end of the window, whichever is later), errors,
// late (paced), HTTP response latency percentiles, cpu_us (this tool's own user+system CPU) and
// first_refusal (the status and first 300 bytes of the first answer not 202)
// and backoffs (answers whose Retry-After the connection waited out).
// Closed loop, a connection answered with a Retry-After header (the relay's
// 503 queue_full says 1 s) waits that long before its next request, as a
// client following the relay contract does: without it the refusals become
// a retry storm that takes the CPU the queues need to drain, and the step
// measures the storm instead of the relay (paced: the schedule decides).
// Exit 1 on a connection error.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "bench_clock.hpp"
#include "common/utf8.hpp"

namespace {

using beamlink::utf8_prefix;
using beamlink::bench::cpu_us;
using beamlink::bench::mono_us;
using beamlink::bench::realtime_us;

struct Options {
  std::string host = "127.0.0.1";
  int port = 7070;
  int connections = 64;
  double duration_s = 10;
  double rate = 0;
  std::string topic = "bench:relay";
  std::string event = "bench";
  int payload_bytes = 200;
  std::string token;
  std::int64_t first_i = 1;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "beamlink_bench_relay_load: %s (see the header of bench/relay_load.cpp)\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) usage("an option lacks its value");
      return argv[++i];
    };
    if (a == "--host")
      o.host = next();
    else if (a == "--port")
      o.port = std::atoi(next());
    else if (a == "--connections")
      o.connections = std::atoi(next());
    else if (a == "--duration")
      o.duration_s = std::atof(next());
    else if (a == "--rate")
      o.rate = std::atof(next());
    else if (a == "--topic")
      o.topic = next();
    else if (a == "--event")
      o.event = next();
    else if (a == "--payload-bytes")
      o.payload_bytes = std::atoi(next());
    else if (a == "--token")
      o.token = next();
    else if (a == "--first-i")
      o.first_i = std::atoll(next());
    else
      usage("unknown option");
  }
  if (o.connections < 1 || o.port < 1 || o.duration_s <= 0) usage("bad option value");
  return o;
}

struct Conn {
  int fd = -1;
  std::string in;     // unparsed response bytes
  std::string out;    // request bytes not yet written
  bool busy = false;  // a request is in flight
  std::int64_t sent_mono = 0;
  std::int64_t retry_at = 0;  // closed loop: not before this (mono_us), from Retry-After
};

struct Load {
  Options o;
  int ep = -1;
  std::vector<Conn> conns;
  std::vector<int> idle;  // indices of connections with nothing in flight
  std::string head;       // request line and headers up to Content-Length's value
  std::string pad;
  std::int64_t next_i = 1;
  std::int64_t sent = 0, answered = 0, errors = 0, late = 0, backoffs = 0;
  std::map<int, std::int64_t> by_status;
  std::string first_refusal;  // the first answer other than 202: status and body
  std::vector<std::uint32_t> http_lat_us;
  std::int64_t first_send = 0, last_answer = 0;
  std::int64_t stop_mono = 0;  // the end of the sending window

  void build_templates() {
    head = "POST /v1/broadcast HTTP/1.1\r\nHost: " + o.host + "\r\n";
    if (!o.token.empty()) head += "Authorization: Bearer " + o.token + "\r\n";
    head += "Content-Type: application/json\r\nContent-Length: ";
    // {"t":1700000000000000,"i":1234567,"pad":"..."}: 16-digit t, ~7-digit i.
    const int fixed =
        static_cast<int>(std::strlen(R"({"t":1700000000000000,"i":1234567,"pad":""})"));
    pad.assign(static_cast<std::size_t>(std::max(0, o.payload_bytes - fixed)), 'x');
  }

  void send_one(int ci) {
    Conn& c = conns[static_cast<std::size_t>(ci)];
    std::int64_t now = realtime_us();
    std::string body = "{\"topic\":\"" + o.topic + "\",\"event\":\"" + o.event +
                       "\",\"payload\":{\"t\":" + std::to_string(now) +
                       ",\"i\":" + std::to_string(next_i++) + ",\"pad\":\"" + pad + "\"}}";
    c.out += head;
    c.out += std::to_string(body.size());
    c.out += "\r\n\r\n";
    c.out += body;
    c.busy = true;
    c.sent_mono = mono_us();
    if (sent == 0) first_send = c.sent_mono;
    ++sent;
    flush(ci);
  }

  void flush(int ci) {
    Conn& c = conns[static_cast<std::size_t>(ci)];
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        arm(ci, EPOLLIN | EPOLLOUT);
        return;
      } else {
        fail(ci, "send");
        return;
      }
    }
    arm(ci, EPOLLIN);
  }

  void arm(int ci, std::uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.u32 = static_cast<std::uint32_t>(ci);
    epoll_ctl(ep, EPOLL_CTL_MOD, conns[static_cast<std::size_t>(ci)].fd, &e);
  }

  void fail(int ci, const char* what) {
    std::fprintf(stderr, "beamlink_bench_relay_load: connection %d: %s: %s\n", ci, what,
                 std::strerror(errno));
    ++errors;
    Conn& c = conns[static_cast<std::size_t>(ci)];
    if (c.fd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
    }
  }

  // Consumes complete responses from c.in; returns how many were complete.
  int parse_responses(int ci) {
    Conn& c = conns[static_cast<std::size_t>(ci)];
    int done = 0;
    for (;;) {
      auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      if (c.in.size() < 12) break;
      int status = std::atoi(c.in.c_str() + 9);
      std::size_t len = 0;
      long retry_after_s = -1;
      std::string_view headers(c.in.data(), end);
      for (std::size_t p = 0; p < headers.size();) {
        auto eol = headers.find("\r\n", p);
        if (eol == std::string_view::npos) eol = headers.size();
        std::string_view line = headers.substr(p, eol - p);
        constexpr std::string_view cl = "content-length:";
        if (line.size() > cl.size() &&
            std::equal(cl.begin(), cl.end(), line.begin(), [](char a, char b) {
              return a == std::tolower(static_cast<unsigned char>(b));
            }))
          len = static_cast<std::size_t>(std::atol(std::string(line.substr(cl.size())).c_str()));
        constexpr std::string_view ra = "retry-after:";
        if (line.size() > ra.size() &&
            std::equal(ra.begin(), ra.end(), line.begin(), [](char a, char b) {
              return a == std::tolower(static_cast<unsigned char>(b));
            }))
          retry_after_s = std::atol(std::string(line.substr(ra.size())).c_str());
        p = eol + 2;
      }
      if (c.in.size() < end + 4 + len) break;
      if (status != 202 && first_refusal.empty())
        first_refusal = std::to_string(status) + " " +
                        std::string(utf8_prefix(std::string_view(c.in).substr(end + 4, len), 300));
      c.in.erase(0, end + 4 + len);
      ++by_status[status];
      ++answered;
      ++done;
      std::int64_t now = mono_us();
      last_answer = now;
      http_lat_us.push_back(static_cast<std::uint32_t>(now - c.sent_mono));
      c.busy = false;
      if (status != 202 && retry_after_s >= 0) c.retry_at = now + retry_after_s * 1'000'000;
    }
    return done;
  }

  void connect_all() {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr) != 1)
      usage("--host is not an IPv4 address");
    conns.resize(static_cast<std::size_t>(o.connections));
    for (int i = 0; i < o.connections; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        std::fprintf(stderr, "beamlink_bench_relay_load: connect %s:%d: %s\n", o.host.c_str(),
                     o.port, std::strerror(errno));
        std::exit(1);
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      conns[static_cast<std::size_t>(i)].fd = fd;
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = static_cast<std::uint32_t>(i);
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
  }

  int run() {
    ep = epoll_create1(0);
    build_templates();
    connect_all();
    const bool paced = o.rate > 0;
    const std::int64_t t0 = mono_us();
    const std::int64_t stop = t0 + static_cast<std::int64_t>(o.duration_s * 1e6);
    stop_mono = stop;
    std::int64_t due_sent = 0;  // paced: requests issued so far
    if (!paced) {
      for (int i = 0; i < o.connections; ++i) send_one(i);
    } else {
      for (int i = o.connections - 1; i >= 0; --i) idle.push_back(i);
    }
    std::vector<epoll_event> evs(static_cast<std::size_t>(o.connections));
    for (;;) {
      std::int64_t now = mono_us();
      bool sending = now < stop;
      if (paced && sending) {
        // Issue every request due by now on idle connections.
        std::int64_t due_total =
            static_cast<std::int64_t>(static_cast<double>(now - t0) * o.rate / 1e6) + 1;
        while (due_sent < due_total && !idle.empty()) {
          std::int64_t due_at =
              t0 + static_cast<std::int64_t>(static_cast<double>(due_sent) * 1e6 / o.rate);
          if (now - due_at > 2000) ++late;
          int ci = idle.back();
          idle.pop_back();
          send_one(ci);
          ++due_sent;
        }
      }
      std::int64_t next_retry = 0;  // closed loop: the earliest backed-off connection
      if (!paced && sending)
        for (int i = 0; i < o.connections; ++i) {
          Conn& c = conns[static_cast<std::size_t>(i)];
          if (c.fd < 0 || c.busy || c.retry_at == 0) continue;
          if (c.retry_at <= now) {
            c.retry_at = 0;
            send_one(i);
          } else if (next_retry == 0 || c.retry_at < next_retry) {
            next_retry = c.retry_at;
          }
        }
      bool in_flight = false;
      for (auto& c : conns) in_flight = in_flight || (c.busy && c.fd >= 0);
      if (!sending && !in_flight) break;
      if (!sending && mono_us() > stop + 10'000'000) {
        std::fprintf(stderr, "beamlink_bench_relay_load: responses missing 10 s after the end\n");
        ++errors;
        break;
      }
      int timeout_ms = 100;
      if (paced && sending) {
        std::int64_t next_due =
            t0 + static_cast<std::int64_t>(static_cast<double>(due_sent) * 1e6 / o.rate);
        std::int64_t wait = next_due - mono_us();
        // Millisecond timeouts: a request due sooner waits for the next tick
        // (sent up to 1 ms late, in a small burst) rather than spinning a core
        // the server needs; "t" is the real send time, so latency stays exact.
        timeout_ms =
            idle.empty() ? 100 : static_cast<int>(std::max<std::int64_t>(1, (wait + 999) / 1000));
      }
      if (next_retry != 0)
        timeout_ms = static_cast<int>(std::clamp<std::int64_t>(
            (next_retry - mono_us() + 999) / 1000, 1, static_cast<std::int64_t>(timeout_ms)));
      int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), timeout_ms);
      for (int k = 0; k < n; ++k) {
        int ci = static_cast<int>(evs[static_cast<std::size_t>(k)].data.u32);
        Conn& c = conns[static_cast<std::size_t>(ci)];
        if (c.fd < 0) continue;
        if (evs[static_cast<std::size_t>(k)].events & EPOLLOUT) flush(ci);
        if (evs[static_cast<std::size_t>(k)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          char buf[16384];
          for (;;) {
            ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
            if (r > 0) {
              c.in.append(buf, static_cast<std::size_t>(r));
              if (static_cast<std::size_t>(r) < sizeof buf) break;
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
              break;
            } else {
              if (r == 0) errno = ECONNRESET;
              fail(ci, "recv");
              break;
            }
          }
          if (c.fd >= 0 && parse_responses(ci) > 0) {
            if (mono_us() < stop) {
              if (paced)
                idle.push_back(ci);
              else if (c.retry_at > mono_us())
                ++backoffs;  // sent again by the loop once Retry-After has passed
              else
                send_one(ci);
            }
          }
        }
      }
    }
    report();
    return errors == 0 ? 0 : 1;
  }

  static std::string json_escaped(const std::string& in) {
    std::string out;
    for (unsigned char ch : in) {
      if (ch == '"' || ch == '\\') {
        out += '\\';
        out += static_cast<char>(ch);
      } else if (ch < 0x20) {
        char u[8];
        std::snprintf(u, sizeof u, "\\u%04x", ch);
        out += u;
      } else {
        out += static_cast<char>(ch);
      }
    }
    return out;
  }

  void report() {
    std::sort(http_lat_us.begin(), http_lat_us.end());
    auto pct = [&](double p) -> std::uint32_t {
      if (http_lat_us.empty()) return 0;
      auto idx = static_cast<std::size_t>(p * static_cast<double>(http_lat_us.size() - 1));
      return http_lat_us[idx];
    };
    std::string st;
    for (auto& [k, v] : by_status) {
      if (!st.empty()) st += ",";
      // Piece by piece: "\"" + to_string() is an overlapping memcpy to GCC 12 -O3.
      st += '"';
      st += std::to_string(k);
      st += "\":";
      st += std::to_string(v);
    }
    std::printf(
        "{\"sent\":%lld,\"answered\":%lld,\"by_status\":{%s},\"elapsed_us\":%lld,\"errors\":%lld,"
        "\"late\":%lld,\"last_i\":%lld,\"http_p50_us\":%u,\"http_p99_us\":%u,\"http_max_us\":%u,"
        "\"cpu_us\":%lld,\"first_refusal\":\"%s\",\"backoffs\":%lld}\n",
        static_cast<long long>(sent), static_cast<long long>(answered), st.c_str(),
        // To the end of the window at least: connections waiting out a
        // Retry-After at the end answer nothing, but the time was spent.
        static_cast<long long>(std::max(last_answer, stop_mono) - first_send),
        static_cast<long long>(errors), static_cast<long long>(late),
        static_cast<long long>(next_i - 1), pct(0.50), pct(0.99),
        http_lat_us.empty() ? 0u : http_lat_us.back(), static_cast<long long>(cpu_us()),
        json_escaped(first_refusal).c_str(), static_cast<long long>(backoffs));
  }
};

}  // namespace

int main(int argc, char** argv) {
  Load l;
  l.o = parse(argc, argv);
  l.next_i = l.o.first_i;
  return l.run();
}
