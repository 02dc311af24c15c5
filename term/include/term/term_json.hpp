// Terms to JSON: the reverse of the relay's JSON → term mapping (DESIGN.md,
// "Relay contract"), for printing rpc results and relaying cluster messages
// to non-BEAM services.
//
//   map                   → object; keys that are binaries, atoms or
//                           character lists become their text, any other key
//                           its Erlang text (format_term): 1 → "1",
//                           {a,1} → "{a,1}". Keys keep their encoding order;
//                           distinct keys with the same text (a and <<"a">>)
//                           give duplicate names.
//   binary                → string when valid UTF-8, else
//                           {"$binary":"<base64>"}; a bitstring is
//                           {"$bitstring":"<<1,2:3>>"}
//   integer (any size)    → number, all digits kept
//   float                 → number, shortest round-trip form (1.0e10)
//   true / false          → true / false
//   nil / undefined       → null
//   other atom            → {"$atom":"name"}
//   tuple                 → {"$tuple":[...]}
//   proper list           → array. A character list ("abc" in Erlang) is a
//                           list of integers and stays [97,98,99] unless
//                           JsonOptions::charlists_as_strings is set: Elixir
//                           sends text as binaries, and a list of small
//                           numbers is often just numbers.
//   improper list [a|b]   → {"$improper":[elements..., tail]}
//   pid, ref, port, fun   → {"$pid":"#Pid<node.1.0>"}, {"$ref":"#Ref<...>"},
//                           {"$port":"#Port<...>"}, {"$fun":"fun m:f/1"}:
//                           the format_term() text, tagged
//
// Strings are escaped as RFC 8259 requires (quote, backslash, control
// characters); non-ASCII passes through as UTF-8. The output is one line.
//
// Thread: pure functions; use them anywhere.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::term {

struct JsonOptions {
  // Write a proper list of printable characters as a JSON string.
  bool charlists_as_strings = false;
  // Integers whose magnitude is larger are refused (bad_term) instead of
  // written: decimal conversion is quadratic in the size, and the relay
  // converts cluster broadcasts on its loop. 4096 bytes is 9,865 digits,
  // far past any JSON reader's numbers (a 64 KiB one took 0.54 s).
  std::size_t max_integer_bytes = 4096;
};

// Converts the next term of `r` and advances past it. The term is validated
// once with term_extent(); the walk is iterative, so nesting depth costs no
// stack. Errors: Errc::bad_term for a malformed or truncated term (the
// reader does not advance), and the format_term() errors.
Result<std::string> to_json(TermReader& r, const JsonOptions& options = {});

// `s` as a quoted JSON string; `s` must be UTF-8.
std::string json_quote(std::string_view s);
// The same, appended to `out`.
void append_json_quoted(std::string& out, std::string_view s);

}  // namespace beamlink::term
