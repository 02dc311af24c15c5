// The relay's HTTP server on a real loop, with real clients: python3's
// http.client and raw sockets, and curl. Each client is a subprocess tracked
// by PID; the loop runs until it exits (deadline-bounded, no sleeps).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "relay/broadcast_api.hpp"
#include "relay/http_server.hpp"
#include "support.hpp"
#include "term/term_text.hpp"
#include "test_loop.hpp"

using namespace beamlink;
using namespace beamlink::relay;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

struct RecordingPublisher : Publisher {
  std::vector<std::pair<std::string, std::string>> got;  // topic, format_term text
  Result<void> publish(std::string_view topic, std::span<const char> term) override {
    auto r = term::TermReader::from_external(term);
    if (!r) return make_error(Errc::bad_term, "no version byte");
    auto text = term::format_term(*r);
    if (!text) return std::move(text).error();
    got.emplace_back(std::string(topic), *text);
    return {};
  }
};

// A server with the routes the tests use: POST /v1/broadcast, GET /fast, and
// GET /slow which answers from a timer (asynchronously, after /fast would).
struct Fixture {
  TestLoop loop;
  RecordingPublisher publisher;
  BroadcastApi api{publisher};
  std::vector<Responder> slow;
  uv_timer_t timer{};
  std::unique_ptr<HttpServer> server;

  explicit Fixture(ServerOptions o = {}) {
    uv_timer_init(loop.get(), &timer);
    timer.data = this;
    Router router;
    router.add("POST", "/v1/broadcast", api.handler());
    router.add("GET", "/fast", [](const Request&, Responder res) {
      Response r;
      r.body = R"({"route":"fast"})";
      res.respond(r);
    });
    router.add("GET", "/slow", [this](const Request&, Responder res) {
      slow.push_back(res);
      uv_timer_start(
          &timer,
          [](uv_timer_t* t) {
            auto* self = static_cast<Fixture*>(t->data);
            for (auto& s : self->slow) {
              Response r;
              r.body = R"({"route":"slow"})";
              s.respond(r);
            }
            self->slow.clear();
          },
          50, 0);
    });
    o.limits.max_body = 1024;
    server = std::make_unique<HttpServer>(loop.get(), o, router);
    auto r = server->listen();
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    REQUIRE(server->port() > 0);
  }
  ~Fixture() {
    server.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    CHECK(loop.close() == 0);
  }

  // Runs the loop until `p` exits. A child's exit is no loop event: a 5 ms
  // timer wakes the loop to look (wait_until's poll interval).
  bool serve_until_exit(Subprocess& p, std::chrono::milliseconds timeout = 120s) {
    uv_timer_t poll{};
    uv_timer_init(loop.get(), &poll);
    uv_timer_start(
        &poll, [](uv_timer_t*) {}, 5, 5);
    bool done = loop.run_until([&] { return !p.running(); }, timeout);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll), nullptr);
    uv_run(loop.get(), UV_RUN_NOWAIT);  // the close callback, before `poll` goes
    return done;
  }

  // Runs a client to completion while the loop serves it; returns its stdout.
  std::string client(std::vector<std::string> argv) {
    Subprocess p(std::move(argv));
    bool done = serve_until_exit(p);
    REQUIRE_MESSAGE(done, (std::string("client did not finish: ") + p.err()));
    auto code = p.wait(1s);
    CHECK_MESSAGE(code == 0, p.err());
    return p.out();
  }
  std::string python(const std::string& script) {
    return client({"python3", "-c", script, std::to_string(server->port())});
  }
};

const char* kPyPrelude = R"(
import http.client, socket, sys
port = int(sys.argv[1])
)";

}  // namespace

TEST_CASE("relay http serves keep-alive requests on one connection") {
  Fixture f;
  auto out = f.python(std::string(kPyPrelude) + R"(
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/fast"); r = c.getresponse(); b1 = r.read(); s1 = c.sock
c.request("GET", "/slow"); r2 = c.getresponse(); b2 = r2.read()
print(r.status, b1.decode(), r2.status, b2.decode(), c.sock is s1, r.getheader("Content-Type"))
)");
  CHECK(out == "200 {\"route\":\"fast\"} 200 {\"route\":\"slow\"} True application/json\n");
}

TEST_CASE("relay http serves an adopted socketpair end as if it had been accepted") {
  Fixture f;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  REQUIRE(f.server->adopt(sv[0]).ok());
  CHECK(f.server->connection_count() == 1);
  const std::string req = "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  REQUIRE(::write(sv[1], req.data(), req.size()) == static_cast<ssize_t>(req.size()));
  ::fcntl(sv[1], F_SETFL, ::fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  std::string got;
  bool eof = false;
  // Connection: close: the server answers, then closes its end.
  REQUIRE(f.loop.run_until([&] {
    char buf[4096];
    for (ssize_t n; (n = ::read(sv[1], buf, sizeof buf)) != 0;) {
      if (n < 0) return false;
      got.append(buf, static_cast<std::size_t>(n));
    }
    eof = true;
    return true;
  }));
  CHECK(eof);
  CHECK(got.starts_with("HTTP/1.1 200 "));
  CHECK(got.ends_with(R"({"route":"fast"})"));
  CHECK(f.loop.run_until([&] { return f.server->connection_count() == 0; }));
  ::close(sv[1]);
  // Not a socket the loop can take: refused, the fd stays the caller's.
  auto bad = f.server->adopt(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::io_error);
}

TEST_CASE("relay http answers pipelined requests in order") {
  Fixture f;
  auto out = f.python(std::string(kPyPrelude) + R"(
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    d = s.recv(65536)
    if not d: break
    data += d
t = data.decode()
print(t.count("HTTP/1.1 200 OK"), t.index("slow") < t.index("fast"), "Connection: close" in t)
)");
  CHECK(out == "2 True True\n");
}

TEST_CASE("relay http refuses a body over the limit with 413") {
  Fixture f;
  auto out = f.python(std::string(kPyPrelude) + R"(
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("POST", "/v1/broadcast", body=b"x" * 2000, headers={"Content-Type": "application/json"})
r = c.getresponse()
print(r.status, r.read().decode())
)");
  CHECK(out ==
        "413 {\"error\":\"payload_too_large\",\"reason\":\"request body over the limit of 1024 "
        "bytes\"}\n");
  CHECK(f.publisher.got.empty());
}

TEST_CASE("relay http broadcast answers 400 with the reason and 202 with the term") {
  Fixture f;
  auto out = f.python(std::string(kPyPrelude) + R"(
c = http.client.HTTPConnection("127.0.0.1", port)
for body in [b'{"topic":', b'{"topic":"t","event":"e","payload":{},"x":1}',
             b'{"topic":"room:lobby","event":"shout","payload":{"body":"hi","n":2}}']:
    c.request("POST", "/v1/broadcast", body=body)
    r = c.getresponse()
    print(r.status, r.read().decode())
)");
  CHECK(out ==
        "400 {\"error\":\"bad_json\",\"reason\":\"invalid JSON: The JSON document has an improper "
        "structure: missing or superfluous commas, braces, missing keys, etc.\"}\n"
        "400 {\"error\":\"bad_request\",\"reason\":\"unknown field \\\"x\\\" (expected "
        "\\\"topic\\\", \\\"event\\\", \\\"payload\\\")\"}\n"
        "202 {\"status\":\"accepted\"}\n");
  REQUIRE(f.publisher.got.size() == 1);
  CHECK(f.publisher.got[0].first == "room:lobby");
  CHECK(f.publisher.got[0].second ==
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',topic => <<\"room:lobby\">>,"
        "event => <<\"shout\">>,payload => #{<<\"body\">> => <<\"hi\">>,<<\"n\">> => 2}}");
}

TEST_CASE("relay http routes answer 404 and 405") {
  Fixture f;
  auto out = f.python(std::string(kPyPrelude) + R"(
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/nowhere"); r = c.getresponse(); r.read(); print(r.status)
c.request("GET", "/v1/broadcast"); r = c.getresponse(); r.read(); print(r.status, r.getheader("Allow"))
)");
  CHECK(out == "404\n405 POST\n");
}

TEST_CASE("relay http requires the bearer token when configured") {
  ServerOptions o;
  o.bearer_token = "s3cret";
  Fixture f(o);
  std::string url = "http://127.0.0.1:" + std::to_string(f.server->port()) + "/v1/broadcast";
  std::string body = R"({"topic":"t","event":"e","payload":{}})";
  auto without = f.client({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                           "--data-binary", body, url});
  CHECK(without == "401");
  auto wrong = f.client({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                         "Authorization: Bearer nope", "--data-binary", body, url});
  CHECK(wrong == "401");
  // A prefix or an extension of the token is no match either.
  for (const char* t : {"Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearers3cret"}) {
    auto near = f.client({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          std::string("Authorization: ") + t, "--data-binary", body, url});
    CHECK_MESSAGE(near == "401", t);
  }
  // The scheme is case-insensitive (RFC 7235 section 2.1).
  auto lower = f.client({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                         "Authorization: bearer s3cret", "-H", "Content-Type: application/json",
                         "--data-binary", body, url});
  CHECK(lower == "202");
  auto with = f.client({"curl", "-sS", "-w", " %{http_code}", "-H", "Authorization: Bearer s3cret",
                        "-H", "Content-Type: application/json", "--data-binary", body, url});
  CHECK(with == "{\"status\":\"accepted\"} 202");
  CHECK(f.publisher.got.size() == 2);
}

TEST_CASE("relay http close lets a pending answer finish") {
  Fixture f;
  Subprocess p({"curl", "-sS", "http://127.0.0.1:" + std::to_string(f.server->port()) + "/slow"});
  REQUIRE(f.loop.run_until([&] { return !f.slow.empty(); }, 10s));
  f.server->close();
  REQUIRE(f.serve_until_exit(p, 10s));
  CHECK(p.wait(1s) == 0);
  CHECK(p.out() == "{\"route\":\"slow\"}");
  CHECK(f.loop.run_until([&] { return f.server->connection_count() == 0; }, 5s));
}

TEST_CASE("relay http at max_connections a new connection waits until one closes") {
  ServerOptions o;
  o.max_connections = 2;
  Fixture f(o);
  // Two kept-alive connections are served; a third is not accepted (its
  // request is not answered within 1 s) until the first closes, then it is
  // answered. Prints the outcome of each step.
  auto out = f.python(std::string(kPyPrelude) + R"(
def get(c):
    c.request("GET", "/fast"); r = c.getresponse(); r.read(); return r.status
a = http.client.HTTPConnection("127.0.0.1", port); b = http.client.HTTPConnection("127.0.0.1", port)
print(get(a), get(b))
c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
c.connect()
c.sock.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    c.sock.recv(1)
    print("answered at the limit")
except socket.timeout:
    print("waits")
a.close()
c.sock.settimeout(10)
data = b""
while b"fast" not in data:
    chunk = c.sock.recv(4096)
    if not chunk: break
    data += chunk
print(data.split(b"\r\n")[0].decode(), get(b))
)");
  CHECK(out == "200 200\nwaits\nHTTP/1.1 200 OK 200\n");
  CHECK(f.server->connection_waits() == 1);
}

TEST_CASE("relay http closes an idle connection and answers a trickling request 408") {
  ServerOptions o;
  o.max_connections = 1;
  o.idle_timeout = 300ms;
  o.request_timeout = 300ms;
  Fixture f(o);
  // An idle connection holding the only slot is closed; the one waiting is
  // then served. A request cut short gets 408 and the connection closes.
  auto out = f.python(std::string(kPyPrelude) + R"(
def read_all(s):
    s.settimeout(10)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk: return data
        data += chunk
idle = socket.create_connection(("127.0.0.1", port))
waiting = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
waiting.request("GET", "/fast"); r = waiting.getresponse(); r.read()
print("idle closed" if read_all(idle) == b"" else "idle got data", r.status)
waiting.close()
slow = socket.create_connection(("127.0.0.1", port))
slow.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
print(read_all(slow).split(b"\r\n")[0].decode())
)");
  CHECK(out == "idle closed 200\nHTTP/1.1 408 Request Timeout\n");
  CHECK(f.server->idle_closes() >= 1);
  CHECK(f.server->request_timeouts() == 1);
}

TEST_CASE("relay http stops reading a client that pipelines and never reads - then closes it") {
  // A client that sends requests as fast as it can and never reads the
  // answers: once max_unsent_bytes of answers wait, the server stops reading,
  // so the client's sends block (bounded by the kernel's socket buffers);
  // without the bound the server reads all 40 MB and queues every answer.
  // Then, with a short send_timeout, the server closes such a connection.
  const std::string flood = std::string(kPyPrelude) + R"(
import select
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
s.connect(("127.0.0.1", port))
s.setblocking(False)
batch = b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
sent, cap, how = 0, 40 << 20, "at cap"
while sent < cap:
    _, w, _ = select.select([], [s], [], 3)
    if not w:
        how = "blocked"
        break
    try:
        sent += s.send(batch)
    except BlockingIOError:
        pass
    except OSError:
        how = "closed while sending"
        break
print(how)
if sys.argv[2] == "wait-close":
    s.setblocking(True)
    s.settimeout(60)
    try:
        while s.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass
    print("closed")
)";
  {
    ServerOptions o;
    o.max_unsent_bytes = 64 * 1024;
    o.send_timeout = 600s;
    Fixture f(o);
    CHECK(f.client({"python3", "-c", flood, std::to_string(f.server->port()), "blocked"}) ==
          "blocked\n");
    CHECK(f.server->send_timeouts() == 0);
  }
  {
    ServerOptions o;
    o.max_unsent_bytes = 64 * 1024;
    o.send_timeout = 500ms;
    Fixture f(o);
    auto out = f.client({"python3", "-c", flood, std::to_string(f.server->port()), "wait-close"});
    CHECK((out == "blocked\nclosed\n" || out == "closed while sending\nclosed\n"));
    CHECK(f.server->send_timeouts() == 1);
  }
}
