// JSON from a non-BEAM service, mapped to a term (both key modes), and what
// it accepts printed back to JSON and Erlang text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "term/json_term.hpp"
#include "term/term.hpp"
#include "term/term_json.hpp"
#include "term/term_text.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  static term::JsonToTerm plain;
  static term::JsonToTerm atoms(term::JsonTermOptions{
      .max_size = 1u << 20, .max_depth = 64, .atom_keys = true, .atom_value_keys = {"status"}});
  for (auto* c : {&plain, &atoms}) {
    auto t = c->convert(json);
    if (!t) continue;
    auto bytes = t->bytes();
    auto r = term::TermReader::from_external({bytes.data(), bytes.size()});
    if (!r) std::abort();  // the converter wrote a term the reader refuses
    (void)term::to_json(*r);
    auto r2 = term::TermReader::from_external({bytes.data(), bytes.size()});
    if (r2) (void)term::format_term(*r2);
  }
  return 0;
}
