// Scenario 4: checksum.crc32c under corruption — no corrupted payload is ever delivered.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 40;

using simtest::all;

}  // namespace

TEST_CASE("sim: checksum.crc32c with up to 20% corruption: no corrupted payload is delivered and each is counted") {
  std::uint64_t corrupted_total = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    tmc::sim::Config cfg;
    cfg.seed = seed;
    cfg.link = LinkParams::clean();
    cfg.link.corrupt = 0.01 + 0.19 * static_cast<double>(seed % 5) / 4.0;  // 1% .. 20%
    cfg.link.corrupt_max_bits = 1 + static_cast<std::uint32_t>(seed % 4);  // 1 .. 4 bits
    cfg.link.duplicate = 0.05;
    cfg.link.jitter_ns = 50'000;
    Network net(cfg);
    attach(net);
    const auto plan = tmc::sim::make_plan(
        {tmc::sim::stage("ordering.seq"), tmc::sim::stage("checksum.crc32c", {{"require", "true"}})});
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(plan);
    simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);  // no corrupted payload, ever
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        c.expect(!p.ok || d.seq == std::uint64_t{p.k} + 1, "member ", r, " delivered seq ", d.seq,
                 " with the payload of message ", p.k);
        c.expect((d.flags & tmc::wire::kFlagCrc) != 0, "member ", r, " delivered a datagram without a checksum");
      }
      // Every corrupted copy that arrived was refused, under one of these reasons, and
      // every intact copy was delivered.
      const auto counters = net.counters(r);
      const auto& st = net.link_stats(r);
      const std::uint64_t refused =
          simtest::sum_counters(counters, {"drops.checksum", "drops.malformed", "drops.foreign_channel",
                                           "drops.missing_checksum"});
      c.expect(refused == st.corrupted_arrived, "member ", r, ": ", st.corrupted_arrived,
               " corrupted copies arrived but ", refused, " were refused (checksum ",
               counters.get("drops.checksum"), ", malformed ", counters.get("drops.malformed"), ", foreign channel ",
               counters.get("drops.foreign_channel"), ", missing checksum ", counters.get("drops.missing_checksum"),
               ")");
      c.expect(net.deliveries(r).size() == st.arrived - st.corrupted_arrived, "member ", r, " delivered ",
               net.deliveries(r).size(), " of ", st.arrived - st.corrupted_arrived, " intact copies");
      c.expect(counters.get("drops.malformed") == simtest::wire_errors(counters), "member ", r,
               ": a malformed drop that the decoder did not count (a stage saw a corrupted header?)");
      c.expect(counters.get("checksum.mismatch") == counters.get("drops.checksum"), "member ", r,
               ": checksum.mismatch != drops.checksum");
      corrupted_total += st.corrupted_arrived;
    }
  });
  if (simtest::many_seeds(kSeeds)) CHECK(corrupted_total > 0);
  MESSAGE("crc32c: " << corrupted_total << " corrupted datagrams refused, none delivered");
}
