// The epmd codec against bytes recorded from the real thing (OTP 25).
//
// How the golden bytes were made (once, by hand; see each constant):
// - Requests: a 20-line Python "fake epmd" listening on 127.0.0.1:P printed the
//   first request of each connection while real clients talked to it:
//   `ERL_EPMD_PORT=P erl -noshell -sname goldenerl` (ALIVE2_REQ),
//   `epmd -port P -names` (NAMES_REQ) and
//   `erl_epmd:port_please("golden", {127,0,0,1})` (PORT_PLEASE2_REQ).
// - Responses: a Python script started `epmd -port P -address 127.0.0.1`
//   (epmd 25), sent requests over plain sockets and printed the replies:
//   ALIVE2_REQ "golden" port 5555 hidden v6/v6 (→ ALIVE2_X_RESP), the same
//   name again (→ refused), "oldver" port 5557 v5/v5 (→ ALIVE2_RESP) and
//   again, "withextra" port 5559 Extra "xyz", PORT_PLEASE2_REQ "golden",
//   "withextra" and "missing", and NAMES_REQ with and without registrations.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "epmd_client/codec.hpp"

using namespace beamlink;
using namespace beamlink::epmd_client;
using namespace std::string_literals;

namespace {

// ---- requests, as sent by erl / epmd -names
// erl -sname goldenerl: port 0xa731, normal node (77), TCP, highest 6, lowest 5.
const std::string erl_alive2_req =
    "\x00\x16\x78\xa7\x31\x4d\x00\x00\x06\x00\x05\x00\x09goldenerl\x00\x00"s;
const std::string epmd_names_req = "\x00\x01\x6e"s;
const std::string erl_port_please2_req = "\x00\x07\x7agolden"s;

// ---- responses, from epmd 25
const std::string alive2_x_resp_ok = "\x76\x00\x6b\x06\xb7\x46"s;     // creation 0x6b06b746
const std::string alive2_x_resp_taken = "\x76\x01\x00\x00\x00\x63"s;  // name occupied
const std::string alive2_resp_ok = "\x79\x00\x00\x02"s;               // v5 request: creation 2
const std::string alive2_resp_taken = "\x79\x01\x00\x63"s;
const std::string port2_resp_golden =
    "\x77\x00\x15\xb3\x48\x00\x00\x06\x00\x06\x00\x06golden\x00\x00"s;
const std::string port2_resp_extra =
    "\x77\x00\x15\xb7\x48\x00\x00\x06\x00\x06\x00\x09withextra\x00\x03xyz"s;
const std::string port2_resp_missing = "\x77\x01"s;
const std::string names_resp =
    "\x00\x00\xaa\xac"
    "name withextra at port 5559\n"
    "name oldver at port 5557\n"
    "name golden at port 5555\n"s;
const std::string names_resp_empty = "\x00\x00\xaa\xac"s;

std::span<const char> sp(const std::string& s) {
  return {s.data(), s.size()};
}

// Feeds `bytes` to an incremental decoder the three ways a socket can deliver
// them: whole, split in two at every point, and one byte at a time. Every
// strict prefix must ask for more; the whole must give `check` its result.
template <class Decode, class Check>
void feed_every_way(const std::string& bytes, Decode decode, Check check) {
  {
    INFO("whole");
    check(decode(sp(bytes)));
  }
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO("split at " << cut);
    std::string received = bytes.substr(0, cut);
    auto first = decode(sp(received));
    REQUIRE(first.ok());
    CHECK_FALSE(first->has_value());
    received += bytes.substr(cut);
    check(decode(sp(received)));
  }
  std::string received;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    INFO("byte by byte, byte " << i);
    received.push_back(bytes[i]);
    auto r = decode(sp(received));
    if (i + 1 < bytes.size()) {
      REQUIRE(r.ok());
      CHECK_FALSE(r->has_value());
    } else {
      check(std::move(r));
    }
  }
}

template <class T>
void check_error(const Result<T>& r, Errc code, std::string_view needle) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == code);
  INFO("message: " << r.error().message);
  CHECK(r.error().message.find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("epmd codec: ALIVE2_REQ matches what erl sends") {
  CHECK(encode_alive2_req(0xa731, "goldenerl", node_type_normal, 6, 5) == erl_alive2_req);
}

TEST_CASE("epmd codec: ALIVE2_REQ defaults to a hidden node speaking version 6") {
  const std::string expected =
      "\x00\x13\x78\x15\xb3\x48\x00\x00\x06\x00\x06\x00\x06golden\x00\x00"s;
  CHECK(encode_alive2_req(5555, "golden") == expected);
  const std::string with_extra =
      "\x00\x19\x78\x15\xb7\x48\x00\x00\x06\x00\x06\x00\x09withextra\x00\x03xyz"s;
  CHECK(encode_alive2_req(5559, "withextra", node_type_hidden, 6, 6, "xyz") == with_extra);
}

TEST_CASE("epmd codec: PORT_PLEASE2_REQ and NAMES_REQ match erl and epmd -names") {
  CHECK(encode_port_please2_req("golden") == erl_port_please2_req);
  CHECK(encode_names_req() == epmd_names_req);
}

TEST_CASE("epmd codec: ALIVE2_X_RESP gives the 32-bit creation") {
  feed_every_way(alive2_x_resp_ok, decode_alive2_resp, [](auto r) {
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK(**r == 0x6b06b746u);
  });
}

TEST_CASE("epmd codec: ALIVE2_RESP (older epmd) gives the 16-bit creation") {
  feed_every_way(alive2_resp_ok, decode_alive2_resp, [](auto r) {
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK(**r == 2u);
  });
}

TEST_CASE("epmd codec: a refused ALIVE2 is already_exists") {
  for (const auto* bytes : {&alive2_x_resp_taken, &alive2_resp_taken}) {
    feed_every_way(*bytes, decode_alive2_resp, [](auto r) {
      check_error(r, Errc::already_exists, "already registered");
      CHECK(r.error().source == 1);
      CHECK(r.error().domain == ErrorDomain::epmd);
    });
  }
}

TEST_CASE("epmd codec: malformed ALIVE2 responses") {
  check_error(decode_alive2_resp(sp(port2_resp_missing)), Errc::protocol_error, "got tag 119");
  check_error(decode_alive2_resp(sp("\x00"s)), Errc::protocol_error, "got tag 0");
  check_error(decode_alive2_resp(sp(alive2_x_resp_ok + "\x00"s)), Errc::protocol_error,
              "1 unexpected bytes after the ALIVE2_X_RESP");
  check_error(decode_alive2_resp(sp(alive2_resp_ok + "zz")), Errc::protocol_error,
              "2 unexpected bytes after the ALIVE2_RESP");
  auto empty = decode_alive2_resp({});
  REQUIRE(empty.ok());
  CHECK_FALSE(empty->has_value());
}

TEST_CASE("epmd codec: PORT2_RESP gives the node") {
  feed_every_way(port2_resp_golden, decode_port2_resp, [](auto r) {
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK(**r == NodeInfo{5555, 72, 0, 6, 6, "golden", ""});
  });
  feed_every_way(port2_resp_extra, decode_port2_resp, [](auto r) {
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK(**r == NodeInfo{5559, 72, 0, 6, 6, "withextra", "xyz"});
  });
}

TEST_CASE("epmd codec: PORT2_RESP with a non-zero result is not_found") {
  feed_every_way(port2_resp_missing, decode_port2_resp,
                 [](auto r) { check_error(r, Errc::not_found, "no node"); });
}

TEST_CASE("epmd codec: malformed PORT2_RESP") {
  check_error(decode_port2_resp(sp(alive2_x_resp_ok)), Errc::protocol_error,
              "expected PORT2_RESP (119), got tag 118");
  check_error(decode_port2_resp(sp(port2_resp_missing + "\x00"s)), Errc::protocol_error,
              "unexpected bytes after the PORT2_RESP error");
  check_error(decode_port2_resp(sp(port2_resp_golden + "x")), Errc::protocol_error,
              "1 unexpected bytes after the PORT2_RESP");
  // Nlen 0, and Nlen over epmd's limit: rejected before reading the name.
  check_error(decode_port2_resp(sp("\x77\x00\x15\xb3\x48\x00\x00\x06\x00\x06\x00\x00"s)),
              Errc::protocol_error, "node name length 0");
  check_error(decode_port2_resp(sp("\x77\x00\x15\xb3\x48\x00\x00\x06\x00\x06\xff\xff"s)),
              Errc::protocol_error, "node name length 65535");
  check_error(decode_port2_resp(sp("\x77\x00\x15\xb3\x48\x00\x00\x06\x00\x06\x00\x01x\xff\xff"s)),
              Errc::protocol_error, "extra length 65535");
}

TEST_CASE("epmd codec: NAMES_RESP lists names and ports") {
  auto r = parse_names_resp(sp(names_resp));
  REQUIRE(r.ok());
  CHECK(*r == std::vector<NameEntry>{{"withextra", 5559}, {"oldver", 5557}, {"golden", 5555}});
  auto empty = parse_names_resp(sp(names_resp_empty));
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}

TEST_CASE("epmd codec: malformed NAMES_RESP") {
  check_error(parse_names_resp({}), Errc::protocol_error, "4-byte epmd port");
  check_error(parse_names_resp(sp("\x00\x00\xaa"s)), Errc::protocol_error, "4-byte epmd port");
  // Cut anywhere inside a line: truncated.
  for (std::size_t cut = 5; cut < names_resp.size(); ++cut) {
    if (names_resp[cut - 1] == '\n') continue;  // a cut between lines is a shorter, valid list
    INFO("cut at " << cut);
    check_error(parse_names_resp(sp(names_resp.substr(0, cut))), Errc::protocol_error, "truncated");
  }
  const std::string port = "\x00\x00\xaa\xac"s;
  check_error(parse_names_resp(sp(port + "hello\n")), Errc::protocol_error,
              "line 1 is not 'name <name> at port <port>'");
  check_error(parse_names_resp(sp(port + "name a at port 1\nname b at port x\n")),
              Errc::protocol_error, "line 2 has a bad port 'x'");
  check_error(parse_names_resp(sp(port + "name a at port 70000\n")), Errc::protocol_error,
              "bad port '70000'");
  check_error(parse_names_resp(sp(port + "name a at port -1\n")), Errc::protocol_error,
              "bad port '-1'");
  check_error(parse_names_resp(sp(port + "name a at port \n")), Errc::protocol_error,
              "bad port ''");
  check_error(parse_names_resp(sp(port + "name  at port 5\n")), Errc::protocol_error, "line 1");
}

TEST_CASE("epmd codec: alive names are checked before they go on the wire") {
  CHECK(check_alive_name("beamlink").ok());
  CHECK(check_alive_name(std::string(max_name_bytes, 'a')).ok());
  check_error(check_alive_name(""), Errc::invalid_argument, "empty");
  check_error(check_alive_name(std::string(max_name_bytes + 1, 'a')), Errc::invalid_argument,
              "at most 1020");
  check_error(check_alive_name("a@b"), Errc::invalid_argument, "only the part before '@'");
  check_error(check_alive_name("a\nb"), Errc::invalid_argument, "control character");
}
