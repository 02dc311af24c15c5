#!/usr/bin/env escript
%%! +pc unicode
%% Generates the golden terms embedded in term_text_test.cpp (kGolden). Run
%% with Debian's OTP 25:
%%
%%   escript tests/term/gen_term_golden.escript > /tmp/golden.inc
%%
%% and paste the rows into kGolden. Each row is
%%   {Text, Printed, Kind, Bytes}
%% where Bytes = term_to_binary(T, [{minor_version, 2}]) (atoms as
%% SMALL_ATOM_UTF8_EXT, floats as NEW_FLOAT_EXT: what ei writes and what a
%% DFLAG_UTF8_ATOMS peer sends) and Printed = io_lib:format("~0tp", [T]) on
%% a node started with +pc unicode (the %%! line above). Kind is
%%   kParse: Text is an Erlang literal; T = erl_parse:parse_term(Text), so
%%           parse_term(Text) must give Bytes and format_term(Bytes) Printed;
%%   kEval:  Text is an expression evaluated here (pids, refs, funs, ports);
%%           Printed is erl's, compared only where it names no local node.
%% Pids and references are built from handcrafted NEW_PID_EXT /
%% NEWER_REFERENCE_EXT bytes so their fields are fixed.
-mode(compile).

parse() ->
    Big = integer_to_list(1 bsl 2100),
    Tuple300 = lists:flatten(["{", lists:join(",", [integer_to_list(I) || I <- lists:seq(1, 300)]), "}"]),
    Atom255 = lists:duplicate(255, $é),
    ["ok", "'Foo'", "'a b'", "'and'", "'end'", "'if'", "'receive'", "'é'", "hello_World@1",
     "''", "'_x'", "'a-b'", "'it\\'s'", "'\\n'", "'Elixir.EWallet.Worker'", "'你好'", "true",
     "false", "nil", "undefined", "maybe", "'a\\x{80}'", "'" ++ Atom255 ++ "'",
     "0", "1", "255", "256", "-1", "-128", "2147483647", "2147483648", "-2147483648",
     "-2147483649", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
     "18446744073709551615", "18446744073709551616", "-18446744073709551616",
     "1267650600228229401496703205376", Big, "-" ++ Big, "16#FF", "-16#ff", "2#1010", "36#ZZ",
     "$a", "$\\n", "-$a", "$é", "$\\x{1F600}", "1_000_000",
     "1.0", "1.5", "0.1", "-2.5e-6", "1.0e10", "1.0e-10", "100.0", "1000.0", "123.456",
     "1.0e22", "5.0e-324", "1.7976931348623157e308", "0.0", "9007199254740992.0",
     "9007199254740991.0", "3.141592653589793", "2.0e-7", "0.0001", "1.2e-4", "-1.5e300",
     "\"abc\"", "\"\"", "\"a\\nb\\t\\\"q\\\"\\\\\"", "\"héllo\"", "\"你好\"", "[1,2,3]", "[0]",
     "\"\\e\\d\"", "\"\\^a\\s\\0\\177\"", "\"a\" \"b\"", "[104,105|x]",
     "[1000,2000]", "[-1]", "[1.5,2.0e-7]", "[$a|\"bc\"]",
     "<<>>", "<<\"text\">>", "<<1,2,3>>", "<<\"héllo\"/utf8>>", "<<\"héllo\">>",
     "<<\"你好\"/utf8>>", "<<\"a\\nb\">>", "<<\"\\\"\\\\\">>", "<<0>>", "<<255,254>>",
     "<<200,201>>", "<<\"a\",128>>", "<<16#EF,16#BF,16#BE>>", "<<1,2:3>>", "<<1:1>>",
     "<<\"abc\",1:3>>", "<<1:16>>", "<<-1:16>>", "<<258:16/little>>", "<<1:4,7:4>>",
     "<<\"é\"/utf8,0>>", "<<$a,$b>>",
     "[]", "[a|b]", "[1,2|c]", "[[1],[2]]", "[\"ab\",\"cd\"]", "[a,\"b\",<<\"c\">>]",
     "{}", "{a,1}", "{ok,{error,[]}}", Tuple300,
     "#{}", "#{a => 1}", "#{a => 1,b => #{c => []}}", "#{1 => x,<<\"k\">> => [1,2]}",
     "#{{a,1} => [],\"s\" => 1.5}", "[{a,#{b => [c,{d}]}}]"].

eval() ->
    ["binary_to_term(<<131,88,119,16,\"ewallet@10.0.0.1\",77:32,3:32,16#5f3a1b2c:32>>)",
     "binary_to_term(<<131,90,3:16,119,16,\"ewallet@10.0.0.1\",16#5f3a1b2c:32,16#11:32,16#22:32,16#33:32>>)",
     "binary_to_term(<<131,89,119,16,\"ewallet@10.0.0.1\",5:32,16#5f3a1b2c:32>>)",
     "binary_to_term(<<131,120,119,16,\"ewallet@10.0.0.1\",16#100000001:64,7:32>>)",
     "fun lists:map/2", "fun 'Elixir.Enum':map/2", "fun (X) -> X end",
     "{binary_to_term(<<131,88,119,16,\"ewallet@10.0.0.1\",77:32,3:32,16#5f3a1b2c:32>>),"
     " binary_to_term(<<131,90,3:16,119,16,\"ewallet@10.0.0.1\",16#5f3a1b2c:32,16#11:32,16#22:32,16#33:32>>)}"].

main(_) ->
    io:setopts([{encoding, unicode}]),
    [row(T, kParse, parse_text(T)) || T <- parse()],
    [row(T, kEval, eval_text(T)) || T <- eval()],
    ok.

parse_text(Text) ->
    {ok, Tokens, _} = erl_scan:string(Text ++ "."),
    {ok, Term} = erl_parse:parse_term(Tokens),
    Term.

eval_text(Text) ->
    {ok, Tokens, _} = erl_scan:string(Text ++ "."),
    {ok, [Expr]} = erl_parse:parse_exprs(Tokens),
    {value, Term, _} = erl_eval:expr(Expr, []),
    Term.

row(Text, Kind, Term) ->
    Bytes = binary_to_list(term_to_binary(Term, [{minor_version, 2}])),
    Printed = io_lib:format("~0tp", [Term]),
    io:format("    {R\"erl(~ts)erl\", R\"erl(~ts)erl\", ~s,~n     {~s}},~n",
              [Text, Printed, Kind, lists:join(",", [integer_to_list(B) || B <- Bytes])]).
