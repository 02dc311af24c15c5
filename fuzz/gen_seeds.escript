#!/usr/bin/env escript
%% Writes the binary seed corpora of the fuzz targets from real Erlang:
%% term_to_binary, the distribution's frames and handshake messages, epmd's
%% answers and pg's and Phoenix.PubSub's messages, as a BEAM writes them.
%%   escript fuzz/gen_seeds.escript fuzz/corpus
%% (The text corpora -- HTTP, JSON, channel messages, CLI terms -- are files
%% written by hand in fuzz/corpus.)
-mode(compile).

main([Dir]) ->
    Pid = self(),
    Ref = make_ref(),
    Port = hd(erlang:ports()),
    Fun = fun(X) -> X + 1 end,
    Terms = [ok, [], <<>>, 42, -1, 1 bsl 70, -(1 bsl 200), 3.14, -0.0, 1.0e300,
             "a string", [1, 2 | improper], {a, {b, {c}}}, #{}, #{a => 1, <<"b">> => [2]},
             <<1, 2, 3:4>>, 'ünïcödé', list_to_atom(lists:duplicate(255, $a)),
             Pid, Ref, Port, Fun, fun lists:reverse/1,
             #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<"room:a">>,
               event => <<"new">>, payload => #{<<"body">> => <<"hi">>, n => 1}},
             lists:seq(1, 300), list_to_tuple(lists:seq(1, 300)),
             binary:copy(<<"x">>, 1000)],
    write(Dir, "term", [term_to_binary(T) || T <- Terms] ++
                       [term_to_binary(T, [compressed]) || T <- [lists:seq(1, 300)]] ++
                       [term_to_binary(T, [{minor_version, 1}]) || T <- [3.14]]),
    %% Frames after the handshake: length, 112, control, message.
    Frame = fun(Control, Msg) ->
                    Body = case Msg of
                               none -> <<112, (term_to_binary(Control))/binary>>;
                               _ -> <<112, (term_to_binary(Control))/binary,
                                      (term_to_binary(Msg))/binary>>
                           end,
                    <<(byte_size(Body)):32, Body/binary>>
            end,
    Frames = [Frame({6, Pid, '', net_kernel}, {'$gen_call', {Pid, Ref}, {is_auth, node()}}),
              Frame({2, '', Pid}, {relay, <<"topic">>, binary:copy(<<"p">>, 100)}),
              Frame({1, Pid, Pid}, none), Frame({3, Pid, Pid, normal}, none),
              Frame({4, Pid, Pid}, none), Frame({8, Pid, Pid, kill}, none),
              Frame({19, Pid, Pid, Ref}, none), Frame({20, Pid, rex, Ref}, none),
              Frame({21, Pid, Pid, Ref, noproc}, none), Frame({35, 7, Pid, Pid}, none),
              Frame({36, 7, Pid, Pid}, none), Frame({33, Pid, Ref}, hello),
              Frame({22, Pid, '', rex, 0}, {hello}), Frame({99, x}, none),
              <<0:32>>],
    write(Dir, "dist_frames", [<<Seed, F/binary>> || {Seed, F} <- lists:zip(lists:seq(1, length(Frames)), Frames)] ++
                               [<<0, (iolist_to_binary(Frames))/binary>>]),
    %% The handshake as the initiator receives it (version 6, OTP 23+): status,
    %% challenge, challenge ack for cookie "cookie" and our challenge 16#11223344.
    Msg = fun(B) -> <<(byte_size(B)):16, B/binary>> end,
    Name = <<"peer@127.0.0.1">>,
    Flags = 16#3FFFFFFFF,
    Challenge = Msg(<<$N, Flags:64, 16#55667788:32, 9:32, (byte_size(Name)):16, Name/binary>>),
    Digest = erlang:md5(["cookie", integer_to_list(16#11223344)]),
    Ok = [Msg(<<"sok">>), Challenge, Msg(<<$a, Digest/binary>>)],
    write(Dir, "handshake", [<<1, (iolist_to_binary(Ok))/binary>>,
                             <<7, (iolist_to_binary(Ok))/binary>>,
                             <<0, (Msg(<<"snok">>))/binary>>,
                             <<0, (Msg(<<"salive">>))/binary>>,
                             <<0, (Msg(<<"snot_allowed">>))/binary>>,
                             <<3, (iolist_to_binary([Msg(<<"sok">>), Challenge, Msg(<<$a, 0:128>>)]))/binary>>,
                             %% version 5 (OTP 21/22): 'n', version 5, 32-bit flags
                             <<2, (iolist_to_binary([Msg(<<"sok">>),
                                                     Msg(<<$n, 5:16, 16#7FFFD:32, 16#55667788:32, Name/binary>>)]))/binary>>]),
    Port2 = fun(N) -> <<119, 0, 6900:16, 77, 0, 6:16, 5:16, (byte_size(N)):16, N/binary, 0:16>> end,
    write(Dir, "epmd", [<<118, 0, 123456:32>>, <<121, 0, 3:16>>, <<121, 1, 0:16>>,
                        Port2(<<"ewallet">>), <<119, 1>>,
                        <<4369:32, "name ewallet at port 6900\nname beamlink at port 6901\n">>,
                        <<4369:32>>]),
    Group = 'Elixir.EWalletAPI.PubSub.Adapter',
    write(Dir, "pubsub", [term_to_binary(M) ||
                             M <- [{discover, Pid},
                                   {'$gen_cast', {sync, Pid, [{Group, [Pid]}, {other, [Pid, Pid]}]}},
                                   {join, Pid, Group, [Pid]},
                                   {leave, Pid, [Pid], [Group]},
                                   {forward_to_local, <<"room:a">>,
                                    #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',
                                      topic => <<"room:a">>, event => <<"new">>,
                                      payload => #{<<"a">> => 1}},
                                    'Elixir.Phoenix.Channel.Server'},
                                   {forward_to_local, fastlane, none, <<"room:a">>, hello},
                                   {'$gen_call', {Pid, Ref}, which_groups}]]),
    ok.

write(Dir, Target, Seeds) ->
    Sub = filename:join(Dir, Target),
    ok = filelib:ensure_dir(filename:join(Sub, "x")),
    lists:foreach(fun({I, B}) ->
                          ok = file:write_file(filename:join(Sub, io_lib:format("seed-~3..0b", [I])), B)
                  end, lists:zip(lists:seq(1, length(Seeds)), Seeds)).
