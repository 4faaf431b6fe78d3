// The compiler's own plans for reliability + point-to-point ordering, with and without
// coalescing (the reliable-multicast benchmark's manifest), run in the simulator under loss up to 20%,
// duplication, reordering, corruption and delay:
//   - every member delivers every message of every other member exactly once, intact, in
//     the order sent, and every message is met at its sender (or reported failed);
//   - reliability.arq, asked by the compiler for deliver=in_order, holds what arrives
//     above a gap and passes it up in order, so ordering.fifo above never holds anything
//     (the point of in_order: one held datagram instead of every message of a batch) unless
//     arq had to let a held packet go before its gap filled;
//   - nothing is left held and every buffer is back when the run ends.
#include <doctest/doctest.h>

#include "sim_util.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint64_t kMs = 1'000'000;

tmc::Plan compiled(const std::string& yaml, std::size_t self) {
  return simtest::compile_plan(yaml, "m" + std::to_string(self));
}

bool has_param(const tmc::Plan& p, std::string_view kind, std::string_view key, std::string_view value) {
  for (const auto& s : p.stages) {
    if (s.kind != kind) continue;
    auto it = s.params.find(key);
    return it != s.params.end() && it->second == value;
  }
  return false;
}

struct Totals {
  std::uint64_t arq_held = 0;       // reliability.held_in_order, all members
  std::uint64_t fifo_held = 0;      // ordering.held, all members
  std::uint64_t released_early = 0;
  std::uint64_t failed = 0;
  std::uint64_t met = 0;
};

void scenario(const std::string& yaml, bool coalesced, std::uint64_t seed, Check& c, Totals& t,
              const std::function<void(Network&)>& attach) {
  Network net(simtest::config(seed, simtest::hostile_link(0.05 * static_cast<double>(seed % 5))));  // 0% .. 20%
  attach(net);
  constexpr std::size_t n = 3;
  for (std::size_t i = 0; i < n; ++i) net.add_member(compiled(yaml, i));
  // Bursts close enough together for coalescing to batch them; every member sends.
  constexpr std::uint32_t kCount = 120;
  simtest::schedule_burst(net, simtest::all(net), kCount, 300 * kMs, 40'000, seed);
  c.expect(net.run_until(12'000 * kMs), "event limit hit");

  for (std::size_t s = 0; s < n; ++s) {
    std::uint64_t met = 0;
    std::uint64_t failed = 0;
    for (const auto& e : net.events(s)) {
      if (e.type == tmc::EventType::delivery_met) ++met;
      if (e.type == tmc::EventType::delivery_failed) ++failed;
    }
    // With coalescing a batch's messages share its outcome (the application asks for a
    // message's own by waiting on it, which the simulator does not).
    c.expect(coalesced ? (met + failed > 0 && met + failed <= kCount) : met + failed == kCount, "member ", s, " has ",
             met + failed, " outcomes for ", kCount, " messages");
    t.met += met;
    t.failed += failed;
  }
  for (std::size_t r = 0; r < n; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    // In the order sent, and (with nothing failed) everything.
    std::vector<std::int64_t> last(n, -1);
    std::vector<std::uint32_t> got(n, 0);
    for (const auto& d : net.deliveries(r)) {
      const auto p = simtest::parse_payload(d.payload, seed);
      if (!p.ok || p.member >= n) continue;
      c.expect(static_cast<std::int64_t>(p.k) > last[p.member], "member ", r, " delivered message ", p.k,
               " of member ", p.member, " after message ", last[p.member]);
      last[p.member] = p.k;
      ++got[p.member];
    }
    const auto cs = net.counters(r);
    const std::uint64_t early = cs.get("reliability.held_released_early");
    const std::uint64_t fifo_held = cs.get("ordering.held");
    for (std::size_t s = 0; s < n; ++s) {
      if (s == r) continue;
      bool any_failed = false;
      for (const auto& e : net.events(s)) any_failed = any_failed || e.type == tmc::EventType::delivery_failed;
      c.expect(any_failed || got[s] == kCount, "member ", r, " delivered ", got[s], " of ", kCount,
               " messages of member ", s, " and none failed");
    }
    c.expect(early > 0 || fifo_held == 0, "member ", r, ": ordering.fifo held ", fifo_held,
             " packets although reliability.arq let nothing go early");
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at the end");
    t.arq_held += cs.get("reliability.held_in_order");
    t.fifo_held += fifo_held;
    t.released_early += early;
  }
}

const std::string kReliableOrdered =
    "id: sim-reliable-ordered\n"
    "members: [m0, m1, m2]\n"
    "reliability: true\n"
    "point-to-point ordering: strict\n"
    "error checking: true\n";

void run(const std::string& yaml) {
  const tmc::Plan p = compiled(yaml, 0);
  REQUIRE(has_param(p, "reliability.arq", "deliver", "in_order"));
  const bool coalesced = has_param(p, "pacing.coalesce", "records", "compact");
  Totals t;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    scenario(yaml, coalesced, seed, c, t, attach);
  });
  if (simtest::many_seeds(kSeeds)) {
    CHECK(t.arq_held > 0);                 // gaps were waited for in reliability.arq ...
    CHECK(t.fifo_held <= t.arq_held / 100);  // ... and almost never in ordering.fifo
    CHECK(t.failed * 1000 <= t.met);       // failures are rare (< 0.1%)
  }
  MESSAGE("held in reliability.arq " << t.arq_held << ", in ordering.fifo " << t.fifo_held << ", released early "
                                     << t.released_early << ", met " << t.met << ", failed " << t.failed);
}

}  // namespace

TEST_CASE("sim: compiled plan reliability + point-to-point ordering: exactly once and in order and ordering holds nothing") {
  run(kReliableOrdered);
}

TEST_CASE("sim: compiled plan reliability + point-to-point ordering + coalescing: exactly once and in order and ordering holds nothing") {
  run(kReliableOrdered + "pacing: {coalesce us: 200}\n");
}
