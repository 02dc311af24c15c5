// POST /v1/broadcast bodies: JSON to a %Phoenix.Socket.Broadcast{} term, and
// the answer. Whatever is accepted must be a term the reader takes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "relay/broadcast_api.hpp"
#include "term/term.hpp"

using namespace beamlink;

namespace {
struct CheckingPublisher : relay::Publisher {
  Result<void> publish(std::string_view, std::span<const char> message_term) override {
    if (!term::TermReader::from_external(message_term)) std::abort();
    return {};
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static CheckingPublisher publisher;
  static relay::BroadcastApi api(publisher);
  relay::Request req;
  req.method = "POST";
  req.target = req.path = "/v1/broadcast";
  req.headers.emplace_back("content-type", "application/json");
  req.body.assign(reinterpret_cast<const char*>(data), size);
  auto resp = api.handle(req);
  if (resp.status != 202 && resp.status != 400 && resp.status != 413 && resp.status != 415)
    std::abort();  // a body alone can only be accepted or refused as the client's fault
  return 0;
}
