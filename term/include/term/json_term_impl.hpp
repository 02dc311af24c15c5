// Private: the simdjson DOM walk shared by json_term.cpp and broadcast_api.cpp
// (which converts one member of an already parsed document).
#pragma once

#include <simdjson.h>

#include <string>

#include "term/json_term.hpp"

namespace beamlink::term {

struct JsonToTerm::Impl {
  JsonTermOptions options;
  simdjson::dom::parser parser;

  explicit Impl(JsonTermOptions o);
  // Parses `json` (size and depth checked); the element lives until the next parse.
  Result<simdjson::dom::element> parse(std::string_view json);
  // Writes the term for `e` found at nesting `depth`.
  Result<void> write(simdjson::dom::element e, term::TermWriter& out, std::size_t depth,
                     std::string_view key = {});
};

// A readable message for a simdjson error, with the limit it hit.
std::string json_error_reason(simdjson::error_code code, const JsonTermOptions& options);

}  // namespace beamlink::term
