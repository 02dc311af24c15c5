// TopicRegistry: delivery by topic, RAII subscriptions, unsubscribing from
// inside a delivery (oneself, another, the topic's last), the open and close
// hooks, and subscriptions that outlive the registry.
#include "common/topic_registry.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

namespace beamlink {
namespace {

TEST_CASE("topic registry: delivers to the topic's subscribers in order") {
  TopicRegistry<int> r;
  std::vector<std::string> seen;
  auto a = r.subscribe("t", [&](int v) { seen.push_back("a" + std::to_string(v)); });
  auto b = r.subscribe("t", [&](int v) { seen.push_back("b" + std::to_string(v)); });
  auto c = r.subscribe("u", [&](int v) { seen.push_back("c" + std::to_string(v)); });
  CHECK(r.emit("t", 1));
  CHECK_FALSE(r.emit("v", 2));
  CHECK(seen == std::vector<std::string>{"a1", "b1"});
  CHECK(r.size() == 2);
  CHECK(r.count("t") == 2);
  CHECK(r.topics() == std::vector<std::string>{"t", "u"});
  b.reset();
  CHECK(r.count("t") == 1);
  a.reset();
  CHECK_FALSE(r.has("t"));
  CHECK(r.size() == 1);
}

TEST_CASE("topic registry: a subscriber may unsubscribe itself or others during a delivery") {
  TopicRegistry<> r;
  std::vector<int> seen;
  std::optional<Subscription> a, b, c;
  a = r.subscribe("t", [&] {
    seen.push_back(1);
    b.reset();  // not called afterwards
    a.reset();  // itself
  });
  b = r.subscribe("t", [&] { seen.push_back(2); });
  c = r.subscribe("t", [&] {
    seen.push_back(3);
    c.reset();  // the last one: the topic goes
  });
  r.emit("t");
  CHECK(seen == std::vector<int>{1, 3});
  CHECK_FALSE(r.has("t"));
  CHECK_FALSE(r.emit("t"));
}

TEST_CASE("topic registry: a subscription made during a delivery is not called by it") {
  TopicRegistry<> r;
  int calls = 0, late = 0;
  std::optional<Subscription> first, added;
  first = r.subscribe("t", [&] {
    ++calls;
    if (!added) added = r.subscribe("t", [&] { ++late; });
  });
  r.emit("t");
  CHECK(calls == 1);
  CHECK(late == 0);
  r.emit("t");
  CHECK(late == 1);
}

TEST_CASE("topic registry: open and close hooks run on the first and last subscriber") {
  std::vector<std::string> events;
  TopicRegistry<> r([&](const std::string& t) { events.push_back("open " + t); },
                    [&](const std::string& t) { events.push_back("close " + t); });
  {
    auto a = r.subscribe("t", [] {});
    auto b = r.subscribe("t", [] {});
    CHECK(events == std::vector<std::string>{"open t"});
  }
  CHECK(events == std::vector<std::string>{"open t", "close t"});
  {
    std::optional<Subscription> last;
    last = r.subscribe("u", [&] { last.reset(); });
    r.emit("u");
  }
  CHECK(events == std::vector<std::string>{"open t", "close t", "open u", "close u"});
}

TEST_CASE("topic registry: a subscription may outlive the registry") {
  int closes = 0;
  Subscription s;
  {
    TopicRegistry<> r({}, [&](const std::string&) { ++closes; });
    s = r.subscribe("t", [] {});
  }
  s.reset();  // nothing left to remove from
  CHECK(closes == 0);
}

}  // namespace
}  // namespace beamlink
