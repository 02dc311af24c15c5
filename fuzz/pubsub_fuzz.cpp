// What the cluster sends beamlink's pubsub processes: pg's messages to our
// scope process (discover, sync, join, leave from any peer) and Phoenix's
// forward_to_local to our pool workers.
#include <cstddef>
#include <cstdint>

#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "term/term.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const char> message(reinterpret_cast<const char*>(data), size);
  term::Pid self{"beamlink@127.0.0.1", 42, 0, 1};
  pubsub::PgScopeCore core("Elixir.Phoenix.PubSub", self);
  (void)core.join(pubsub::pg_atom_group("Elixir.My.PubSub.Adapter"), self);
  if (auto step = core.handle(message); step) {
    // Whatever it learnt must be readable back and forgettable.
    for (const auto& node : core.nodes()) {
      (void)core.groups_of(node);
      (void)core.node_down(node);
    }
  }
  (void)pubsub::decode_forward_to_local(message);
  (void)pubsub::decode_forward_to_local_any(message);
  return 0;
}
