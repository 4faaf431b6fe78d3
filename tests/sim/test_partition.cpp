// Scenario 6: partition, then heal. Across the partition messages are lost; after healing
// delivery resumes, ordering skips the hole, and nothing livelocks.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 80;
constexpr std::uint64_t kInterval = 50'000;
constexpr std::uint64_t kT0 = 1'000'000;  // partition starts
constexpr std::uint64_t kT1 = 3'000'000;  // and heals

using simtest::all;

// A seeded split of the members into two non-empty groups; returns each member's side.
std::vector<int> split(std::size_t n, std::uint64_t seed) {
  std::vector<int> side(n);
  tmc::sim::Rng rng(seed ^ 0x5917);
  for (auto& s : side) s = static_cast<int>(rng.below(2));
  side[0] = 0;
  side[1 + rng.below(n - 1)] = 1;
  return side;
}

std::vector<std::vector<std::size_t>> groups_of(const std::vector<int>& side) {
  std::vector<std::vector<std::size_t>> g(2);
  for (std::size_t i = 0; i < side.size(); ++i) g[static_cast<std::size_t>(side[i])].push_back(i);
  return g;
}

// When member s sent message k (schedule_burst's timing) — which is when it left, as
// neither plan below delays on the send path.
std::uint64_t sent_at(std::size_t s, std::uint32_t k) { return k * kInterval + s * 7; }
bool cut_off(const std::vector<int>& side, std::size_t r, std::size_t s, std::uint32_t k) {
  return side[r] != side[s] && sent_at(s, k) >= kT0 && sent_at(s, k) < kT1;
}

}  // namespace

TEST_CASE("sim: partition then heal (best effort): lost across the partition and delivered before and after") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    tmc::sim::Config cfg;
    cfg.seed = seed;
    cfg.link = LinkParams::clean();
    cfg.link.jitter_ns = 40'000;
    Network net(cfg);
    attach(net);
    const std::size_t n = 3 + seed % 3;
    for (std::size_t i = 0; i < n; ++i) net.add_member(tmc::sim::make_plan({}));
    const auto side = split(n, seed);
    net.partition(groups_of(side), kT0, kT1);
    simtest::schedule_burst(net, all(net), kMessages, 0, kInterval, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    for (std::size_t r = 0; r < n; ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      std::vector<std::vector<bool>> got(n, std::vector<bool>(kMessages, false));
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        if (p.ok && p.member < n && p.k < kMessages) got[p.member][p.k] = true;
      }
      for (std::size_t s = 0; s < n; ++s) {
        if (s == r) continue;
        for (std::uint32_t k = 0; k < kMessages; ++k) {
          c.expect(got[s][k] != cut_off(side, r, s, k), "member ", r, (got[s][k] ? " got" : " missed"),
                   " message ", k, " of member ", s, " sent at t=", sent_at(s, k), " (sides ", side[r], "/", side[s],
                   ")");
        }
      }
    }
  });
}

TEST_CASE("sim: partition then heal with ordering.fifo strict: the hole is skipped and delivery resumes without livelock") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    tmc::sim::Config cfg;
    cfg.seed = seed;
    cfg.link = LinkParams::clean();
    cfg.link.jitter_ns = 40'000;
    Network net(cfg);
    attach(net);
    const std::size_t n = 3 + seed % 3;
    // The hole (2 ms / 50 us = 40 messages) is larger than the small window and smaller
    // than the large one: both ways of giving up on a gap are exercised.
    const std::uint32_t window = seed % 2 == 0 ? 16 : 64;
    const auto plan = tmc::sim::make_plan({tmc::sim::stage("ordering.fifo", {{"mode", "strict"},
                                                                             {"window", std::to_string(window)},
                                                                             {"hold_us", "1000"}}),
                                           tmc::sim::stage("ordering.seq")});
    for (std::size_t i = 0; i < n; ++i) net.add_member(plan);
    const auto side = split(n, seed);
    // Heal by hand, from inside the run, this time.
    net.partition(groups_of(side), kT0);
    net.schedule(kT1, [&net] { net.heal_all(); });
    simtest::schedule_burst(net, all(net), kMessages, 0, kInterval, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle (livelock?)");
    for (std::size_t r = 0; r < n; ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      simtest::check_fifo(net, r, seed, c);
      for (std::size_t s = 0; s < n; ++s) {
        if (s == r) continue;
        const auto cov = simtest::check_exactly_once(net, r, s, net.epoch(s), c);
        c.expect(cov.last == kMessages, "member ", r, " accounted for ", cov.last, " of ", kMessages,
                 " messages of member ", s);
        std::uint32_t expected = 0;
        for (std::uint32_t k = 0; k < kMessages; ++k) expected += cut_off(side, r, s, k) ? 0 : 1;
        std::uint32_t delivered = 0;
        for (const auto& d : net.deliveries(r)) delivered += d.from == s ? 1 : 0;
        c.expect(delivered == expected, "member ", r, " delivered ", delivered, " messages of member ", s,
                 ", expected ", expected);
      }
      c.expect(net.held_packets(r) == 0, "member ", r, " holds ", net.held_packets(r), " packets at idle");
      c.expect(net.pool_in_use(r) == 0, "member ", r, " has ", net.pool_in_use(r), " buffers in use at idle");
    }
  });
}
