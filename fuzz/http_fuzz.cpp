// HTTP/1.1 requests from a client, pipelined and cut at arbitrary points.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "relay/http_message.hpp"
#include "splitter.hpp"

using namespace beamlink;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relay::RequestParser parser(relay::ParserLimits{.max_header_bytes = 4096, .max_body = 65536});
  std::vector<relay::Request> out;
  bool stopped = false;
  fuzz::feed_in_pieces(data, size, [&](std::span<const char> piece) {
    auto fed = parser.feed(piece, out);
    for (const auto& r : out) {
      (void)r.header("content-type");
      (void)relay::serialize(relay::Response::error(400, "bad_request", r.path), r.keep_alive);
    }
    out.clear();
    stopped = fed.error.has_value() || fed.consumed < piece.size();
    return !stopped;
  });
  if (!stopped) (void)parser.finish();
  return 0;
}
