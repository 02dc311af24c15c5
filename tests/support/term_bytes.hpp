// An encoded term as bytes and bytes as the span the decoders take, for unit
// tests of the cores that read and write terms.
#pragma once

#include <span>
#include <string>

#include "term/term.hpp"

namespace beamlink::test {

// What `w` has written, as a string.
inline std::string bytes(const term::TermWriter& w) {
  return std::string(w.bytes().data(), w.bytes().size());
}

// `s`'s bytes as a span (valid while `s` is).
inline std::span<const char> span(const std::string& s) {
  return {s.data(), s.size()};
}

}  // namespace beamlink::test
