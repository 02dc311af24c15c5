#include "discovery/peer_set.hpp"

#include <algorithm>
#include <iterator>

namespace beamlink::discovery {

PeerSet::PeerSet(std::string peer_name, const std::vector<std::string>& own_addresses,
                 const std::string& own_name)
    : peer_name_(std::move(peer_name)) {
  for (const auto& text : own_addresses)
    if (auto a = parse_address(text)) own_.insert(a->text);
  auto at = own_name.find('@');
  if (at != std::string::npos) {
    self_alive_ = own_name.substr(0, at) == peer_name_;
    // The host part of our name, when it is an address, is ours too.
    if (auto a = parse_address(own_name.substr(at + 1))) own_.insert(a->text);
  }
}

bool PeerSet::is_self(const std::string& address) const {
  return self_alive_ && own_.count(address) != 0;
}

namespace {

// Failures of one kind are reported once. A server that is down answers
// "refused" to some polls and nothing to others (ICMP replies are rate
// limited): both mean "unreachable", and alternating between them must not
// log every poll.
int failure_kind(const Error& e) {
  switch (e.code) {
    case Errc::timeout:
    case Errc::connection_refused:
    case Errc::io_error:
      return -1;
    default:
      return static_cast<int>(e.code) * 1000 + e.source;
  }
}

}  // namespace

PeerSet::Outcome PeerSet::update(const Result<std::vector<Address>>& resolved) {
  Outcome out;
  if (!resolved) {
    const Error& e = resolved.error();
    bool same = state_ == PollState::failing && last_error_ &&
                failure_kind(*last_error_) == failure_kind(e);
    if (!same) {
      out.entered = PollState::failing;
      out.error = e;
    }
    state_ = PollState::failing;
    last_error_ = e;
    return out;  // the set is kept
  }

  std::set<std::string> next;
  std::set<Address> skipped;
  for (const auto& a : *resolved) {
    if (is_self(a.text)) {
      skipped.insert(a);
      if (!skipped_.count(a))
        out.skipped.push_back({Skipped::Reason::own_address, a,
                               peer_name_ + "@" + a.text + " is this node itself: not a peer"});
    } else if (a.family == Family::ipv6) {
      skipped.insert(a);
      if (!skipped_.count(a))
        out.skipped.push_back(
            {Skipped::Reason::ipv6, a,
             "skipping IPv6 peer " + a.text + ": ei is IPv4-only, only IPv4 peers are joined"});
    } else {
      next.insert(peer_name_ + "@" + a.text);
    }
  }
  std::set_difference(next.begin(), next.end(), peers_.begin(), peers_.end(),
                      std::back_inserter(out.diff.added));
  std::set_difference(peers_.begin(), peers_.end(), next.begin(), next.end(),
                      std::back_inserter(out.diff.removed));
  if (state_ != PollState::ok) out.entered = PollState::ok;
  peers_ = std::move(next);
  skipped_ = std::move(skipped);
  state_ = PollState::ok;
  last_error_.reset();
  return out;
}

Result<std::vector<Address>> srv_addresses(const Result<std::vector<SrvTarget>>& srv) {
  if (!srv) return srv.error();
  std::vector<Address> all;
  for (const auto& t : *srv) {
    if (t.error) {
      if (t.error->code == Errc::not_found) continue;  // the target left
      return *t.error;
    }
    all.insert(all.end(), t.addresses.begin(), t.addresses.end());
  }
  normalize(all);
  return all;
}

}  // namespace beamlink::discovery
