// Where a node's identity comes from: its host part and its cookie.
#pragma once

#include <string>

#include "common/result.hpp"

namespace beamlink::dist {

struct Cookie {
  std::string value;    // never log or print this
  std::string source;   // "ERLANG_COOKIE" or the file's path, for messages
  std::string warning;  // with allow_insecure: why the file is unsafe (and the fix)
};

// The cookie from `env_value` when non-empty, else from `file` (default
// ~/.erlang.cookie). A file that group or others can read is refused, as erl
// refuses it ("must be accessible by owner only"); trailing whitespace and
// newlines are dropped as erl drops them.
// With allow_insecure (the doctor, which reports rather than refuses), an
// unsafe file is read anyway and `warning` says so.
Result<Cookie> load_cookie(const std::string& env_value, const std::string& file,
                           bool allow_insecure = false);

// The default cookie file: $HOME/.erlang.cookie.
std::string default_cookie_file();

// The first non-loopback IPv4 address of this host (NODE_HOST's default), or
// 127.0.0.1 when there is none.
std::string first_non_loopback_ipv4();

// A short fingerprint of the cookie (8 hex digits of its FNV-1a 64 hash):
// lets two sides compare cookies without revealing them. Not a secret-grade
// hash; 32 bits shown reveal nothing usable about a random cookie.
std::string cookie_fingerprint(const std::string& cookie);

}  // namespace beamlink::dist
