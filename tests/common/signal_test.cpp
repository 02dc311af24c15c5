// Signal, Subscription and Liveness: the contracts the loop's owners rely on.
#include "common/signal.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <vector>

namespace beamlink {
namespace {

TEST_CASE("signal: callbacks run in subscription order until their subscription goes") {
  Signal<int> s;
  std::vector<int> seen;
  auto a = s.subscribe([&](int v) { seen.push_back(v * 10 + 1); });
  std::optional<Subscription> b = s.subscribe([&](int v) { seen.push_back(v * 10 + 2); });
  s.emit(1);
  b.reset();
  s.emit(2);
  CHECK(seen == std::vector<int>{11, 12, 21});
  CHECK(s.size() == 1);
}

TEST_CASE("signal: a callback may remove itself and others and add one not called this time") {
  Signal<> s;
  std::vector<int> seen;
  Subscription first, second, added;
  first = s.subscribe([&] {
    seen.push_back(1);
    first.reset();
    second.reset();
    added = s.subscribe([&] { seen.push_back(3); });
  });
  second = s.subscribe([&] { seen.push_back(2); });
  s.emit();
  CHECK(seen == std::vector<int>{1});
  s.emit();
  CHECK(seen == std::vector<int>{1, 3});
}

TEST_CASE("signal: a callback that destroys the signal's owner ends the emit") {
  auto owner = std::make_unique<Signal<>>();
  int calls = 0;
  auto a = owner->subscribe([&] {
    ++calls;
    owner.reset();
  });
  auto b = owner->subscribe([&] { ++calls; });
  owner->emit();
  CHECK(calls == 1);
  CHECK(!owner);
  // The subscriptions outlive the signal: resetting them is harmless.
  a.reset();
  b.reset();
}

TEST_CASE("subscription: moves transfer the cancellation exactly once") {
  Signal<> s;
  int calls = 0;
  Subscription a = s.subscribe([&] { ++calls; });
  Subscription b = std::move(a);
  CHECK(!a);
  CHECK(b);
  s.emit();
  b = Subscription{};
  s.emit();
  CHECK(calls == 1);
  CHECK(s.empty());
}

TEST_CASE("liveness: a watch expires with its owner or on expire()") {
  Liveness::Watch w;
  CHECK(!w);
  {
    Liveness l;
    w = l.watch();
    CHECK(w);
  }
  CHECK(!w);
  Liveness l2;
  auto w2 = l2.watch();
  l2.expire();
  CHECK(!w2);
}

}  // namespace
}  // namespace beamlink
