// beamlink_bench_relay_ws: many Phoenix Channels V2 WebSocket clients on one
// topic, for scripts/bench relay (WebSocket fan-out).
//
//   beamlink_bench_relay_ws --port P [--host IP] [--clients 1000] [--threads 2]
//       [--topic T] --expect N [--quiet-s 5] [--max-s 120] [--token TOKEN]
//       [--progress] [--latencies FILE]
//
// Each client opens ws://HOST:PORT/socket/websocket?vsn=2.0.0 (raw frames, no
// library: at 1,000 clients x 1,000 broadcasts/s the clients must be cheaper
// than the server they measure), joins TOPIC with
// ["1","1",TOPIC,"phx_join",{}] and waits for its ok reply. Once all have
// joined it prints "joined N" on stdout. Then every broadcast
// [null,null,TOPIC,EVENT,{"t":US,"i":I,...}] is checked and timed: latency =
// CLOCK_REALTIME now (us) - t (the sender's CLOCK_REALTIME; same machine);
// i (1..N) must arrive exactly once per client. Heartbeats every 20 s.
//
// It ends when every client has all N, or --quiet-s seconds after the last
// broadcast (or --max-s after joining) and prints one line of JSON: clients,
// expected, received, missing, duplicates, out_of_range, clients_complete,
// closed (connections the server closed; the close codes on stderr), lat_p50_us, lat_p99_us,
// lat_p999_us, lat_max_us, cpu_us (this tool's own CPU). Exit 1 when a
// client cannot connect or join. --progress: one line a second on stderr
// (frames received so far, connections closed). --latencies FILE: every
// latency measured, as "US COUNT" lines in increasing US, so that the
// percentiles of several runs (clients split over several relays) can be
// taken together.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_clock.hpp"

namespace {

using beamlink::bench::cpu_us;
using beamlink::bench::mono_us;
using beamlink::bench::realtime_us;

struct Options {
  std::string host = "127.0.0.1";
  int port = 7070;
  int clients = 1000;
  int threads = 2;
  std::string topic = "bench:ws";
  std::int64_t expect = 0;
  double quiet_s = 5;
  double max_s = 120;
  std::string token;
  bool progress = false;
  std::string latencies;  // --latencies FILE: the histogram, "US COUNT" lines
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "beamlink_bench_relay_ws: %s (see the header of bench/relay_ws_clients.cpp)\n", why);
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
    else if (a == "--clients")
      o.clients = std::atoi(next());
    else if (a == "--threads")
      o.threads = std::atoi(next());
    else if (a == "--topic")
      o.topic = next();
    else if (a == "--expect")
      o.expect = std::atoll(next());
    else if (a == "--quiet-s")
      o.quiet_s = std::atof(next());
    else if (a == "--max-s")
      o.max_s = std::atof(next());
    else if (a == "--token")
      o.token = next();
    else if (a == "--progress")
      o.progress = true;
    else if (a == "--latencies")
      o.latencies = next();
    else
      usage("unknown option");
  }
  if (o.clients < 1 || o.threads < 1 || o.expect < 1) usage("bad option value");
  o.threads = std::min(o.threads, o.clients);
  return o;
}

// A client frame: FIN + text, masked with the zero key (RFC 6455 5.3 allows
// any key; zero leaves the payload as is).
std::string client_frame(std::string_view payload, std::uint8_t opcode = 0x1) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(0x80 | payload.size()));
  } else {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  }
  f.append(4, '\0');
  f.append(payload);
  return f;
}

// The integer after `"key":` in s, or -1.
std::int64_t json_int(std::string_view s, std::string_view key) {
  auto p = s.find(key);
  if (p == std::string_view::npos) return -1;
  p += key.size();
  std::int64_t v = 0;
  bool any = false;
  while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
    v = v * 10 + (s[p] - '0');
    ++p;
    any = true;
  }
  return any ? v : -1;
}

struct Client {
  int fd = -1;
  enum class State { Upgrading, Joining, Joined, Closed } state = State::Upgrading;
  std::string in;
  std::string out;
  std::vector<std::uint8_t> seen;  // seen[i] for i in 1..expect
  std::int64_t received = 0, distinct = 0, dups = 0, out_of_range = 0;
};

std::atomic<int> g_joined{0};
std::atomic<int> g_failed{0};
std::atomic<bool> g_go{false};
std::atomic<std::int64_t> g_received{0};
std::atomic<int> g_closed{0};

struct Worker {
  const Options* o = nullptr;
  int first = 0, count = 0;
  std::vector<Client> clients;
  std::vector<std::uint32_t> lat;
  int closed = 0;
  int ep = -1;
  std::int64_t last_msg = 0;

  void fail(Client& c, const char* what) {
    if (c.state != Client::State::Joined) {
      std::fprintf(stderr, "beamlink_bench_relay_ws: a client %s\n", what);
      g_failed.fetch_add(1);
    } else {
      ++closed;
      g_closed.fetch_add(1, std::memory_order_relaxed);
    }
    c.state = Client::State::Closed;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }

  void write(Client& c, std::string_view bytes) {
    c.out.append(bytes);
    while (!c.out.empty()) {
      ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EAGAIN) {
        break;  // rare here (small frames); EPOLLOUT not needed for a bench
      } else {
        fail(c, "could not write");
        return;
      }
    }
  }

  void on_text(Client& c, std::string_view msg) {
    if (c.state == Client::State::Joining) {
      if (msg.find("\"phx_reply\"") != std::string_view::npos) {
        if (msg.find("\"status\":\"ok\"") == std::string_view::npos) {
          std::fprintf(stderr, "beamlink_bench_relay_ws: join refused: %.*s\n",
                       static_cast<int>(msg.size()), msg.data());
          g_failed.fetch_add(1);
          c.state = Client::State::Closed;
          return;
        }
        c.state = Client::State::Joined;
        g_joined.fetch_add(1);
      }
      return;
    }
    if (!msg.starts_with("[null,null,")) return;  // heartbeat replies
    std::int64_t now = realtime_us();
    std::int64_t t = json_int(msg, "\"t\":");
    std::int64_t i = json_int(msg, "\"i\":");
    last_msg = mono_us();
    ++c.received;
    g_received.fetch_add(1, std::memory_order_relaxed);
    if (i < 1 || i > o->expect) {
      ++c.out_of_range;
      return;
    }
    auto& seen = c.seen[static_cast<std::size_t>(i)];
    if (seen) {
      ++c.dups;
    } else {
      seen = 1;
      ++c.distinct;
    }
    if (t > 0)
      lat.push_back(static_cast<std::uint32_t>(std::clamp<std::int64_t>(now - t, 0, UINT32_MAX)));
  }

  void on_readable(Client& c) {
    char buf[65536];
    for (;;) {
      ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r > 0) {
        c.in.append(buf, static_cast<std::size_t>(r));
        if (static_cast<std::size_t>(r) < sizeof buf) break;
      } else if (r < 0 && errno == EAGAIN) {
        break;
      } else {
        fail(c, "was closed by the server before joining");
        return;
      }
    }
    std::size_t pos = 0;
    if (c.state == Client::State::Upgrading) {
      auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) {
        std::fprintf(stderr, "beamlink_bench_relay_ws: upgrade refused: %.*s\n",
                     static_cast<int>(std::min<std::size_t>(end, 200)), c.in.data());
        fail(c, "could not upgrade");
        return;
      }
      pos = end + 4;
      c.state = Client::State::Joining;
      write(c, client_frame("[\"1\",\"1\",\"" + o->topic + "\",\"phx_join\",{}]"));
    }
    const auto* d = reinterpret_cast<const std::uint8_t*>(c.in.data());
    while (c.in.size() - pos >= 2) {
      std::uint8_t op = d[pos] & 0x0f;
      std::uint64_t len = d[pos + 1] & 0x7f;
      std::size_t hdr = 2;
      if (len == 126) {
        if (c.in.size() - pos < 4) break;
        len = (std::uint64_t{d[pos + 2]} << 8) | d[pos + 3];
        hdr = 4;
      } else if (len == 127) {
        if (c.in.size() - pos < 10) break;
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | d[pos + 2 + static_cast<std::size_t>(k)];
        hdr = 10;
      }
      if (c.in.size() - pos - hdr < len) break;
      std::string_view payload(c.in.data() + pos + hdr, static_cast<std::size_t>(len));
      pos += hdr + static_cast<std::size_t>(len);
      if (op == 0x1) {
        on_text(c, payload);
      } else if (op == 0x9) {
        write(c, client_frame(payload, 0xA));
      } else if (op == 0x8) {
        if (payload.size() >= 2 && closed == 0)
          std::fprintf(
              stderr, "beamlink_bench_relay_ws: first close: %d %.*s\n",
              (static_cast<std::uint8_t>(payload[0]) << 8) | static_cast<std::uint8_t>(payload[1]),
              static_cast<int>(payload.size() - 2), payload.data() + 2);
        fail(c, "was closed by the server");
        return;
      }
      if (c.state == Client::State::Closed) return;
    }
    c.in.erase(0, pos);
  }

  bool complete() const {
    for (const auto& c : clients)
      if (c.state != Client::State::Closed && c.distinct < o->expect) return false;
    return true;
  }

  void run() {
    ep = epoll_create1(0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(o->port));
    inet_pton(AF_INET, o->host.c_str(), &sa.sin_addr);
    std::string req = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: " + o->host +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n";
    if (!o->token.empty()) req += "Authorization: Bearer " + o->token + "\r\n";
    req += "\r\n";
    clients.resize(static_cast<std::size_t>(count));
    for (int k = 0; k < count; ++k) {
      Client& c = clients[static_cast<std::size_t>(k)];
      c.seen.assign(static_cast<std::size_t>(o->expect) + 1, 0);
      c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        std::fprintf(stderr, "beamlink_bench_relay_ws: connect %s:%d: %s\n", o->host.c_str(),
                     o->port, std::strerror(errno));
        g_failed.fetch_add(1);
        return;
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.u32 = static_cast<std::uint32_t>(k);
      epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &e);
      write(c, req);
    }
    lat.reserve(static_cast<std::size_t>(count) * static_cast<std::size_t>(o->expect));
    std::vector<epoll_event> evs(256);
    std::int64_t start = 0, next_hb = mono_us() + 20'000'000;
    const std::string hb = client_frame("[null,\"hb\",\"phoenix\",\"heartbeat\",{}]");
    for (;;) {
      int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
      for (int k = 0; k < n; ++k) {
        Client& c = clients[evs[static_cast<std::size_t>(k)].data.u32];
        if (c.state != Client::State::Closed) on_readable(c);
      }
      std::int64_t now = mono_us();
      if (g_failed.load() > 0) return;
      if (now >= next_hb) {
        for (auto& c : clients)
          if (c.state == Client::State::Joined) write(c, hb);
        next_hb = now + 20'000'000;
      }
      if (!g_go.load()) continue;
      if (start == 0) start = now;
      if (complete()) return;
      std::int64_t quiet_since = std::max(last_msg, start);
      if (last_msg > 0 && now - quiet_since > static_cast<std::int64_t>(o->quiet_s * 1e6)) return;
      if (now - start > static_cast<std::int64_t>(o->max_s * 1e6)) return;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::vector<Worker> workers(static_cast<std::size_t>(o.threads));
  int per = o.clients / o.threads, extra = o.clients % o.threads, first = 0;
  for (int t = 0; t < o.threads; ++t) {
    auto& w = workers[static_cast<std::size_t>(t)];
    w.o = &o;
    w.first = first;
    w.count = per + (t < extra ? 1 : 0);
    first += w.count;
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w.run(); });
  std::int64_t deadline = mono_us() + 60'000'000;
  while (g_joined.load() < o.clients && g_failed.load() == 0) {
    if (mono_us() > deadline) {
      std::fprintf(stderr, "beamlink_bench_relay_ws: only %d of %d clients joined in 60 s\n",
                   g_joined.load(), o.clients);
      g_failed.fetch_add(1);
      break;
    }
    usleep(10000);
  }
  if (g_failed.load() == 0) {
    std::printf("joined %d\n", g_joined.load());
    std::fflush(stdout);
  }
  g_go.store(true);
  std::atomic<bool> done{false};
  std::thread reporter([&] {
    std::int64_t t0 = mono_us(), prev = 0;
    while (o.progress && !done.load()) {
      usleep(1000000);
      std::int64_t r = g_received.load();
      std::fprintf(stderr, "beamlink_bench_relay_ws: %5.1f s: %lld frames (+%lld), %d closed\n",
                   static_cast<double>(mono_us() - t0) / 1e6, static_cast<long long>(r),
                   static_cast<long long>(r - prev), g_closed.load());
      prev = r;
    }
  });
  for (auto& t : threads) t.join();
  done.store(true);
  reporter.join();
  if (g_failed.load() > 0) return 1;

  std::vector<std::uint32_t> lat;
  std::int64_t received = 0, distinct = 0, dups = 0, oor = 0, complete = 0;
  int closed = 0;
  for (auto& w : workers) {
    lat.insert(lat.end(), w.lat.begin(), w.lat.end());
    closed += w.closed;
    for (auto& c : w.clients) {
      received += c.received;
      distinct += c.distinct;
      dups += c.dups;
      oor += c.out_of_range;
      if (c.distinct == o.expect) ++complete;
    }
  }
  std::sort(lat.begin(), lat.end());
  if (!o.latencies.empty()) {
    std::FILE* f = std::fopen(o.latencies.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "beamlink_bench_relay_ws: cannot write %s: %s\n", o.latencies.c_str(),
                   std::strerror(errno));
      return 1;
    }
    for (std::size_t k = 0; k < lat.size();) {
      std::size_t run = k;
      while (run < lat.size() && lat[run] == lat[k]) ++run;
      std::fprintf(f, "%u %zu\n", lat[k], run - k);
      k = run;
    }
    std::fclose(f);
  }
  auto pct = [&](double p) -> std::uint32_t {
    if (lat.empty()) return 0;
    return lat[static_cast<std::size_t>(p * static_cast<double>(lat.size() - 1))];
  };
  std::printf(
      "{\"clients\":%d,\"expected\":%lld,\"received\":%lld,\"missing\":%lld,\"duplicates\":%lld,"
      "\"out_of_range\":%lld,\"clients_complete\":%lld,\"closed\":%d,\"lat_p50_us\":%u,"
      "\"lat_p99_us\":%u,\"lat_p999_us\":%u,\"lat_max_us\":%u,\"cpu_us\":%lld}\n",
      o.clients, static_cast<long long>(o.expect) * o.clients, static_cast<long long>(received),
      static_cast<long long>(o.expect) * o.clients - distinct, static_cast<long long>(dups),
      static_cast<long long>(oor), static_cast<long long>(complete), closed, pct(0.50), pct(0.99),
      pct(0.999), lat.empty() ? 0u : lat.back(), static_cast<long long>(cpu_us()));
  return 0;
}
