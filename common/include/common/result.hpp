// The project's one error type and a small expected-like Result<T>.
//
// An Error carries a code for programs, a message for people (what failed,
// where, and what to do about it) and the source error number it came from
// with the space that number lives in (errno, uv, ares_status_t, erl_errno,
// an epmd result byte) for the log and for the few callers that branch on
// it. Result<T> holds either a value or an Error; it is [[nodiscard]] so a
// dropped failure is a warning (and, with -Werror, a build failure).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace beamlink {

enum class Errc {
  ok = 0,
  invalid_argument,    // the caller passed something malformed
  bad_json,            // text that is not JSON within the limits (syntax, UTF-8,
                       // number range, size, nesting)
  not_found,           // a name, node or process that does not exist
  unexpected_message,  // a well-formed message of another kind than the one
                       // wanted (another struct, an unknown control tag)
  already_exists,      // a name that is already taken
  timeout,             // a deadline passed
  connection_refused,  // nothing listens where we connected
  connection_closed,   // the peer closed, or we closed it
  io_error,            // any other socket or file error (source holds errno)
  protocol_error,      // the peer sent bytes that break the protocol
  frame_too_large,     // a frame over the configured maximum
  bad_term,            // an external term format error
  handshake_failed,    // the distribution handshake did not complete
  cookie_rejected,     // the peer closed after our digest: cookies differ
  not_connected,       // no connection to that node
  queue_full,          // a bounded queue refused more
  insecure,            // a cookie file others can read, and the like
  badrpc,              // the remote side answered {badrpc, Reason}
  shutting_down,       // the node is stopping
};

// A short stable name, for logs and JSON.
constexpr std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::ok:
      return "ok";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::bad_json:
      return "bad_json";
    case Errc::not_found:
      return "not_found";
    case Errc::unexpected_message:
      return "unexpected_message";
    case Errc::already_exists:
      return "already_exists";
    case Errc::timeout:
      return "timeout";
    case Errc::connection_refused:
      return "connection_refused";
    case Errc::connection_closed:
      return "connection_closed";
    case Errc::io_error:
      return "io_error";
    case Errc::protocol_error:
      return "protocol_error";
    case Errc::frame_too_large:
      return "frame_too_large";
    case Errc::bad_term:
      return "bad_term";
    case Errc::handshake_failed:
      return "handshake_failed";
    case Errc::cookie_rejected:
      return "cookie_rejected";
    case Errc::not_connected:
      return "not_connected";
    case Errc::queue_full:
      return "queue_full";
    case Errc::insecure:
      return "insecure";
    case Errc::badrpc:
      return "badrpc";
    case Errc::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

// The space an Error's source number lives in.
enum class ErrorDomain {
  none,   // no source number
  posix,  // errno (ETIMEDOUT, ECONNREFUSED, ...)
  uv,     // a libuv status (UV_EOF, UV_ECONNREFUSED, ...: negative)
  ares,   // a c-ares ares_status_t (ARES_ENOTFOUND, ...)
  ei,     // erl_errno, or an ei function's return code
  epmd,   // the result byte of an epmd reply (ALIVE2_RESP, PORT2_RESP)
};

struct Error {
  Errc code = Errc::ok;
  std::string message;                     // for people: what failed, where, what to do
  int source = 0;                          // the underlying error number, 0 if none
  ErrorDomain domain = ErrorDomain::none;  // which space `source` is in

  // Whether the source is `value` of space `d`: e.is(ErrorDomain::uv, UV_EOF).
  bool is(ErrorDomain d, int value) const noexcept { return domain == d && source == value; }
};

inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message)};
}
// With the source number it came from and that number's space.
inline Error make_error(Errc code, std::string message, ErrorDomain domain, int source) {
  return Error{code, std::move(message), source, domain};
}
inline Error posix_error(Errc code, std::string message, int err) {
  return make_error(code, std::move(message), ErrorDomain::posix, err);
}
inline Error uv_error(Errc code, std::string message, int status) {
  return make_error(code, std::move(message), ErrorDomain::uv, status);
}
inline Error ares_error(Errc code, std::string message, int status) {
  return make_error(code, std::move(message), ErrorDomain::ares, status);
}
inline Error ei_error(Errc code, std::string message, int err) {
  return make_error(code, std::move(message), ErrorDomain::ei, err);
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const noexcept { return error_.code == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const& {
    assert(!ok());
    return error_;
  }
  Error&& error() && {
    assert(!ok());
    return std::move(error_);
  }

 private:
  Error error_;
};

}  // namespace beamlink
