// faults.inject: each fault, its counter, determinism per seed, bounded holding.
#include <doctest/doctest.h>

#include <algorithm>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr int kN = 100000;

struct Run {
  std::uint64_t transmitted = 0;
  std::uint64_t lost = 0, duplicated = 0, reordered = 0, corrupted = 0, inversions = 0;
  bool operator==(const Run&) const = default;
};

// Send kN messages through [ordering.seq, faults.inject(params)] and look at what comes out
// (numbered first, so that reordering shows as inversions of Packet::seq).
Run run(std::initializer_list<std::pair<const std::string, std::string>> params, std::uint64_t env_seed = 42) {
  PacketPool pool(512, 256, 1 << 16);
  Endpoint ep(pool, make_plan({stage("ordering.seq"), stage("faults.inject", params)}), make_env(1, 1000, env_seed));
  Run r;
  std::uint64_t last = 0;
  for (int i = 0; i < kN; ++i) {
    ep.send("0123456789abcdef", std::uint64_t(i) * 1000);
    for (Packet* p : ep.sink.transmitted) {
      if (p->seq < last) ++r.inversions;
      last = p->seq;
    }
    r.transmitted += ep.sink.transmitted.size();
    ep.sink.clear();
  }
  ep->tick(std::uint64_t(kN) * 1000 + 10'000'000);
  r.transmitted += ep.sink.transmitted.size();
  ep.sink.clear();
  const CounterSnapshot c = ep->counters();
  r.lost = c.get("faults.lost");
  r.duplicated = c.get("faults.duplicated");
  r.reordered = c.get("faults.reordered");
  r.corrupted = c.get("faults.corrupted");
  CHECK(ep->drops(DropReason::injected) == r.lost);
  CHECK(ep->held_packets() == 0);
  return r;
}

}  // namespace

TEST_CASE("faults.inject: with every probability zero it is a no-op") {
  const Run r = run({});
  CHECK(r.transmitted == kN);
  CHECK(r == Run{kN, 0, 0, 0, 0, 0});
}

TEST_CASE("faults.inject: loss drops about the asked fraction, exactly the same for the same seed") {
  const Run a = run({{"loss", "0.1"}, {"seed", "5"}});
  const Run b = run({{"loss", "0.1"}, {"seed", "5"}});
  const Run c = run({{"loss", "0.1"}, {"seed", "6"}});
  CHECK(a == b);
  CHECK(a.lost != c.lost);
  CHECK(a.lost == 9976);  // this seed's exact outcome (deterministic)
  CHECK(a.lost > 9500);
  CHECK(a.lost < 10500);
  CHECK(a.transmitted == kN - a.lost);
  // The endpoint's own seed takes part, so two endpoints with one manifest differ.
  const Run d = run({{"loss", "0.1"}, {"seed", "5"}}, 43);
  CHECK(d.lost != a.lost);
}

TEST_CASE("faults.inject: duplication passes both copies") {
  const Run r = run({{"duplicate", "0.05"}});
  CHECK(r.duplicated > 4700);
  CHECK(r.duplicated < 5300);
  CHECK(r.transmitted == kN + r.duplicated);
}

TEST_CASE("faults.inject: reordering holds a packet behind the next one, never losing it") {
  const Run r = run({{"reorder", "0.1"}});
  CHECK(r.reordered > 9500);
  CHECK(r.reordered < 10500);
  CHECK(r.transmitted == kN);
  CHECK(r.inversions > 8000);  // held packets come out after a later one
}

TEST_CASE("faults.inject: all faults at once are counted and conserve packets") {
  const Run r = run({{"loss", "0.02"}, {"duplicate", "0.02"}, {"reorder", "0.02"}, {"corrupt", "0.02"}});
  CHECK(r.lost > 1800);
  CHECK(r.lost < 2200);
  CHECK(r.corrupted > 1800);
  CHECK(r.corrupted < 2200);
  CHECK(r.transmitted == kN - r.lost + r.duplicated);
}

TEST_CASE("faults.inject: a reordered packet alone is released by the timer") {
  PacketPool pool(512, 16, 256);
  Endpoint ep(pool, make_plan({stage("faults.inject", {{"reorder", "1"}})}), make_env(1));
  ep.send("a", 0);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->held_packets() == 1);
  CHECK(ep->next_deadline_ns() == 1'000'000);
  ep->tick(1'000'000);
  CHECK(ep.sink.transmitted.size() == 1);
  CHECK(ep->held_packets() == 0);
}

TEST_CASE("faults.inject: delay holds every packet for delay_us, in order") {
  PacketPool pool(512, 16, 256);
  Endpoint ep(pool, make_plan({stage("ordering.seq"), stage("faults.inject", {{"delay_us", "100"}})}), make_env(1));
  ep.send("a", 0);
  ep.send("b", 30'000);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->held_packets() == 2);
  CHECK(ep->next_deadline_ns() == 100'000);
  ep->tick(100'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep->next_deadline_ns() == 130'000);
  ep->tick(130'000);
  REQUIRE(ep.sink.transmitted.size() == 2);
  CHECK(ep.sink.transmitted[0]->seq == 1);
  CHECK(ep.sink.transmitted[1]->seq == 2);
  CHECK(ep->counters().get("faults.delayed") == 2);
}

TEST_CASE("faults.inject: held packets are bounded; beyond the cap they pass undelayed") {
  PacketPool pool(512, 256, 8192);
  Endpoint ep(pool, make_plan({stage("faults.inject", {{"delay_us", "1000000"}})}), make_env(1));
  for (int i = 0; i < 5000; ++i) ep.send("x", 0);
  CHECK(ep->held_packets() == 4096);
  CHECK(ep.sink.transmitted.size() == 5000 - 4096);
  CHECK(ep->counters().get("faults.overflow") == 5000 - 4096);
}

TEST_CASE("faults.inject: corruption on send is caught by checksum.crc32c on receive") {
  PacketPool pool(512, 64, 4096);
  // Send path top to bottom: crc32c appends its trailer, then faults flips a bit.
  Endpoint tx(pool, make_plan({stage("checksum.crc32c"), stage("faults.inject", {{"corrupt", "1"}})}), make_env(1));
  Endpoint rx(pool, make_plan({stage("checksum.crc32c", {{"require", "true"}})}), make_env(2));
  for (int i = 0; i < 2000; ++i) {
    tx.send("the payload must never arrive corrupted");
    carry(tx, rx);
  }
  CHECK(tx->counters().get("faults.corrupted") == 2000);
  CHECK(rx.sink.delivered.empty());
  const std::uint64_t refused = rx->drops(DropReason::checksum) + rx->drops(DropReason::malformed) +
                                rx->drops(DropReason::foreign_channel) + rx->drops(DropReason::missing_checksum) +
                                rx->counter(PipelineCounter::own_packets);
  CHECK(refused == 2000);
  CHECK(rx->drops(DropReason::checksum) > 1000);
}

TEST_CASE("faults.inject: corruption on receive is decoded again and caught by the checksum above") {
  PacketPool pool(512, 64, 4096);
  Endpoint tx(pool, make_plan({stage("checksum.crc32c")}), make_env(1));
  // Receive path bottom to top: faults flips a bit, then crc32c verifies.
  Endpoint rx(pool,
              make_plan({stage("checksum.crc32c"),
                         stage("faults.inject", {{"corrupt", "0.5"}, {"direction", "receive"}})}),
              make_env(2));
  for (int i = 0; i < 2000; ++i) {
    tx.send("hello");
    carry(tx, rx);
  }
  const std::uint64_t corrupted = rx->counters().get("faults.corrupted");
  CHECK(corrupted > 900);
  CHECK(corrupted < 1100);
  CHECK(rx.sink.delivered.size() == 2000 - corrupted);
  CHECK(rx->drops(DropReason::checksum) + rx->drops(DropReason::malformed) == corrupted);
  CHECK(rx->drops(DropReason::malformed) > 0);  // some flips hit the header's framing
  for (const std::string& s : rx.sink.payloads()) CHECK(s == "hello");
}

TEST_CASE("faults.inject: direction chooses the path") {
  PacketPool pool(512, 64, 4096);
  Endpoint only_rx(pool, make_plan({stage("faults.inject", {{"loss", "1"}, {"direction", "receive"}})}), make_env(1));
  Endpoint both(pool, make_plan({stage("faults.inject", {{"loss", "1"}, {"direction", "both"}})}), make_env(2));
  only_rx.send("out");
  CHECK(only_rx.sink.transmitted.size() == 1);
  carry(only_rx, both);
  CHECK(both.sink.delivered.empty());
  both.send("out");
  CHECK(both.sink.transmitted.empty());
  CHECK(both->counters().get("faults.lost") == 2);
}

TEST_CASE("faults.inject: the destructor releases held packets") {
  PacketPool pool(512, 16, 256);
  {
    Endpoint ep(pool, make_plan({stage("faults.inject", {{"delay_us", "5"}, {"reorder", "0.5"}})}), make_env(1));
    for (int i = 0; i < 20; ++i) ep.send("x", 0);
    CHECK(ep->held_packets() > 0);
    ep.sink.clear();
  }
  CHECK(pool.in_use() == 0);
}

TEST_CASE("faults.inject: bad parameters are refused with their names") {
  PacketPool pool(512, 8, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(
      make_plan({stage("faults.inject", {{"loss", "1.5"}, {"corrupt", "-0.1"}, {"direction", "sideways"},
                                         {"delay_us", "-3"}})}),
      Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  for (const char* name : {"'loss'", "'corrupt'", "'direction'", "'delay_us'"}) {
    CAPTURE(name);
    CHECK(st.message().find(name) != std::string::npos);
  }
}
