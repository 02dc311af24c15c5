// The external term format from a peer: the bounds-checked walker, then the
// Erlang text printer and the JSON printer over whatever it accepts.
#include <cstddef>
#include <cstdint>
#include <string>

#include "term/term.hpp"
#include "term/term_json.hpp"
#include "term/term_text.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const char> bytes(reinterpret_cast<const char*>(data), size);
  if (auto r = term::TermReader::from_external(bytes)) (void)term::format_term(*r);
  if (auto r = term::TermReader::from_external(bytes)) (void)term::to_json(*r);
  return 0;
}
