// The relay's protocol cores compile without libuv (DESIGN.md: their headers
// do not include uv.h, which keeps them testable and fuzzable alone). This
// file includes nothing else before the check.
#include "relay/broadcast_api.hpp"
#include "relay/channel_hub.hpp"
#include "relay/delivery_core.hpp"
#include "relay/http_handler.hpp"
#include "relay/http_message.hpp"
#include "relay/phoenix_channels.hpp"
#include "relay/websocket_protocol.hpp"

#ifdef UV_VERSION_MAJOR
#error "a no-I/O relay header includes uv.h"
#endif

#include <doctest/doctest.h>

TEST_CASE("relay cores: their headers compile without libuv") {
  CHECK(beamlink::relay::encode_server_frame(beamlink::relay::Opcode::text, "x").size() == 3);
}
