// The one error for bytes that are not a valid external term, shared by the
// reader (term.cpp) and the walker (term_walker.cpp): Errc::bad_term with the
// byte offset where decoding stopped.
#pragma once

#include <cstddef>
#include <string>

#include "common/result.hpp"

namespace beamlink::term::detail {

inline Error bad_term_at(const std::string& what, std::size_t at) {
  return make_error(Errc::bad_term, what + " at byte " + std::to_string(at));
}

}  // namespace beamlink::term::detail
