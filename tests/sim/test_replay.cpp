// Scenario 8: replay determinism. The same seed, run twice, gives identical delivery logs,
// events and counters (compared through Network::fingerprint() and directly).
#include <doctest/doctest.h>

#include <set>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;

struct Outcome {
  std::uint64_t fingerprint = 0;
  std::vector<std::vector<tmc::sim::Delivery>> deliveries;
  std::vector<std::vector<std::uint64_t>> counters;
  bool idle = false;
};

// Everything at once: every network fault, a partition that heals, a restart, and a
// pipeline with every stage of this issue (faults.inject included).
template <class Attach>
Outcome run(std::uint64_t seed, Attach& attach) {
  tmc::sim::Config cfg;
  cfg.seed = seed;
  cfg.link.loss = 0.05;
  cfg.link.duplicate = 0.05;
  cfg.link.reorder = 0.1;
  cfg.link.jitter_ns = 30'000;
  cfg.link.corrupt = 0.05;
  cfg.link.corrupt_max_bits = 2;
  Network net(cfg);
  attach(net);
  const auto plan = tmc::sim::make_plan({
      tmc::sim::stage("ordering.fifo", {{"mode", seed % 2 == 0 ? "strict" : "drop-stale"}, {"hold_us", "2000"}}),
      tmc::sim::stage("ordering.seq"),
      tmc::sim::stage("checksum.crc32c"),
      tmc::sim::stage("faults.inject", {{"loss", "0.02"}, {"reorder", "0.1"}, {"corrupt", "0.02"}, {"direction", "both"}}),
  });
  for (int i = 0; i < 4; ++i) net.add_member(plan);
  LinkParams toward_3 = cfg.link;
  toward_3.loss = 0.3;
  net.set_link_to(3, toward_3);
  net.partition({{0, 1}, {2, 3}}, 400'000, 900'000);
  net.schedule(700'000, [&net] { net.restart(2); });
  simtest::schedule_burst(net, {0, 1, 2, 3}, 40, 0, 30'000, seed);
  Outcome o;
  o.idle = net.run_until_idle(10'000'000'000);
  o.fingerprint = net.fingerprint();
  for (std::size_t i = 0; i < net.size(); ++i) {
    o.deliveries.push_back(net.deliveries(i));
    o.counters.push_back(net.counters(i).values);
  }
  return o;
}

bool same(const tmc::sim::Delivery& a, const tmc::sim::Delivery& b) {
  return a.from == b.from && a.sender == b.sender && a.epoch == b.epoch && a.seq == b.seq && a.flags == b.flags &&
         a.time_ns == b.time_ns && a.payload == b.payload;
}

}  // namespace

TEST_CASE("sim: replay determinism: the same seed twice gives identical logs and counters") {
  std::set<std::uint64_t> fingerprints;
  std::uint64_t runs = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    const Outcome a = run(seed, attach);
    auto no_trace = [](Network&) {};
    const Outcome b = run(seed, no_trace);
    c.expect(a.idle && b.idle, "a run did not go idle");
    c.expect(a.fingerprint == b.fingerprint, "fingerprints differ: ", a.fingerprint, " vs ", b.fingerprint);
    c.expect(a.counters == b.counters, "counters differ between the two runs");
    c.expect(a.deliveries.size() == b.deliveries.size(), "member counts differ");
    for (std::size_t m = 0; m < a.deliveries.size() && m < b.deliveries.size(); ++m) {
      const auto& x = a.deliveries[m];
      const auto& y = b.deliveries[m];
      c.expect(x.size() == y.size(), "member ", m, " delivered ", x.size(), " then ", y.size(), " messages");
      for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
        if (!c.expect(same(x[i], y[i]), "member ", m, " delivery ", i, " differs between the runs")) break;
      }
    }
    fingerprints.insert(a.fingerprint);
    ++runs;
  });
  // Different seeds must actually give different runs (the seed reaches the faults).
  CHECK(fingerprints.size() == runs);
}
