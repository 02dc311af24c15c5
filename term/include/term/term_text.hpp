// Erlang term syntax: parse text into the external term format, and print
// encoded terms as Erlang text.
//
// parse_term() reads what an Erlang shell user types for a literal term; it
// is how `beamlink rpc NODE MOD FUN ARGS` turns ARGS into terms (as
// `erl_call -a` does). format_term() prints a term on one line the way
// `io_lib:format("~0tp", [T])` does on an `erl +pc unicode` node, so rpc
// results look like what an Erlang developer sees in the shell.
//
// Thread: pure functions; use them anywhere.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::term {

// Nesting deeper than this in parsed text is refused (the parser recurses).
inline constexpr int kMaxParseDepth = 1000;

// Parses exactly one term (surrounding whitespace, `%` comments and one
// trailing `.` allowed) and appends its encoding to `out`.
//
// Accepted syntax, as in Erlang:
//   atoms        ok  'quoted atom'  'Elixir.Foo'  (reserved words such as
//                `end` must be quoted, as in Erlang)
//   integers     42  -7  16#FF  2#1010  1_000_000  $a  $\n  any size
//   floats       1.5  -2.5e-3  1.0e10   (a digit is needed on both sides
//                of the point)
//   strings      "abc\n\x{4F60}"  adjacent strings are concatenated; a
//                string is a list of character codes (STRING_EXT when all
//                are bytes)
//   binaries     <<>>  <<"text">>  <<"héllo"/utf8>>  <<1,2,3>>  <<1:4,7:4>>
//                Without /utf8 each character must fit in a byte (Erlang
//                would silently truncate; we refuse). Sizes are in bits; a
//                total that is not a multiple of 8 gives a bitstring.
//   lists        []  [1,2,3]  [a|b]  [1,2|T]
//   tuples       {}  {a,1}
//   maps         #{}  #{k => v}  (encoded in text order; a repeated key
//                keeps its last value, as in Erlang)
// Pids, references, ports and funs have no literal syntax and are refused.
//
// Integer lists of bytes are encoded as STRING_EXT, integers in the smallest
// form, atoms as (SMALL_)ATOM_UTF8_EXT and floats as NEW_FLOAT_EXT: the same
// bytes as term_to_binary(T, [{minor_version, 2}]) for everything but maps
// whose keys are not written in Erlang's term order.
//
// Errors: Errc::invalid_argument, with the 1-based column and what was
// expected: "at column 7: expected ',' or ']'". On error `out` may hold a
// partial encoding; discard it.
Result<void> parse_term(std::string_view text, TermWriter& out);

// Parses the ARGS of an rpc into one proper list appended to `out`, and
// sets *count (if not null) to its length. ARGS may be
//   - empty or only whitespace: [] (no arguments);
//   - one Erlang list, `[1, <<"x">>]`: its elements are the arguments (as
//     `erl_call -a "mod fun [1, <<\"x\">>]"`); to pass a single list
//     argument, wrap it: `[[1,2,3]]`;
//   - a comma-separated sequence, `1, <<"x">>`: each term is an argument.
// Errors as parse_term().
Result<void> parse_terms(std::string_view text, TermWriter& out, int* count = nullptr);

// Prints the next term of `r` on one line and advances past it. The term is
// validated once with term_extent(); printing is iterative, so nesting depth
// costs no stack. As `~0tp` under `+pc unicode`:
//   - lists of printable characters print as "strings"; other lists as
//     [1,2,3], improper ones as [a|b];
//   - binaries print as <<"text">>, as <<"héllo"/utf8>> when valid UTF-8
//     with multibyte characters, and as <<1,2,3>> otherwise; bitstrings as
//     <<1,2:3>>;
//   - atoms are quoted when needed ('Foo', 'a b', 'end');
//   - floats in the shortest form that reads back exactly (1.0, 0.1,
//     1.0e10, -2.5e-6); integers of any size in decimal;
//   - maps as #{k => v,...} in encoding order.
// Without a node table, identifiers name their node:
//   #Pid<node.num.serial>  #Ref<node.c.b.a>  #Port<node.id>
//   #Fun<module.index.uniq>  fun m:f/a
// Errors: Errc::bad_term for a malformed or truncated term (the reader does
// not advance), a NaN or infinite float, an atom that is not valid UTF-8,
// or an integer over 64 KiB.
Result<std::string> format_term(TermReader& r);

// Building blocks of format_term(), shared with term_json.
//
// A float as Erlang's io_lib:format("~p") prints it (shortest round trip;
// "1.0e3" but "100.0"); finite values only.
std::string format_float(double v);
// An atom (UTF-8 name) as Erlang prints it, quoted and escaped when needed.
std::string format_atom(std::string_view utf8_name);
// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or values over
// U+10FFFF), as Erlang's <<_/utf8>> matching accepts.
bool is_valid_utf8(std::string_view s);

}  // namespace beamlink::term
