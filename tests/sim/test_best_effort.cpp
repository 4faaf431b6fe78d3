// Scenario 1: best effort (no stages). What the bare channel promises, and what it does not.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 40;  // per sender

using simtest::config;

std::size_t members_for(std::uint64_t seed) { return 3 + seed % 3; }

using simtest::all;

// Build a network of best-effort members and send kMessages from each.
template <class Attach>
void run(Network& net, std::uint64_t seed, Check& c, Attach& attach) {
  attach(net);
  const auto plan = tmc::sim::make_plan({});
  for (std::size_t i = 0; i < members_for(seed); ++i) net.add_member(plan);
  simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
  c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
}

}  // namespace

TEST_CASE("sim: best effort without faults: every message exactly once to every other member") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    LinkParams l = LinkParams::clean();
    l.jitter_ns = 200'000;  // arrival order varies; best effort promises no order
    Network net(config(seed, l));
    run(net, seed, c, attach);
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      c.expect(net.deliveries(r).size() == (net.size() - 1) * kMessages, "member ", r, " delivered ",
               net.deliveries(r).size(), " messages, expected ", (net.size() - 1) * kMessages);
      c.expect(net.pool_in_use(r) == 0, "member ", r, " still has ", net.pool_in_use(r), " buffers in use");
    }
  });
}

TEST_CASE("sim: best effort with loss and reordering: delivered is a subset of sent and has no duplicates") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    LinkParams l = LinkParams::clean();
    l.loss = 0.05 + 0.05 * static_cast<double>(seed % 5);  // 5% .. 25%
    l.reorder = 0.2;
    l.jitter_ns = 50'000;
    Network net(config(seed, l));
    run(net, seed, c, attach);
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      const auto& st = net.link_stats(r);
      c.expect(net.deliveries(r).size() == st.copies - st.lost, "member ", r, " delivered ",
               net.deliveries(r).size(), ", but ", st.copies, " copies were sent to it and ", st.lost, " lost");
    }
  });
}

TEST_CASE("sim: best effort with duplication: the only duplicates are those the network made") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    LinkParams l = LinkParams::clean();
    l.loss = 0.1;
    l.duplicate = 0.2;
    l.jitter_ns = 100'000;
    Network net(config(seed, l));
    run(net, seed, c, attach);
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      std::map<std::pair<std::size_t, std::uint32_t>, int> times;
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        ++times[{p.member, p.k}];
      }
      std::uint64_t repeats = 0;
      for (const auto& [key, n] : times) {
        c.expect(n <= 2, "member ", r, " delivered message ", key.second, " of ", key.first, " ", n, " times");
        repeats += static_cast<std::uint64_t>(n - 1);
      }
      const auto& st = net.link_stats(r);
      c.expect(repeats == st.duplicated, "member ", r, " delivered ", repeats, " repeats; the network duplicated ",
               st.duplicated);
      c.expect(net.deliveries(r).size() == st.copies - st.lost + st.duplicated, "member ", r,
               " delivery count does not add up");
    }
  });
}

TEST_CASE("sim: best effort with corruption: corrupted payloads reach the application (why error checking exists)") {
  std::uint64_t corrupted_delivered = 0;
  std::uint64_t corrupted_refused = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    LinkParams l = LinkParams::clean();
    l.corrupt = 0.2;
    l.corrupt_max_bits = 1 + static_cast<std::uint32_t>(seed % 3);
    Network net(config(seed, l));
    run(net, seed, c, attach);
    for (std::size_t r = 0; r < net.size(); ++r) {
      const std::uint64_t bad = simtest::check_intact(net, r, seed, c, /*corruption_allowed=*/true);
      const auto& st = net.link_stats(r);
      const auto counters = net.counters(r);
      const std::uint64_t refused = counters.get("drops.malformed") + counters.get("drops.foreign_channel");
      c.expect(bad <= st.corrupted_arrived, "member ", r, " delivered ", bad, " bad payloads but only ",
               st.corrupted_arrived, " corrupted copies arrived");
      c.expect(net.deliveries(r).size() + refused + counters.get("pipeline.own_packets") == st.arrived, "member ", r,
               ": deliveries + refused != arrivals");
      c.expect(refused == simtest::wire_errors(counters) + counters.get("drops.foreign_channel"), "member ", r,
               ": drops.malformed disagrees with wire.* counters");
      corrupted_delivered += bad;
      corrupted_refused += refused;
    }
  });
  // Across the seeds, corruption must have reached the application (the property the
  // checksum scenario then takes away) and must also have broken headers.
  if (simtest::many_seeds(kSeeds)) {
    CHECK(corrupted_delivered > 0);
    CHECK(corrupted_refused > 0);
  }
  MESSAGE("best effort: " << corrupted_delivered << " corrupted payloads delivered, " << corrupted_refused
                          << " corrupted datagrams refused by the decoder");
}
