// Private to the term library: the one walk over an encoded term that both
// format_term() (Erlang text, term_text.cpp) and to_json() (term_json.cpp)
// are visitors of.
//
// walk_term() validates the term once with term_extent(), so every header
// and length it reads lies inside the buffer, and checks what term_extent()
// does not (bignum sizes, float values, bit counts, atom UTF-8, the fields
// inside funs). It walks iteratively (nesting depth costs no stack) and hands
// the visitor decoded pieces:
//   - leaves: number(), atom(), binary(), opaque();
//   - containers: begin(), separator() before every element but the first
//     (key_value: between a map key and its value), improper_tail() before a
//     list's tail that is not [], end();
//   - before each term, take(): a visitor that writes a whole term its own
//     way (a list of characters as a string, a JSON object key) returns where
//     that term ends and the walker skips it.
// A STRING_EXT the visitor does not take is walked as a list of integers, a
// [] (NIL_EXT) as a list without elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::term {

// The term at `at` of the validated bytes [b, b + size).
struct TermAt {
  const unsigned char* b;
  std::size_t size;
  std::size_t at;

  unsigned char tag() const { return b[at]; }
  const char* chars() const { return reinterpret_cast<const char*>(b); }
};

enum class Container { tuple, list, map };

// Terms without a JSON counterpart; both forms show their Erlang text.
enum class Opaque { bitstring, pid, port, ref, fun };
std::string_view opaque_name(Opaque kind);  // "bitstring", "pid", ...

class TermVisitor {
 public:
  virtual ~TermVisitor() = default;

  // Called before the walker decodes a term (`key`: a map key). Return the
  // end of the term to have written it whole, std::nullopt to let the walker
  // go on, or an error to stop the walk.
  virtual Result<std::optional<std::size_t>> take(const TermAt& term, bool key) = 0;

  // An integer of any size or a float, as Erlang prints it (also valid JSON).
  virtual void number(std::string_view text) = 0;
  virtual void atom(std::string_view utf8_name) = 0;
  virtual void binary(std::string_view bytes) = 0;
  virtual void opaque(Opaque kind, std::string_view erlang_text) = 0;

  virtual void begin(Container c) = 0;
  virtual void separator(bool key_value) = 0;
  virtual void improper_tail() = 0;
  virtual void end(Container c, bool improper) = 0;

  // The largest integer magnitude, in bytes, this visitor takes: writing
  // one in decimal costs time quadratic in its size. A larger one stops the
  // walk with bad_term.
  virtual std::size_t max_integer_bytes() const { return 65536; }
};

// Walks the next term of `r` and advances `r` past it; on error `r` stays.
// Errors: Errc::bad_term for a malformed or truncated term, a NaN or
// infinite float, an atom that is not valid UTF-8, an integer over the
// visitor's max_integer_bytes(),
// and the visitor's.
Result<void> walk_term(TermReader& r, TermVisitor& v);

// Helpers for visitors.
//
// The name of the atom at *at as UTF-8 (a Latin-1 atom converted), advancing
// *at past it. bad_term when the term is no atom or a UTF-8 atom's name is
// not UTF-8.
Result<std::string> read_atom_name(const unsigned char* b, std::size_t* at);
// A LIST_EXT at `at` whose elements are all integers that `ok` accepts (a
// negative one is passed as 0xFFFFFFFF), ending in []: true, the codes in
// *codes and the end of the list in *end. False otherwise.
bool read_char_list(const unsigned char* b, std::size_t at, bool (*ok)(std::uint32_t),
                    std::vector<std::uint32_t>* codes, std::size_t* end);

// Erlang text pieces, defined in term_text.cpp.
//
// io_lib:printable_unicode_list/1's characters.
bool printable_char(std::uint32_t c);
// A binary as ~0tp prints it: <<"text">>, <<"héllo"/utf8>> or <<1,2,3>>.
void append_binary_text(std::string& out, std::string_view bytes);

}  // namespace beamlink::term
