// net_kernel, as much of it as a hidden C node needs: net_adm:ping sends
// {'$gen_call', {From, Tag}, {is_auth, Node}} and waits for {Tag, yes}, with
// Tag copied as received ([alias | Ref] on OTP 24+). Without it the ping
// hangs. Other calls are answered {error, not_supported}.
#pragma once

#include "common/result.hpp"
#include "dist/node.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

// Registers "net_kernel" in `node` (once its creation is known, so that the
// pid carries it). The Node must outlive the registration.
Result<term::Pid> register_net_kernel(Node& node);

}  // namespace beamlink::dist
