// HTTP/1.1 requests and responses as plain values, and the request parser:
// http-parser driven over bytes the caller supplies (no I/O), with the
// relay's limits. RFC 9112 (HTTP/1.1 message syntax) and RFC 9110 (semantics).
//
// Thread: none; a RequestParser belongs to one connection.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beamlink::relay {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/v1/broadcast?x=1"
  std::string path;    // "/v1/broadcast"
  std::string query;   // "x=1" (no '?'), empty when absent
  int http_major = 1;
  int http_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  bool keep_alive = true;  // the connection may carry another request after this one
  bool upgrade = false;    // an Upgrade request (WebSocket): bytes after it are not HTTP

  // The first header with this (lowercase) name.
  std::optional<std::string_view> header(std::string_view lower_name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // besides the ones serialize() adds
  std::string body;
  std::string content_type = "application/json";

  // {"error": error, "reason": reason} with this status.
  static Response error(int status, std::string_view error, std::string_view reason);
};

// The query parameter `name` of `query` (Request::query: pairs separated by
// '&'), percent-decoded with '+' as a space (application/x-www-form-urlencoded,
// as the phoenix client encodes its params). Names are compared as sent. A
// repeated name: the first wins. A pair without '=' has the empty value. A
// '%' not followed by two hex digits is kept as is. std::nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

// "OK", "Payload Too Large", ... ("Unknown" for codes not listed).
std::string_view status_text(int status);

// The bytes of `r` on the wire, adding Content-Type (when there is a body),
// Content-Length and Connection (close when !keep_alive; keep-alive for an
// HTTP/1.0 request that asked to keep it).
std::string serialize(const Response& r, bool keep_alive, bool http10 = false);

struct ParserLimits {
  std::size_t max_header_bytes = 16 * 1024;  // request line + headers
  std::size_t max_body = 1u << 20;           // bytes after de-chunking
};

// Why the bytes could not be parsed: the status to answer (400, 413, 431,
// 505) and a reason for the body. After an error the connection must close.
struct ParseError {
  int status = 400;
  std::string error;   // "bad_request", "payload_too_large", "headers_too_large"
  std::string reason;  // for people
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  struct Fed {
    std::size_t consumed = 0;  // < size after an error or an upgrade request
    std::optional<ParseError> error;
  };
  // Parses `bytes`, appending each complete request to `out` in order
  // (pipelining). Stops after an upgrade request (the rest is the new
  // protocol's) and at the first error; once either happened, later calls
  // consume nothing and repeat the error.
  Fed feed(std::span<const char> bytes, std::vector<Request>& out);
  // The peer closed: a request cut short is an error (none when idle).
  std::optional<ParseError> finish();
  // A request has begun and is not complete yet.
  bool in_message() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::relay
