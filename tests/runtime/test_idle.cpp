// Idle strategies (tmc::IdleStrategy): a runtime whose loop polls (yield, spin) instead of
// sleeping in epoll delivers like a blocking one, to handlers and to receive(), answers
// from handlers, closes its channels and stops its thread.
#include <atomic>
#include <doctest/doctest.h>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"

using namespace std::chrono_literals;
using tmc::test::manifest_for;

namespace {

// Offset 17 of this test process (unused by the other runtime test files).
constexpr int kIdle = 17;

}  // namespace

TEST_CASE("idle strategy names parse and print") {
  for (tmc::IdleStrategy s : {tmc::IdleStrategy::block, tmc::IdleStrategy::yield, tmc::IdleStrategy::spin}) {
    tmc::IdleStrategy back = tmc::IdleStrategy::block;
    REQUIRE(tmc::parse_idle_strategy(tmc::idle_strategy_name(s), back));
    CHECK(back == s);
  }
  tmc::IdleStrategy out = tmc::IdleStrategy::yield;
  CHECK_FALSE(tmc::parse_idle_strategy("busy", out));
  CHECK(out == tmc::IdleStrategy::yield);
  CHECK(tmc::Runtime::default_runtime()->options().idle == tmc::IdleStrategy::block);
  CHECK(tmc::Runtime::default_runtime(tmc::IdleStrategy::spin)->options().idle == tmc::IdleStrategy::spin);
  CHECK(tmc::Runtime::default_runtime(tmc::IdleStrategy::spin) == tmc::Runtime::default_runtime(tmc::IdleStrategy::spin));
  CHECK(tmc::Runtime::default_runtime(tmc::IdleStrategy::spin) != tmc::Runtime::default_runtime());
}

TEST_CASE("a spinning runtime delivers to receive() and to handlers, then closes and stops") {
  for (tmc::IdleStrategy idle : {tmc::IdleStrategy::spin, tmc::IdleStrategy::yield}) {
    CAPTURE(tmc::idle_strategy_name(idle));
    tmc::RuntimeOptions ro;
    ro.idle = idle;
    ro.busy_poll_us = 50;  // best effort: loopback has no busy-poll support, which is fine
    auto rt = tmc::Runtime::create(ro);
    tmc::OpenOptions o;
    o.runtime = rt;
    o.idle_strategy = idle;
    auto rx = tmc::Channel::open(manifest_for("idle", kIdle, "rx"), o);
    auto echo = tmc::Channel::open(manifest_for("idle", kIdle, "echo"), o);
    auto tx = tmc::Channel::open(manifest_for("idle", kIdle, "tx"));  // a blocking runtime
    CHECK(rt->channel_count() == 2);
    // A handler on the polling loop answers; the answer goes out from the loop thread.
    std::atomic<int> echoed{0};
    echo.on_message([&](tmc::Message&& m) {
      if (m.text().rfind("ping", 0) != 0) return;
      const bool warm_up = m.text() == "ping-w";
      if (echo.send("pong" + std::string(m.text().substr(4))) && !warm_up) ++echoed;
    });
    // on_message takes effect on the loop a little later: ping until the first answer
    // ("ping-w" / "pong-w") shows the handler is in place, then count 20 more.
    bool answered = false;
    for (int i = 0; i < 30 && !answered; ++i) {
      REQUIRE(tx.send("ping-w"));
      for (auto m = rx.receive(100ms); m && !answered; m = rx.receive(100ms)) answered = m->text() == "pong-w";
    }
    REQUIRE(answered);
    REQUIRE(tmc::test::send_n(tx, 20, "ping"));
    // receive() on the polling runtime waits for the loop's delivery (no inline receive).
    std::set<std::string> pings;
    std::set<std::string> pongs;
    for (int i = 0; i < 200 && (pings.size() < 20 || pongs.size() < 20); ++i) {
      auto m = rx.receive(3s);
      if (!m) break;
      const std::string t(m->text());
      if (t.rfind("ping-w", 0) == 0 || t.rfind("pong-w", 0) == 0) continue;
      if (t.rfind("ping", 0) == 0) pings.insert(t.substr(4));
      if (t.rfind("pong", 0) == 0) pongs.insert(t.substr(4));
    }
    CHECK(pings.size() == 20);
    CHECK(pongs.size() == 20);
    CHECK(echoed.load() == 20);
    CHECK(rx.stats().counter("shell.inline_received") == 0);
    // A receive() that times out returns (it polls until the deadline, then gives up).
    CHECK_FALSE(rx.receive(20ms).has_value());
    echo.on_message(nullptr);
    echo.close();
    rx.close();
    for (int i = 0; i < 300 && rt->channel_count() != 0; ++i) std::this_thread::sleep_for(10ms);
    CHECK(rt->channel_count() == 0);
    CHECK(rx.receive(10ms).has_value() == false);
    // Dropping the last reference joins the loop thread: this returns only if it stopped.
    rt.reset();
  }
}

TEST_CASE("an idle strategy that differs from the given runtime's is refused") {
  tmc::OpenOptions o;
  o.runtime = tmc::Runtime::create();  // block
  o.idle_strategy = tmc::IdleStrategy::spin;
  tmc::Channel c;
  const tmc::Status s = tmc::Channel::try_open(manifest_for("idle-mismatch", kIdle, "a"), o, c);
  CHECK(s.code() == tmc::Code::INVALID_ARGUMENT);
  CHECK(s.message().find("spin") != std::string::npos);
  CHECK(o.runtime->channel_count() == 0);
}

TEST_CASE("a best-effort stream of back-to-back sends leaves in batches (GSO), not one datagram per call") {
  // Each send() right after the previous one returned is part of a stream: it goes to the
  // loop, which hands the queued datagrams to the kernel in sendmmsg/GSO batches. (Sends
  // spaced wider than OpenOptions::inline_send_min_gap_ns go out inline, one by one.)
  tmc::OpenOptions o;
  o.caps.nic.udp_gso = true;
  o.runtime = tmc::Runtime::create();
  // Shorter than one inline send (a system call) takes, longer than this loop needs from
  // one send() to the next: the stream is told by the gap between calls, not by how long
  // the previous call took.
  o.inline_send_min_gap_ns = 1'000;
  tmc::Manifest m = manifest_for("be-batch", kIdle, "tx");
  m.loopback = false;  // only the count of sends matters here
  auto tx = tmc::Channel::open(m, o);
  REQUIRE(tx.plan().transport.gso);
  constexpr int kCount = 4000;
  std::vector<std::uint8_t> payload(64, 0x5a);
  for (int i = 0; i < kCount; ++i) REQUIRE(tx.send(payload));
  tx.close();  // flushes
  const tmc::ChannelStats st = tx.stats();
  CHECK(st.datagrams_sent == kCount);
  // Batches of equal-sized datagrams to the group: several per sendmmsg entry.
  CHECK(st.counter("shell.gso_sends") > 0);
  MESSAGE("GSO sends for " << kCount << " datagrams: " << st.counter("shell.gso_sends"));
}
