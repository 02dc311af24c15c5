#!/usr/bin/env escript
%% Generates the golden control-message bytes of control_golden.hpp (used by
%% control_test.cpp and framer_test.cpp). Run with Debian's OTP 25:
%%
%%   escript tests/dist/gen_control_golden.escript
%%
%% and paste the output into that header's generated table. Pids and references are made
%% from handcrafted NEW_PID_EXT / NEWER_REFERENCE_EXT bytes so their node,
%% number, serial and creation are fixed. term_to_binary uses
%% {minor_version, 2}: atoms as SMALL_ATOM_UTF8_EXT, which is what a peer
%% with DFLAG_UTF8_ATOMS sends on the wire and what ei encodes.
-mode(compile).

main(_) ->
    Node = <<"ewallet@10.0.0.1">>,
    Ours = <<"beamlink@127.0.0.1">>,
    EP = binary_to_term(<<131, 88, 119, (byte_size(Node)), Node/binary,
                          77:32, 3:32, 16#5f3a1b2c:32>>),
    BP = binary_to_term(<<131, 88, 119, (byte_size(Ours)), Ours/binary,
                          1:32, 0:32, 16#12345678:32>>),
    R = binary_to_term(<<131, 90, 3:16, 119, (byte_size(Node)), Node/binary,
                         16#5f3a1b2c:32, 16#11:32, 16#22:32, 16#33:32>>),
    A = binary_to_term(<<131, 90, 3:16, 119, (byte_size(Ours)), Ours/binary,
                         16#12345678:32, 16#a1:32, 16#b2:32, 16#c3:32>>),
    Reason = {shutdown, <<"bye">>},
    TT = {1, my_label, 42, EP, 7},
    W = 'Elixir.EWallet.Worker',
    Big = (1 bsl 40) + 7,
    Controls =
        [{"kSend", "{2, '', BP}", {2, '', BP}},
         {"kSendTt", "{12, '', BP, TT}", {12, '', BP, TT}},
         {"kRegSend", "{6, EP, '', net_kernel}", {6, EP, '', net_kernel}},
         {"kRegSendTt", "{16, EP, '', net_kernel, TT}", {16, EP, '', net_kernel, TT}},
         {"kLink", "{1, EP, BP}", {1, EP, BP}},
         {"kUnlink", "{4, EP, BP}", {4, EP, BP}},
         {"kNodeLink", "{5}", {5}},
         {"kGroupLeader", "{7, EP, BP}", {7, EP, BP}},
         {"kExit", "{3, EP, BP, Reason}", {3, EP, BP, Reason}},
         {"kExitTt", "{13, EP, BP, TT, Reason}", {13, EP, BP, TT, Reason}},
         {"kExit2", "{8, EP, BP, Reason}", {8, EP, BP, Reason}},
         {"kExit2Tt", "{18, EP, BP, TT, Reason}", {18, EP, BP, TT, Reason}},
         {"kMonitorP", "{19, EP, BP, R}", {19, EP, BP, R}},
         {"kMonitorPName", "{19, EP, W, R}", {19, EP, W, R}},
         {"kDemonitorP", "{20, EP, BP, R}", {20, EP, BP, R}},
         {"kDemonitorPName", "{20, EP, W, R}", {20, EP, W, R}},
         {"kMonitorPExit", "{21, BP, EP, R, Reason}", {21, BP, EP, R, Reason}},
         {"kMonitorPExitName", "{21, W, EP, R, normal}", {21, W, EP, R, normal}},
         {"kSendSender", "{22, EP, BP}", {22, EP, BP}},
         {"kSendSenderTt", "{23, EP, BP, TT}", {23, EP, BP, TT}},
         {"kPayloadExit", "{24, EP, BP}", {24, EP, BP}},
         {"kPayloadExitTt", "{25, EP, BP, TT}", {25, EP, BP, TT}},
         {"kPayloadExit2", "{26, EP, BP}", {26, EP, BP}},
         {"kPayloadExit2Tt", "{27, EP, BP, TT}", {27, EP, BP, TT}},
         {"kPayloadMonitorPExit", "{28, W, EP, R}", {28, W, EP, R}},
         {"kSpawnRequest", "{29, R, EP, EP, {m, f, 1}, [monitor]}",
          {29, R, EP, EP, {m, f, 1}, [monitor]}},
         {"kSpawnRequestTt", "{30, R, EP, EP, {m, f, 1}, [monitor], TT}",
          {30, R, EP, EP, {m, f, 1}, [monitor], TT}},
         {"kSpawnReply", "{31, R, BP, 0, EP}", {31, R, BP, 0, EP}},
         {"kSpawnReplyTt", "{32, R, BP, 0, EP, TT}", {32, R, BP, 0, EP, TT}},
         {"kAliasSend", "{33, EP, A}", {33, EP, A}},
         {"kAliasSendTt", "{34, EP, A, TT}", {34, EP, A, TT}},
         {"kUnlinkId", "{35, 5, EP, BP}", {35, 5, EP, BP}},
         {"kUnlinkIdBig", "{35, (1 bsl 40) + 7, EP, BP}", {35, Big, EP, BP}},
         {"kUnlinkIdAck", "{36, 5, BP, EP}", {36, 5, BP, EP}},
         %% Messages carried after a control.
         {"kMsgIsAuth", "{'$gen_call', {EP, [alias | R]}, {is_auth, 'beamlink@127.0.0.1'}}",
          {'$gen_call', {EP, [alias | R]}, {is_auth, 'beamlink@127.0.0.1'}}},
         {"kMsgHello", "<<\"hello\">>", <<"hello">>},
         {"kReason", "Reason", Reason},
         {"kTraceToken", "TT", TT}],
    io:format("// EP = ewallet@10.0.0.1 pid 77.3 creation 0x5f3a1b2c; "
              "BP = beamlink@127.0.0.1 pid 1.0 creation 0x12345678~n"
              "// R = ewallet@10.0.0.1 ref {0x11,0x22,0x33} creation 0x5f3a1b2c; "
              "A = beamlink@127.0.0.1 ref {0xa1,0xb2,0xc3} creation 0x12345678~n"
              "// Reason = {shutdown, <<\"bye\">>}; TT = {1, my_label, 42, EP, 7}; "
              "W = 'Elixir.EWallet.Worker'~n"),
    lists:foreach(
      fun({Name, Desc, Term}) ->
              Bin = term_to_binary(Term, [{minor_version, 2}]),
              Hex = lists:flatten([io_lib:format("~2.16.0b", [B]) || <<B>> <= Bin]),
              io:format("// ~s~nconstexpr std::string_view ~s =~n    \"~s\";~n",
                        [Desc, Name, Hex])
      end, Controls).
