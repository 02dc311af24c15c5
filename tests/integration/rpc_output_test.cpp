// What an rpc prints comes back to beamlink, its group leader, as io
// requests; `beamlink rpc` prints it before the result, as erl_call
// -fetch_stdout does. ei offers no DFLAG_UNICODE_IO, so the BEAM sends the
// old request forms as well as the new: one test per form.
#include <doctest/doctest.h>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

struct Node1 {
  Epmd epmd;
  ErlNode t1;
  Node1() : t1(erl_options("t1@127.0.0.1", epmd.port())) {}
  RunResult rpc(const std::string& mod, const std::string& fun, const std::string& args) {
    return run({beamlink_bin(), "rpc", "t1@127.0.0.1", mod, fun, args}, 60s,
               beamlink_env(epmd.port()));
  }
};

}  // namespace

TEST_CASE("rpc output: the old form put_chars Chars is printed before the result") {
  Node1 n;
  // io:put_chars with a list: io.erl sends {put_chars, <<"hello\n">>} to a
  // server without the unicode-io flag.
  auto r = n.rpc("io", "put_chars", "[\"hello\\n\"]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "hello\nok\n");
  // Latin1 text becomes UTF-8.
  r = n.rpc("io", "put_chars", "[[$c, $a, $f, 233, $\\n]]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "caf\xC3\xA9\nok\n");
  // nl is an old put_chars too.
  r = n.rpc("io", "nl", "[]");
  CHECK(r.out == "\nok\n");
}

TEST_CASE("rpc output: the new form put_chars Encoding Chars - unicode and latin1") {
  Node1 n;
  // A binary goes through unchanged: {put_chars, unicode, Bin}.
  auto r = n.rpc("io", "put_chars", "[<<\"h\xC3\xA9llo\\n\"/utf8>>]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "h\xC3\xA9llo\nok\n");
  r = n.rpc("io", "request", "[{put_chars, latin1, <<\"caf\", 233, \"\\n\">>}]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "caf\xC3\xA9\nok\n");
}

TEST_CASE("rpc output: the old form put_chars M F A is applied on the node - io:format") {
  Node1 n;
  auto r = n.rpc("io", "format", "[\"x=~p y=~s~n\", [42, \"abc\"]]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "x=42 y=abc\nok\n");
  r = n.rpc("io", "write", "[{a, 1}]");
  CHECK(r.out == "{a,1}ok\n");
  // M:F(A) failing on the node: the io request's reply is an error, the
  // call fails, beamlink reports it and does not hang.
  r = n.rpc("io", "format", "[\"~p ~p~n\", [1]]");
  CHECK(r.code == 1);
  CHECK(r.err.find("badrpc") != std::string::npos);
}

TEST_CASE("rpc output: the new form put_chars Encoding M F A is applied on the node") {
  Node1 n;
  auto r = n.rpc("io", "request",
                 "[{put_chars, unicode, io_lib, format, [\"~ts!~n\", [<<\"h\xC3\xA9\"/utf8>>]]}]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "h\xC3\xA9!\nok\n");
}

TEST_CASE("rpc output: requests print each request in order") {
  Node1 n;
  auto r = n.rpc("io", "requests",
                 "[[{put_chars, unicode, <<\"a\">>}, nl, {format, \"~p~n\", [b]}, "
                 "{put_chars, unicode, \"c\\n\"}]]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "a\nb\nc\nok\n");
}

TEST_CASE("rpc output: input requests are refused as by the group leader of erl_call") {
  Node1 n;
  auto r = n.rpc("io", "get_line", "[\"> \"]");
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "{error,enotsup}\n");
}
