// Large messages and the memory they may take (OpenOptions::large_message_bytes): a
// blocking send() waits for room instead of failing, a message that could never fit is
// refused at once naming the sizes, and close() ends the wait. Real channels on loopback;
// every wait below is bounded, none is measured.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"

using namespace std::chrono_literals;
using tmc::test::manifest_for;

namespace {

constexpr std::size_t kMiB = 1024 * 1024;

tmc::Manifest reliable_large(const std::string& id, int offset, const std::string& name) {
  tmc::Manifest m = manifest_for(id, offset, name);
  m.max_message_bytes = 4 * kMiB;
  m.members = {"tx", "rx"};
  m.reliability.enabled = true;  // a fragment the loopback buffer drops is repaired
  return m;
}

std::vector<std::uint8_t> payload(std::size_t n, std::uint8_t salt) {
  std::vector<std::uint8_t> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * 13 + salt) & 0xFF);
  return b;
}

std::uint64_t waited_for_memory(const tmc::Channel& c) { return c.stats().counter("shell.send_waited_for_memory"); }

/// Open tx (large-message budget `budget`) and rx; rx sends tx two 1 MiB messages, which
/// tx receives and the caller keeps: they hold most of tx's budget.
struct HeldBudget {
  tmc::Channel tx;
  tmc::Channel rx;
  std::vector<tmc::Message> held;

  HeldBudget(const std::string& id, int offset, std::uint64_t budget) {
    tmc::OpenOptions o;
    o.large_message_bytes = budget;
    o.send_blocks_when_full = true;
    tx = tmc::Channel::open(reliable_large(id, offset, "tx"), o);
    rx = tmc::Channel::open(reliable_large(id, offset, "rx"));
    REQUIRE(tx.wait_for_members(1, 10s));
    REQUIRE(rx.wait_for_members(1, 10s));
    for (std::uint8_t salt : {1, 2}) {
      std::future<tmc::DeliveryOutcome> outcome;
      REQUIRE(rx.send(payload(kMiB, salt), tmc::MessageManifest{}, &outcome));
      REQUIRE(outcome.wait_for(30s) == std::future_status::ready);
      REQUIRE(outcome.get().state == tmc::DeliveryOutcome::State::met);
      std::optional<tmc::Message> m = tx.receive(30s);
      REQUIRE(m.has_value());
      REQUIRE(m->to_vector() == payload(kMiB, salt));
      held.push_back(std::move(*m));
    }
  }
};

}  // namespace

TEST_CASE("a large message that can never fit the large-message budget is refused at once, naming the sizes") {
  tmc::OpenOptions o;
  o.large_message_bytes = 2 * kMiB;
  auto tx = tmc::Channel::open(reliable_large("never-fits", 22, "tx"), o);
  const tmc::Status s = tx.send(payload(3 * kMiB, 0));
  CHECK(s.code() == tmc::Code::MESSAGE_TOO_LARGE);
  CHECK(s.message().find(std::to_string(3 * kMiB) + " bytes") != std::string::npos);
  CHECK(s.message().find("budget of " + std::to_string(2 * kMiB) + " bytes") != std::string::npos);
  CHECK(waited_for_memory(tx) == 0);
  CHECK(tx.send(payload(kMiB, 0)));  // one that fits still goes
}

TEST_CASE("a blocking send waits for large-message memory and sends once the application lets go") {
  // Three 1 MiB buffers (and their headroom) do not fit in 3 MiB: with two held, the
  // third send must wait, where it used to return WOULD_BLOCK at once.
  HeldBudget h("waits-for-room", 23, 3 * kMiB);
  std::atomic<bool> done{false};
  tmc::Status sent;
  std::thread sender([&] {
    sent = h.tx.send(payload(kMiB, 3));
    done.store(true);
  });
  for (int i = 0; i < 3000 && !done.load() && waited_for_memory(h.tx) == 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(waited_for_memory(h.tx) == 1);
  CHECK_FALSE(done.load());
  h.held.clear();  // frees the two received messages' buffers
  sender.join();
  CHECK(sent);
  std::optional<tmc::Message> got = h.rx.receive(30s);
  REQUIRE(got.has_value());
  CHECK(got->to_vector() == payload(kMiB, 3));
}

TEST_CASE("close() ends a send that waits for large-message memory, with CLOSED") {
  HeldBudget h("closed-while-waiting", 23, 3 * kMiB);
  std::atomic<bool> done{false};
  tmc::Status sent;
  std::thread sender([&] {
    sent = h.tx.send(payload(kMiB, 4));
    done.store(true);
  });
  for (int i = 0; i < 3000 && !done.load() && waited_for_memory(h.tx) == 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(waited_for_memory(h.tx) == 1);
  h.tx.close();
  sender.join();
  CHECK(sent.code() == tmc::Code::CLOSED);
}
