// The other beamlinks of the cluster, as the pods' pg groups list them.
#include "pubsub/beamlink_finder.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <iterator>
#include <map>

#include "common/uv_handle.hpp"
#include "dist/node.hpp"

namespace beamlink::pubsub {

std::vector<std::string> finder_groups(const std::vector<PubSubOptions>& pubsubs) {
  std::vector<std::string> groups;
  for (auto& po : pubsubs)
    if (po.version != PubSubOptions::Version::v1_1) groups.push_back(pubsub_group(po.name, 1));
  return groups;
}

std::set<std::string> hidden_member_nodes(const std::vector<term::Pid>& members,
                                          const std::vector<std::string>& hidden,
                                          const std::string& self) {
  std::set<std::string> hid(hidden.begin(), hidden.end());
  std::set<std::string> out;
  for (auto& p : members)
    if (p.node != self && hid.count(p.node)) out.insert(p.node);
  return out;
}

namespace {

template <class T, class Read>
Result<std::vector<T>> decode_list(std::span<const char> reply, const char* what, Read read) {
  auto rr = term::TermReader::from_external(reply);
  if (!rr) return rr.error();
  auto n = rr->read_list_header();
  if (!n) return make_error(Errc::bad_term, std::string("expected a list of ") + what);
  std::vector<T> out;
  for (int i = 0; i < *n; ++i) {
    auto v = read(*rr);
    if (!v) return make_error(Errc::bad_term, std::string("expected a list of ") + what);
    out.push_back(std::move(*v));
  }
  if (*n > 0) {
    auto tail = rr->read_list_header();
    if (!tail || *tail != 0)
      return make_error(Errc::bad_term, std::string("expected a proper list of ") + what);
  }
  return out;
}

}  // namespace

Result<std::vector<term::Pid>> decode_pid_list(std::span<const char> reply) {
  return decode_list<term::Pid>(reply, "pids", [](term::TermReader& r) { return r.read_pid(); });
}

Result<std::vector<std::string>> decode_atom_list(std::span<const char> reply) {
  return decode_list<std::string>(reply, "atoms",
                                  [](term::TermReader& r) { return r.read_atom(); });
}

// ---------------------------------------------------------------------------

struct BeamlinkFinder::Timer {
  UvHandle<uv_timer_t> h;
};

// One poll: the answers of every pod asked, until the last one is in.
struct BeamlinkFinder::Poll {
  struct Answer {
    bool hidden_ok = false;
    std::vector<std::string> hidden;
    std::size_t groups_ok = 0;
    std::vector<term::Pid> members;
    bool failed = false;
  };
  std::map<std::string, Answer> answers;  // pod -> what it said
  std::size_t pending = 0;
};

BeamlinkFinder::BeamlinkFinder(dist::Node& node, BeamlinkFinderOptions options, IsBeam is_beam,
                               ChangeCallback on_change)
    : node_(node),
      options_(std::move(options)),
      is_beam_(std::move(is_beam)),
      on_change_(std::move(on_change)) {}

BeamlinkFinder::~BeamlinkFinder() {
  stop();
}

Result<void> BeamlinkFinder::start() {
  if (started_ || stopped_) return {};
  started_ = true;
  timer_ = std::make_unique<Timer>();
  if (int rc = timer_->h.init(node_.loop(), this, uv_timer_init); rc != 0)
    return uv_error(Errc::io_error,
                    std::string("beamlink finder: cannot create its timer: ") + uv_strerror(rc),
                    rc);
  poll_now();
  return {};
}

void BeamlinkFinder::poll_now() {
  if (stopped_ || !timer_) return;
  if (in_flight_) {
    again_ = true;
    return;
  }
  auto period = static_cast<std::uint64_t>(std::max<std::int64_t>(options_.interval.count(), 1));
  uv_timer_start(
      timer_->h.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<BeamlinkFinder*>(t->data)) self->poll();
      },
      0, period);
}

void BeamlinkFinder::stop() {
  if (stopped_) return;
  stopped_ = true;
  alive_.expire();
  timer_.reset();
}

void BeamlinkFinder::poll() {
  if (stopped_ || in_flight_) return;
  auto p = std::make_shared<Poll>();
  std::vector<std::string> pods;
  for (auto& n : node_.connected_nodes())
    if (is_beam_ && is_beam_(n)) pods.push_back(n);
  if (pods.empty() || options_.groups.empty()) {
    ++polls_completed_;
    return;  // nobody to ask: what we know stays
  }
  in_flight_ = true;
  p->pending = pods.size() * (1 + options_.groups.size());
  auto a = alive_.watch();
  for (auto& pod : pods) {
    p->answers[pod];
    term::TermWriter hidden_args;
    hidden_args.list(1).list(1).atom("hidden").nil().nil();  // [[hidden]]
    node_.rpc(pod, "erlang", "nodes", hidden_args.bytes(), options_.rpc_timeout,
              [this, a, p, pod](Result<dist::RpcReply> r) {
                if (!a) return;
                auto& ans = p->answers[pod];
                if (r) {
                  auto l = decode_atom_list(std::span<const char>(r->term.data(), r->term.size()));
                  if (l) {
                    ans.hidden = std::move(*l);
                    ans.hidden_ok = true;
                  }
                }
                if (!ans.hidden_ok) ans.failed = true;
                if (--p->pending == 0) finished(*p);
              });
    for (auto& g : options_.groups) {
      term::TermWriter args;
      args.list(2).atom(options_.scope).atom(g).nil();
      node_.rpc(pod, "pg", "get_members", args.bytes(), options_.rpc_timeout,
                [this, a, p, pod](Result<dist::RpcReply> r) {
                  if (!a) return;
                  auto& ans = p->answers[pod];
                  bool ok = false;
                  if (r) {
                    auto l = decode_pid_list(std::span<const char>(r->term.data(), r->term.size()));
                    if (l) {
                      ans.members.insert(ans.members.end(), l->begin(), l->end());
                      ++ans.groups_ok;
                      ok = true;
                    }
                  }
                  if (!ok) ans.failed = true;  // no pg scope there yet, or no answer
                  if (--p->pending == 0) finished(*p);
                });
    }
  }
}

void BeamlinkFinder::finished(Poll& p) {
  in_flight_ = false;
  ++polls_completed_;
  std::set<std::string> next;
  bool any = false;
  for (auto& [pod, ans] : p.answers) {
    if (ans.failed) continue;
    any = true;
    auto nodes = hidden_member_nodes(ans.members, ans.hidden, node_.name());
    for (auto& n : nodes)
      if (!is_beam_ || !is_beam_(n)) next.insert(n);
  }
  if (again_) {
    again_ = false;
    poll_now();
  }
  if (!any) return;  // no pod answered: keep what we know
  Diff d;
  std::set_difference(next.begin(), next.end(), found_.begin(), found_.end(),
                      std::back_inserter(d.added));
  std::set_difference(found_.begin(), found_.end(), next.begin(), next.end(),
                      std::back_inserter(d.removed));
  found_ = std::move(next);
  if ((d.added.empty() && d.removed.empty()) || !on_change_) return;
  on_change_(d);
}

}  // namespace beamlink::pubsub
