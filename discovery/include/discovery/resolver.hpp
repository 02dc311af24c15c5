// DNS lookups with c-ares, driven by a libuv loop: no c-ares thread, no
// blocking call.
//
// How it is driven: c-ares reports each socket it wants watched through its
// sock-state callback; the Resolver keeps one uv_poll_t per socket (created,
// updated, stopped and closed as c-ares asks) and calls ares_process_fd when
// one is ready. One uv_timer_t, re-armed from ares_timeout() after every
// event and every new query, drives c-ares's retries and timeouts.
//
// What it asks: resolve() looks up A and AAAA records (ares_getaddrinfo,
// AF_UNSPEC); resolve_srv() looks up SRV records (ares_search +
// ares_parse_srv_reply) and then each target's A/AAAA records. Both follow
// the search list and ndots (resolv.conf's, or Options'): a short name such
// as "ewallet" is tried in each search domain. Only DNS is asked: /etc/hosts
// is not read (lookups "b"), as Peerage's :inet_res does not. A truncated UDP
// answer is asked again over TCP (c-ares's default, ARES_FLAG_IGNTC unset).
//
// Contract:
// - Thread: the loop's thread only.
// - Each callback is called exactly once, on a later loop iteration, never
//   from inside resolve()/resolve_srv() and never from inside c-ares (results
//   are queued and delivered from a timer callback), so a callback may start
//   new lookups or destroy the Resolver.
// - Destroying the Resolver cancels every pending lookup WITHOUT calling its
//   callback. Its uv handles are closed with uv_close and freed in their close
//   callbacks: run the loop once more before uv_loop_close.
// - Errors: see dns_error.hpp (not_found for NXDOMAIN or no records, timeout,
//   connection_refused, io_error for SERVFAIL/REFUSED, ...). Messages name the
//   servers asked.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "discovery/address.hpp"
#include "discovery/dns_error.hpp"

struct ares_channeldata;
struct ares_addrinfo;

namespace beamlink::discovery {

class Resolver {
 public:
  // Empty / zero / negative fields mean: what resolv.conf says (or c-ares's
  // defaults where it says nothing).
  struct Options {
    std::vector<std::string> servers;  // "IP" or "IP:PORT" ("[IPv6]:PORT"), e.g. "127.0.0.1:5353"
    std::vector<std::string> search;   // search domains, e.g. "default.svc.cluster.local"
    int ndots = -1;                    // names with fewer dots try the search list first
    std::chrono::milliseconds timeout{0};  // first try's timeout; c-ares doubles it per round
    int tries = 0;                         // attempts per server
  };

  // Counters for diagnostics and tests.
  struct Stats {
    uint64_t udp_sockets = 0;  // sockets c-ares opened
    uint64_t tcp_sockets = 0;  // (a TCP one follows a truncated UDP answer)
  };

  using AddressCallback = std::function<void(Result<std::vector<Address>>)>;
  using SrvCallback = std::function<void(Result<std::vector<SrvTarget>>)>;

  // `loop` must outlive the Resolver. Reads resolv.conf here (once; c-ares
  // 1.18 does not reread it). Fails (invalid_argument) on a bad server
  // string, or (io_error) when c-ares cannot initialise.
  static Result<std::unique_ptr<Resolver>> create(uv_loop_t* loop, Options opts);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // A and AAAA records of `name` → addresses, sorted, without duplicates.
  void resolve(std::string name, AddressCallback cb);
  // SRV records of `name` → one SrvTarget per record (targets "." dropped),
  // each with its target's addresses or the error resolving it. The SRV query
  // failing fails the whole call.
  void resolve_srv(std::string name, SrvCallback cb);

  // Lookups whose callback has not run yet.
  std::size_t pending() const { return requests_.size(); }
  // The servers asked, "IP:PORT" each.
  const std::vector<std::string>& servers() const { return servers_; }
  const Stats& stats() const { return stats_; }

 private:
  struct Request;
  struct TargetQuery;
  explicit Resolver(uv_loop_t* loop);

  Request& add(std::string name, QueryType type);
  void start_target(Request* r, std::size_t index);
  void complete(Request* r);
  void deliver() noexcept;
  void rearm_timer() noexcept;
  Error error_for(int status, const Request& r, std::string_view what, std::string_view name,
                  QueryType type) const;

  static void on_sock_state(void* data, int fd, int readable, int writable) noexcept;
  static int on_socket_created(int fd, int type, void* data) noexcept;
  static void on_poll(uv_poll_t* p, int status, int events) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* res) noexcept;
  static void on_srv(void* arg, int status, int timeouts, unsigned char* abuf, int alen) noexcept;
  static void on_target(void* arg, int status, int timeouts, ares_addrinfo* res) noexcept;

  uv_loop_t* loop_;
  ares_channeldata* channel_ = nullptr;
  std::vector<std::string> servers_;
  std::unordered_map<int, UvHandle<uv_poll_t>> polls_;  // by socket
  UvHandle<uv_timer_t> timer_;                          // c-ares timeouts
  UvHandle<uv_timer_t> deliver_timer_;                  // runs callbacks of completed lookups
  std::list<std::unique_ptr<Request>> requests_;        // pending and completed, not yet delivered
  std::list<Request*> completed_;                       // in completion order
  bool destroying_ = false;
  Liveness alive_;  // expires with *this
  Stats stats_;
};

}  // namespace beamlink::discovery
