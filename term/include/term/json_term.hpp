// JSON to terms: the relay's inbound mapping (DESIGN.md, "Relay contract"),
// the reverse of term::to_json.
//
//   object                 → map; keys are binaries, or atoms with
//                            JsonTermOptions::atom_keys. Keys beginning with
//                            '$' are reserved for the explicit forms below;
//                            a duplicate key is an error (binary_to_term
//                            rejects a map with duplicate keys).
//   {"$atom": "ok"}        → the atom ok (the object's only key)
//   {"$tuple": [a, b]}     → the tuple {A, B} (the object's only key)
//   string                 → binary (UTF-8; simdjson validates it)
//   integer                → integer, from -2^63 to 2^64-1; beyond that an
//                            error ("integer out of range"), never a bignum
//                            made up from a float
//   float                  → float (finite; 1e400 is an error)
//   true / false / null    → the atoms true / false / nil
//   array                  → proper list ([] for an empty one)
//
// Errors carry a `reason` for a 400 body. Errc::bad_json: the text is not
// JSON (syntax, UTF-8, a number out of range) or breaks a limit of the
// document: its size (max_size bytes) or nesting (max_depth arrays and
// objects). Errc::invalid_argument: valid JSON the mapping refuses (a
// duplicate key, a bad "$" form, an atom over 255 characters).
//
// Thread: a JsonToTerm holds a reusable simdjson parser; use one per thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::term {

struct JsonTermOptions {
  std::size_t max_size = 1u << 20;  // bytes of JSON text
  std::size_t max_depth = 64;       // nested arrays and objects (capped at 1024)
  // Map keys become atoms (eWallet's serializer reads status, data, error and
  // reason as atoms).
  bool atom_keys = false;
  // Keys whose string values become atoms: {"status": "ok"} with "status"
  // here gives #{status => ok} (with atom_keys), as eWallet expects.
  std::vector<std::string> atom_value_keys;
};

class JsonToTerm {
 public:
  explicit JsonToTerm(JsonTermOptions options = {});
  ~JsonToTerm();
  JsonToTerm(JsonToTerm&&) noexcept;
  JsonToTerm& operator=(JsonToTerm&&) noexcept;

  // Appends the term for `json` to `out` (which may already hold a version
  // byte or other terms). On error `out` may hold a partial term: discard it.
  Result<void> convert(std::string_view json, term::TermWriter& out);
  // The term for `json`, starting with the version byte.
  Result<term::TermWriter> convert(std::string_view json);

  const JsonTermOptions& options() const noexcept;

  // For the relay's own sources (Impl is defined in src/).
  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// One-shot convenience: a JsonToTerm for this call only.
Result<term::TermWriter> json_to_term(std::string_view json, const JsonTermOptions& options = {});

}  // namespace beamlink::term
