// Base64 with padding (RFC 4648 section 4), through nettle:
// the WebSocket accept key (RFC 6455 section 4.2.2) and the JSON form of a
// binary that is not UTF-8 ({"$binary":"..."}).
//
// Thread: a pure function; use it anywhere.
#pragma once

#include <string>
#include <string_view>

namespace beamlink {

std::string base64_encode(std::string_view bytes);

}  // namespace beamlink
