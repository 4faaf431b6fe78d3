// Scenario 5: faults.inject as a stage inside the pipelines, over a clean network. The
// same fault model that runs on real sockets must leave the same guarantees standing.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 40;
constexpr std::uint32_t kWindow = 64;

using simtest::all;

}  // namespace

TEST_CASE("sim: faults.inject stage on a clean network: ordered and intact without duplicates in bounded memory") {
  std::uint64_t injected_corruptions = 0;
  std::uint64_t injected_losses = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    tmc::sim::Config cfg;
    cfg.seed = seed;
    cfg.link = LinkParams::clean();
    Network net(cfg);
    attach(net);
    static constexpr const char* kDirections[] = {"send", "receive", "both"};
    const bool strict = seed % 2 == 0;
    const std::string direction = kDirections[(seed / 2) % 3];
    const auto plan = tmc::sim::make_plan({
        tmc::sim::stage("ordering.fifo", {{"mode", strict ? "strict" : "drop-stale"},
                                          {"window", std::to_string(kWindow)},
                                          {"hold_us", "5000"}}),
        tmc::sim::stage("ordering.seq"),
        tmc::sim::stage("checksum.crc32c", {{"require", "true"}}),
        tmc::sim::stage("faults.inject", {{"loss", std::to_string(0.05 * static_cast<double>(seed % 4))},
                                          {"duplicate", "0.1"},
                                          {"reorder", "0.2"},
                                          {"corrupt", "0.1"},
                                          {"delay_us", (seed / 6) % 2 == 0 ? "0" : "200"},
                                          {"seed", std::to_string(seed)},
                                          {"direction", direction}}),
    });
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(plan);
    simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      simtest::check_fifo(net, r, seed, c);
      if (strict) {
        for (std::size_t s = 0; s < net.size(); ++s) {
          if (s == r) continue;
          const auto cov = simtest::check_exactly_once(net, r, s, net.epoch(s), c, kWindow + 1);
          c.expect(cov.last <= kMessages, "member ", r, " accounted for ", cov.last, " messages of member ", s,
                   ", more than were sent");
        }
      }
      c.expect(net.held_packets(r) == 0, "member ", r, " holds ", net.held_packets(r), " packets at idle");
      c.expect(net.pool_in_use(r) == 0, "member ", r, " has ", net.pool_in_use(r), " buffers in use at idle");
      const auto counters = net.counters(r);
      injected_corruptions += counters.get("faults.corrupted");
      injected_losses += counters.get("faults.lost");
    }
  });
  if (simtest::many_seeds(kSeeds)) {
    CHECK(injected_corruptions > 0);
    CHECK(injected_losses > 0);
  }
  MESSAGE("faults.inject: " << injected_corruptions << " corruptions and " << injected_losses
                            << " losses injected; none broke ordering or integrity");
}
