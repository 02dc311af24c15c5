#include "discovery/dns_poller.hpp"

#include <utility>

namespace beamlink::discovery {

Result<std::unique_ptr<DnsPoller>> DnsPoller::create(uv_loop_t* loop, Options opts,
                                                     EventCallback on_event) {
  if (opts.name.empty())
    return make_error(
        Errc::invalid_argument,
        "no DNS name to poll — set NODE_DNS (e.g. ewallet.default.svc.cluster.local)");
  auto resolver = Resolver::create(loop, opts.resolver);
  if (!resolver) return std::move(resolver).error();
  return std::unique_ptr<DnsPoller>(
      new DnsPoller(loop, std::move(opts), std::move(on_event), std::move(*resolver)));
}

DnsPoller::DnsPoller(uv_loop_t* loop, Options opts, EventCallback on_event,
                     std::unique_ptr<Resolver> resolver)
    : loop_(loop),
      opts_(std::move(opts)),
      on_event_(std::move(on_event)),
      resolver_(std::move(resolver)),
      set_(opts_.peer_name, opts_.own_addresses, opts_.own_name) {
  (void)timer_.init(loop_, this, uv_timer_init);  // cannot fail
}

DnsPoller::~DnsPoller() {
  stop();
  resolver_.reset();  // cancels the lookup in flight without its callback
}

void DnsPoller::start() {
  if (started_ || stopped_) return;
  started_ = true;
  poll();
}

void DnsPoller::poll_now() {
  if (stopped_) return;
  started_ = true;
  if (in_flight_) {
    again_ = true;
    return;
  }
  uv_timer_stop(timer_.get());
  poll();
}

void DnsPoller::stop() {
  stopped_ = true;
  uv_timer_stop(timer_.get());
}

void DnsPoller::poll() {
  in_flight_ = true;
  again_ = false;
  poll_started_ = uv_now(loop_);
  // The callbacks run later (never inside resolve*), and never after the
  // Resolver — owned by *this — is gone.
  if (opts_.srv)
    resolver_->resolve_srv(
        opts_.name, [this](Result<std::vector<SrvTarget>> r) { finished(srv_addresses(r)); });
  else
    resolver_->resolve(opts_.name, [this](Result<std::vector<Address>> r) { finished(r); });
}

void DnsPoller::finished(const Result<std::vector<Address>>& resolved) {
  in_flight_ = false;
  if (stopped_) return;
  ++polls_completed_;
  PeerSet::Outcome out = set_.update(resolved);
  schedule_next();  // before the events: a callback may stop() or destroy us

  const Liveness::Watch alive = alive_.watch();
  auto emit = [&](const Event& ev) {
    if (!alive || stopped_) return;
    static constexpr const char* kKinds[] = {"skipped", "changed", "ok", "failing"};
    ++events_[kKinds[static_cast<int>(ev.kind)]];
    if (on_event_) on_event_(ev);
  };
  for (auto& s : out.skipped) {
    Event ev{Event::Kind::skipped, {}, 0, {}, s};
    emit(ev);
  }
  if (!out.diff.empty()) {
    Event ev{Event::Kind::changed, out.diff, 0, {}, {}};
    emit(ev);
  }
  if (out.entered == PollState::ok) {
    Event ev{Event::Kind::ok, {}, !alive ? 0 : set_.peers().size(), {}, {}};
    emit(ev);
  } else if (out.entered == PollState::failing) {
    Event ev{Event::Kind::failing, {}, 0, *out.error, {}};
    emit(ev);
  }
}

void DnsPoller::write_metrics(MetricsWriter& m, const DnsPoller* poller) {
  m.family("beamlink_dns_polls_total", MetricsWriter::Type::counter, "NODE_DNS polls by result.");
  if (!poller) return;
  for (auto& [result, n] : poller->events_)
    m.sample("beamlink_dns_polls_total", n, {{"result", result}});
}

void DnsPoller::schedule_next() {
  if (again_) {
    // Not from inside this callback's stack of events: a 0 ms timer.
    uv_timer_start(
        timer_.get(), [](uv_timer_t* t) { static_cast<DnsPoller*>(t->data)->poll(); }, 0, 0);
    return;
  }
  uint64_t elapsed = uv_now(loop_) - poll_started_;
  auto interval = static_cast<uint64_t>(opts_.interval.count());
  uint64_t delay = elapsed >= interval ? 0 : interval - elapsed;
  uv_timer_start(
      timer_.get(), [](uv_timer_t* t) { static_cast<DnsPoller*>(t->data)->poll(); }, delay, 0);
}

}  // namespace beamlink::discovery
