#include "relay/http_message.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "common/utf8.hpp"
#include "term/term_json.hpp"

namespace beamlink::relay {

std::optional<std::string_view> Request::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return std::string_view(v);
  }
  return std::nullopt;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    std::string out;
    auto raw = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '%' && i + 2 < raw.size() && hex_value(raw[i + 1]) >= 0 &&
          hex_value(raw[i + 2]) >= 0) {
        out.push_back(static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2])));
        i += 2;
      } else {
        out.push_back(raw[i] == '+' ? ' ' : raw[i]);
      }
    }
    return out;
  }
  return std::nullopt;
}

Response Response::error(int status, std::string_view error, std::string_view reason) {
  Response r;
  r.status = status;
  // The reason may echo request bytes (a path, a query parameter): it goes
  // out as valid UTF-8 and at most kMaxReasonBytes long.
  constexpr std::size_t kMaxReasonBytes = 512;
  std::string text = sanitize_utf8(reason);
  if (text.size() > kMaxReasonBytes) text = std::string(utf8_prefix(text, kMaxReasonBytes)) + "...";
  r.body = "{\"error\":" + term::json_quote(error) + ",\"reason\":" + term::json_quote(text) + "}";
  return r;
}

std::string_view status_text(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string serialize(const Response& r, bool keep_alive, bool http10) {
  std::string out;
  out.reserve(128 + r.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += status_text(r.status);
  out += "\r\n";
  for (const auto& [k, v] : r.headers) {
    out += k;
    out += ": ";
    out += v;
    out += "\r\n";
  }
  if (!r.body.empty() && !r.content_type.empty()) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  if (r.status >= 200 && r.status != 204) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  out += r.body;
  return out;
}

// RequestParser ------------------------------------------------------------

struct RequestParser::Impl {
  ParserLimits limits;
  http_parser parser{};
  http_parser_settings settings{};
  Request current;
  std::vector<Request>* out = nullptr;
  std::size_t header_bytes = 0;
  bool in_value = false;  // the last header callback was a value
  bool in_message = false;
  bool stopped = false;  // upgrade or error: no more input
  std::optional<ParseError> error;

  explicit Impl(ParserLimits l) : limits(l) {
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
    http_parser_settings_init(&settings);
    settings.on_message_begin = [](http_parser* p) {
      auto* self = static_cast<Impl*>(p->data);
      self->current = Request{};
      self->header_bytes = 0;
      self->in_value = false;
      self->in_message = true;
      return 0;
    };
    settings.on_url = [](http_parser* p, const char* at, size_t n) {
      auto* self = static_cast<Impl*>(p->data);
      if (!self->count_header(n)) return 1;
      self->current.target.append(at, n);
      return 0;
    };
    settings.on_header_field = [](http_parser* p, const char* at, size_t n) {
      auto* self = static_cast<Impl*>(p->data);
      if (!self->count_header(n)) return 1;
      if (self->in_value || self->current.headers.empty()) {
        self->current.headers.emplace_back();
        self->in_value = false;
      }
      auto& name = self->current.headers.back().first;
      for (size_t i = 0; i < n; ++i) {
        name += static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
      }
      return 0;
    };
    settings.on_header_value = [](http_parser* p, const char* at, size_t n) {
      auto* self = static_cast<Impl*>(p->data);
      if (!self->count_header(n)) return 1;
      self->in_value = true;
      self->current.headers.back().second.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](http_parser* p) {
      auto* self = static_cast<Impl*>(p->data);
      auto& r = self->current;
      r.method = http_method_str(static_cast<http_method>(p->method));
      r.http_major = p->http_major;
      r.http_minor = p->http_minor;
      http_parser_url u;
      http_parser_url_init(&u);
      if (http_parser_parse_url(r.target.data(), r.target.size(), 0, &u) == 0) {
        if (u.field_set & (1 << UF_PATH)) {
          r.path = r.target.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        }
        if (u.field_set & (1 << UF_QUERY)) {
          r.query = r.target.substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        }
      } else {
        self->fail(400, "bad_request", "malformed request target");
        return -1;  // an error (2 would mean "upgrade")
      }
      if ((p->flags & F_CONTENTLENGTH) && p->content_length > self->limits.max_body) {
        self->fail(413, "payload_too_large", body_reason(self->limits));
        return -1;
      }
      return 0;
    };
    settings.on_body = [](http_parser* p, const char* at, size_t n) {
      auto* self = static_cast<Impl*>(p->data);
      if (self->current.body.size() + n > self->limits.max_body) {
        self->fail(413, "payload_too_large", body_reason(self->limits));
        return 1;
      }
      self->current.body.append(at, n);
      return 0;
    };
    settings.on_message_complete = [](http_parser* p) {
      auto* self = static_cast<Impl*>(p->data);
      self->current.keep_alive = http_should_keep_alive(p) != 0;
      self->current.upgrade = p->upgrade != 0;
      self->out->push_back(std::move(self->current));
      self->current = Request{};
      self->in_message = false;
      return 0;
    };
  }

  static std::string body_reason(const ParserLimits& l) {
    return "request body over the limit of " + std::to_string(l.max_body) + " bytes";
  }

  bool count_header(std::size_t n) {
    header_bytes += n;
    if (header_bytes > limits.max_header_bytes) {
      fail(431, "headers_too_large",
           "request line and headers over " + std::to_string(limits.max_header_bytes) + " bytes");
      return false;
    }
    return true;
  }

  void fail(int status, std::string err, std::string reason) {
    if (!error) error = ParseError{status, std::move(err), std::move(reason)};
  }
};

RequestParser::RequestParser(ParserLimits limits) : impl_(std::make_unique<Impl>(limits)) {}
RequestParser::~RequestParser() = default;

RequestParser::Fed RequestParser::feed(std::span<const char> bytes, std::vector<Request>& out) {
  auto& s = *impl_;
  if (s.stopped) return Fed{0, s.error};
  s.out = &out;
  std::size_t n = http_parser_execute(&s.parser, &s.settings, bytes.data(), bytes.size());
  s.out = nullptr;
  auto err = HTTP_PARSER_ERRNO(&s.parser);
  if (err != HPE_OK && !s.error) {
    if (err == HPE_HEADER_OVERFLOW) {
      s.fail(431, "headers_too_large", "request headers too large");
    } else if (err == HPE_INVALID_VERSION) {
      s.fail(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    } else {
      s.fail(400, "bad_request",
             std::string("malformed HTTP request: ") + http_errno_description(err));
    }
  }
  if (s.error || s.parser.upgrade) s.stopped = true;
  return Fed{n, s.error};
}

bool RequestParser::in_message() const {
  return impl_->in_message && !impl_->stopped;
}

std::optional<ParseError> RequestParser::finish() {
  auto& s = *impl_;
  if (s.stopped || !s.in_message) return s.error;
  s.fail(400, "bad_request", "connection closed in the middle of a request");
  s.stopped = true;
  return s.error;
}

}  // namespace beamlink::relay
