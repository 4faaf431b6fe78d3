// Scenario 7: a sender restarts — same sender id, new pipeline, new epoch. Receivers must
// reset ordering for it and deliver its new messages (whose numbers start at 1 again).
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kBefore = 20;  // messages per member before the restart
constexpr std::uint32_t kAfter = 20;   // and after
constexpr std::uint64_t kInterval = 30'000;

using simtest::all;

}  // namespace

TEST_CASE("sim: sender restart with a new epoch: receivers reset its ordering and deliver its new messages") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    const bool strict = seed % 2 == 0;
    // Restart while the old incarnation's datagrams are still in flight, or after they landed.
    const bool overlap = (seed / 2) % 2 == 0;
    tmc::sim::Config cfg;
    cfg.seed = seed;
    cfg.link = LinkParams::clean();
    cfg.link.duplicate = 0.1;
    if (strict) {
      // drop-stale may drop reordered packets by design; only strict promises all of them.
      cfg.link.reorder = 0.2;
      cfg.link.reorder_delay_ns = 1'000'000;
      cfg.link.jitter_ns = 50'000;
    }
    Network net(cfg);
    attach(net);
    const auto plan = tmc::sim::make_plan(
        {tmc::sim::stage("ordering.fifo", {{"mode", strict ? "strict" : "drop-stale"}, {"hold_us", "5000"}}),
         tmc::sim::stage("ordering.seq")});
    const std::size_t n = 3 + seed % 2;
    for (std::size_t i = 0; i < n; ++i) net.add_member(plan);
    const std::uint32_t id = net.sender_id(0);
    const std::uint32_t e0 = net.epoch(0);

    simtest::schedule_burst(net, all(net), kBefore, 0, kInterval, seed);
    std::uint64_t t_restart = (kBefore - 1) * kInterval + 10'000;  // 10 us after the last old send
    if (!overlap) {
      c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle before the restart");
      t_restart = net.now_ns() + 10'000;
    }
    net.schedule(t_restart, [&net] { net.restart(0); });
    simtest::schedule_burst(net, all(net), kAfter, t_restart + 1'000, kInterval, seed, kBefore);
    c.expect(net.run_until_idle(20'000'000'000), "the run did not go idle after the restart");

    const std::uint32_t e1 = net.epoch(0);
    c.expect(net.sender_id(0) == id, "the restart changed the sender id");
    c.expect(e1 != e0, "the restart kept the epoch");
    c.expect(net.previous_counters(0).size() == 1, "the first incarnation's counters were not kept");
    const simtest::FirstK first_k{{{0, e1}, kBefore}};
    for (std::size_t r = 0; r < n; ++r) {
      simtest::check_intact(net, r, seed, c);
      c.expect(net.held_packets(r) == 0, "member ", r, " holds ", net.held_packets(r), " packets at idle");
      if (r == 0) {
        // The restarted member is a new process: each incarnation on its own delivers in
        // order and without duplicates (a network duplicate straddling the restart may
        // reach both, as it would two different processes).
        std::vector<tmc::sim::Delivery> before, after;
        for (const auto& d : net.deliveries(0)) (d.time_ns < t_restart ? before : after).push_back(d);
        for (const auto* log : {&before, &after}) {
          simtest::check_no_duplicates(*log, 0, seed, c);
          simtest::check_fifo(*log, 0, seed, c);
        }
        continue;
      }
      simtest::check_no_duplicates(net, r, seed, c);
      simtest::check_fifo(net, r, seed, c, first_k);
      std::uint32_t old_count = 0;
      std::uint32_t next_new = kBefore;
      for (const auto& d : net.deliveries(r)) {
        if (d.from != 0) continue;
        if (d.epoch == e0) {
          ++old_count;
          c.expect(next_new == kBefore, "member ", r, " delivered an old-epoch message after a new-epoch one");
          continue;
        }
        c.expect(d.epoch == e1, "member ", r, " delivered member 0's message with unknown epoch ", d.epoch);
        const auto p = simtest::parse_payload(d.payload, seed);
        c.expect(p.k == next_new, "member ", r, " delivered new message ", p.k, " of member 0, expected ", next_new);
        next_new = p.k + 1;
      }
      c.expect(next_new == kBefore + kAfter, "member ", r, " delivered member 0's new messages only up to ", next_new,
               " of ", kBefore + kAfter);
      if (!overlap || !strict) {
        // Nothing of the old incarnation can be overtaken without reordering or overlap.
        c.expect(old_count == kBefore, "member ", r, " delivered ", old_count, " of ", kBefore,
                 " messages of member 0's first incarnation");
      }
      std::uint32_t changes = 0;
      for (const auto& e : net.events(r)) {
        if (e.type == tmc::EventType::epoch_changed && e.sender == id) {
          ++changes;
          c.expect(e.epoch == e1, "member ", r, " reported an epoch change to ", e.epoch, ", expected ", e1);
        }
      }
      c.expect(changes == 1, "member ", r, " reported ", changes, " epoch changes of member 0");
    }
  });
}
