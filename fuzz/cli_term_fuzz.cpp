// The CLI's Erlang term parser (rpc arguments): whatever it accepts must print
// back and parse again to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "term/term.hpp"
#include "term/term_text.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  term::TermWriter w;
  if (!term::parse_term(text, w)) return 0;
  auto bytes = w.bytes();
  auto r = term::TermReader::from_external({bytes.data(), bytes.size()});
  if (!r) std::abort();  // the parser wrote a term the reader refuses
  auto printed = term::format_term(*r);
  if (!printed) return 0;  // a term the printer refuses (too large) is fine
  term::TermWriter again;
  if (!term::parse_term(*printed, again)) std::abort();  // the printer wrote unparseable text
  return 0;
}
