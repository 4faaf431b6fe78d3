// Application-guided decisions through the real runtime and real sockets, on loopback:
// Channel::forget (one message, and it with everything before it), wherever the message
// waits (unsent in the send queue while the channel is back-pressured, in reliability's
// queue, or sent and unacknowledged), and Channel::hint_load shrinking the window flow
// control advertises. Every wait is bounded; nothing asserts a time.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"
#include "tmc/manifest.hpp"

using namespace std::chrono_literals;
using tmc::test::group_for;
using tmc::test::port_for;

namespace {

tmc::Manifest parse(const std::string& yaml) {
  tmc::Manifest m;
  tmc::Diagnostics diag;
  const bool ok = tmc::parse_manifest(yaml, "test", m, diag);
  INFO(yaml);
  REQUIRE(ok);
  return m;
}

std::string where(int offset) {
  return "group: " + group_for(offset) + "\nport: " + std::to_string(port_for(offset)) + "\n";
}

/// The outcome once it is known (bounded wait; abandoned if it never comes).
tmc::DeliveryOutcome::State outcome(std::future<tmc::DeliveryOutcome>& f) {
  if (f.wait_for(10s) != std::future_status::ready) return tmc::DeliveryOutcome::State::abandoned;
  return f.get().state;
}

/// Poll `pred` until it holds or 10 s passed.
template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

struct Gaps {
  std::mutex mu;
  int released = 0;
  int other = 0;
};

}  // namespace

TEST_CASE("forget: one message in the send queue, one in reliability's queue, then everything before a token") {
  // 'ghost' never runs and is the only member whose acks count, so nothing a sends is ever
  // met: reliability's window (4096 unsettled messages) fills, then its queue, until the
  // channel is back-pressured and later messages stay in the send queue, unseen by any
  // stage. b receives everything that goes out (repairs answer its NACKs; the long
  // timeout keeps ghost's silence from using up the retry budget during the test).
  const std::string yaml = "id: forget-rt\nmembers: [a, b, ghost]\n" + where(0) +
                           "reliability: {ack from: [ghost], max retries: 1000, min timeout us: 1000000}\n"
                           "point-to-point ordering: strict\n"
                           "failure timeout us: 60000000\n";  // ghost stays expected, not failed
  tmc::Manifest ma = parse(yaml + "name: a\n");
  tmc::Manifest mb = parse(yaml + "name: b\n");
  tmc::OpenOptions oa;
  oa.send_queue_messages = 64;  // back-pressured from 64 messages in reliability's queue
  oa.send_blocks_when_full = false;
  auto a = tmc::Channel::open(ma, oa);
  tmc::OpenOptions ob;
  ob.receive_queue_messages = 8192;  // b reads only once the window is out
  auto b = tmc::Channel::open(mb, ob);
  Gaps gaps;
  b.on_event([&gaps](const tmc::ChannelEvent& e) {
    if (e.type != tmc::EventType::gap_skipped) return;
    std::lock_guard<std::mutex> lock(gaps.mu);
    (e.cause == tmc::EventCause::released ? gaps.released : gaps.other) += 1;
  });
  REQUIRE(a.wait_for_members(1, 5s));
  REQUIRE(b.wait_for_members(1, 5s));

  constexpr int kInFlight = 4096;  // reliability's default window
  constexpr int kSent = kInFlight + 120;  // the window, its queue (64-80), the send queue
  std::vector<tmc::MessageToken> token(kSent);
  std::vector<std::future<tmc::DeliveryOutcome>> out(kSent);
  for (int i = 0; i < kSent; ++i) {
    const std::string text = "m" + std::to_string(i);
    tmc::Status s;
    for (int tries = 0; tries < 5000; ++tries) {  // the loop takes the queue in batches
      s = a.send(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), tmc::MessageManifest{},
                 &out[i], &token[i]);
      if (s.code() != tmc::Code::WOULD_BLOCK) break;
      std::this_thread::sleep_for(1ms);
    }
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    if (i < kInFlight && i % 64 == 63) std::this_thread::sleep_for(1ms);  // b's socket keeps up
  }
  // b gets every message of the window (repairs fill what its socket dropped).
  std::vector<std::string> got = tmc::test::receive_n(b, kInFlight);
  REQUIRE(got.size() == static_cast<std::size_t>(kInFlight));
  for (int i = 0; i < kInFlight; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == "m" + std::to_string(i));
  CHECK(a.stats().counter("shell.forgotten_unsent") == 0);

  // Still in the send queue: its outcome is known at once; it will never be sent.
  const int queued = kSent - 10;
  REQUIRE(a.forget(token[queued]));
  CHECK(outcome(out[queued]) == tmc::DeliveryOutcome::State::forgotten);
  // In reliability's queue (beyond its window): it takes its number unsent, a hole b skips.
  const int held = kInFlight + 8;
  REQUIRE(a.forget(token[held]));
  CHECK(outcome(out[held]) == tmc::DeliveryOutcome::State::forgotten);
  CHECK(a.forget(token[held]));  // idempotent
  // Now everything up to kSent - 20: in flight, in reliability's queue and in the send queue.
  const int through = kSent - 20;
  REQUIRE(a.forget(token[through], tmc::ForgetScope::and_earlier));
  for (int i : {0, kInFlight - 1, kInFlight, kInFlight + 40, through - 1, through}) {
    INFO("message " << i);
    CHECK(outcome(out[i]) == tmc::DeliveryOutcome::State::forgotten);
  }

  // What follows goes on: b gets exactly the messages after `through` but the forgotten
  // one, in order, and skips the holes as released.
  std::vector<std::string> want;
  for (int i = through + 1; i < kSent; ++i)
    if (i != queued) want.push_back("m" + std::to_string(i));
  CHECK(tmc::test::receive_n(b, want.size()) == want);
  CHECK_FALSE(b.receive(200ms).has_value());
  CHECK(eventually([&] {
    std::lock_guard<std::mutex> lock(gaps.mu);
    return gaps.released > 0;
  }));
  {
    std::lock_guard<std::mutex> lock(gaps.mu);
    CHECK(gaps.other == 0);
  }
  // Forgotten in the send queue: never numbered, never sent; every message from
  // reliability's queue up to `through` was (the one queued alone and those and_earlier
  // found in the send queue).
  const tmc::ChannelStats s = a.stats();
  CHECK(s.counter("shell.forgotten_unsent") >= 2);
  // The rest were not forgotten: still pending (only ghost could ack them).
  for (int i = through + 1; i < kSent; ++i) {
    if (i == queued || out[i].wait_for(0s) != std::future_status::ready) continue;
    CHECK(out[i].get().state != tmc::DeliveryOutcome::State::forgotten);
  }
}

TEST_CASE("forget: a message the receiver missed is skipped as released, and nothing stalls") {
  // a's fault stage drops 30 % of what it sends, and a forgets each message right after
  // sending it: what was lost is never repaired, so b has holes the sender released.
  const std::string yaml = "id: forget-loss\nmembers: [a, b]\n" + where(1) +
                           "reliability: {max retries: 1000}\n"
                           "point-to-point ordering: strict\n"
                           "ordering hold us: 30000000\n";
  tmc::Manifest ma = parse(yaml + "name: a\nfaults: {loss: 0.3, seed: 11}\n");
  tmc::Manifest mb = parse(yaml + "name: b\n");
  auto a = tmc::Channel::open(ma);
  auto b = tmc::Channel::open(mb);
  Gaps gaps;
  b.on_event([&gaps](const tmc::ChannelEvent& e) {
    if (e.type != tmc::EventType::gap_skipped) return;
    std::lock_guard<std::mutex> lock(gaps.mu);
    (e.cause == tmc::EventCause::released ? gaps.released : gaps.other) += 1;
  });
  REQUIRE(a.wait_for_members(1, 5s));
  constexpr int kSent = 200;
  std::vector<tmc::MessageToken> token(kSent);
  std::vector<std::future<tmc::DeliveryOutcome>> out(kSent);
  for (int i = 0; i < kSent; ++i) {
    const std::string text = "m" + std::to_string(i);
    REQUIRE(a.send(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), tmc::MessageManifest{},
                   &out[i], &token[i]));
    // Forget every message at once: whichever were lost are never repaired.
    REQUIRE(a.forget(token[i]));
  }
  int forgotten = 0;
  int met = 0;
  for (auto& f : out) {
    const auto st = outcome(f);
    forgotten += st == tmc::DeliveryOutcome::State::forgotten;
    met += st == tmc::DeliveryOutcome::State::met;
  }
  CHECK(forgotten + met == kSent);
  CHECK(forgotten > 0);
  // A last message, sent and not forgotten, arrives: b did not stall on any hole.
  tmc::MessageToken last_token = 0;
  std::future<tmc::DeliveryOutcome> last;
  REQUIRE(a.send(std::span(reinterpret_cast<const std::uint8_t*>("last"), 4), tmc::MessageManifest{}, &last,
                 &last_token));
  std::vector<std::string> got;
  while (auto m = b.receive(10s)) {
    got.emplace_back(m->text());
    if (got.back() == "last") break;
  }
  REQUIRE(!got.empty());
  CHECK(got.back() == "last");
  CHECK(outcome(last) == tmc::DeliveryOutcome::State::met);
  // In order, each once, and what b missed was skipped as released (never by timeout).
  for (std::size_t i = 1; i + 1 < got.size(); ++i) CHECK(std::stoi(got[i].substr(1)) > std::stoi(got[i - 1].substr(1)));
  std::lock_guard<std::mutex> lock(gaps.mu);
  CHECK(gaps.other == 0);
  if (got.size() < kSent + 1) CHECK(gaps.released > 0);
}

TEST_CASE("hint_load: a receiver at full load advertises no window, and its sender waits until it has room") {
  const std::string yaml = "id: hint-load\nmembers: [a, b]\n" + where(2) +
                           "reliability: true\nflow control: {window bytes: 65536}\n";
  auto a = tmc::Channel::open(parse(yaml + "name: a\n"));
  auto b = tmc::Channel::open(parse(yaml + "name: b\n"));
  REQUIRE(a.wait_for_members(1, 5s));
  REQUIRE(b.wait_for_members(1, 5s));
  auto credit = [&a] { return a.stats().gauge("flow.credit_bytes"); };
  REQUIRE(tmc::test::send_n(a, 10, "x"));
  REQUIRE(tmc::test::receive_n(b, 10).size() == 10);
  CHECK(eventually([&] { return credit() > 60000; }));

  // Full load: b's window is 0, so a's credit for it is 0 once b advertised that.
  REQUIRE(b.hint_load(1.0));
  CHECK_FALSE(b.hint_load(1.5));
  REQUIRE(a.send("y0"));
  CHECK(eventually([&] { return credit() == 0; }));
  // Full: a holds what it sends next instead of overrunning b.
  REQUIRE(tmc::test::send_n(a, 20, "y", 1));
  CHECK(tmc::test::receive_n(b, 1).size() == 1);  // y0
  CHECK(eventually([&] { return a.stats().counter("flow.waits") >= 20; }));
  CHECK(credit() == 0);

  // The hint cleared: b re-advertises without new traffic, and the whole window is back.
  REQUIRE(b.hint_load(0.0));
  CHECK(tmc::test::receive_n(b, 20).size() == 20);
  REQUIRE(a.send("z"));
  CHECK(tmc::test::receive_n(b, 1).size() == 1);
  CHECK(eventually([&] { return credit() > 60000; }));
  REQUIRE(tmc::test::send_n(a, 200, "w"));
  CHECK(tmc::test::receive_n(b, 200).size() == 200);
}
