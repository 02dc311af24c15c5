%% The receiving side of `scripts/bench dist`: a registered process `counter`
%% that counts {relay, Topic, Payload} messages. expect(N) arms it (through a
%% registered collector, since rpc calls run in short-lived processes);
%% wait(Timeout) returns {N, Microseconds} from the first to the Nth message.
%% local_ceiling(N) measures how fast `counter` can receive at all, with a
%% sender on its own node.
-module(bench_recv).
-export([start/0, expect/1, wait/1, local_ceiling/1, beam_send/3, payload/0]).

start() ->
    register(counter, spawn(fun idle/0)),
    ok.

payload() -> {relay, <<"topic">>, binary:copy(<<"x">>, 100)}.

idle() ->
    receive
        {expect, N, From} -> count(N, 0, 0, From)
    end.

count(N, N, T0, From) ->
    From ! {done, N, erlang:monotonic_time(microsecond) - T0},
    idle();
count(N, I, T0, From) ->
    receive
        {relay, _, _} when I =:= 0 -> count(N, 1, erlang:monotonic_time(microsecond), From);
        {relay, _, _} -> count(N, I + 1, T0, From)
    end.

expect(N) ->
    catch unregister(bench_collector),
    Collector = spawn(fun() -> collect(undefined) end),
    register(bench_collector, Collector),
    counter ! {expect, N, Collector},
    ok.

collect(Result) ->
    receive
        {done, N, Us} -> collect({N, Us});
        {get, From} when Result =/= undefined -> From ! {result, Result};
        {get, From} -> self() ! {get, From}, receive {done, N, Us} -> From ! {result, {N, Us}} end
    end.

wait(Timeout) ->
    bench_collector ! {get, self()},
    receive {result, R} -> R after Timeout -> timeout end.

local_ceiling(N) ->
    expect(N),
    Msg = payload(),
    spawn(fun() -> send_n(counter, Msg, N) end),
    wait(120000).

%% BEAM -> BEAM: called on the sending node.
beam_send(Node, N, Timeout) ->
    ok = rpc:call(Node, bench_recv, expect, [N]),
    Msg = payload(),
    send_n({counter, Node}, Msg, N),
    rpc:call(Node, bench_recv, wait, [Timeout]).

send_n(_, _, 0) -> ok;
send_n(To, Msg, N) -> To ! Msg, send_n(To, Msg, N - 1).
