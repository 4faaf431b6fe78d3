// Scenarios 2 and 3: ordering.fifo (drop-stale and strict) above ordering.seq.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 40;  // per sender

using simtest::config;

using simtest::all;

tmc::Plan drop_stale_plan() {
  return tmc::sim::make_plan(
      {tmc::sim::stage("ordering.fifo", {{"mode", "drop-stale"}}), tmc::sim::stage("ordering.seq")});
}

tmc::Plan strict_plan(std::uint32_t window, std::uint64_t hold_us) {
  return tmc::sim::make_plan({tmc::sim::stage("ordering.fifo", {{"mode", "strict"},
                                                                {"window", std::to_string(window)},
                                                                {"hold_us", std::to_string(hold_us)}}),
                              tmc::sim::stage("ordering.seq")});
}

// Loss, reordering, duplication and jitter, varied by seed.
LinkParams faulty_link(std::uint64_t seed, bool lossy) {
  LinkParams l = LinkParams::clean();
  l.loss = lossy ? 0.05 + 0.05 * static_cast<double>(seed % 4) : 0.0;  // 5% .. 20%
  l.reorder = 0.1 + 0.1 * static_cast<double>((seed / 4) % 3);            // 10% .. 30%
  l.reorder_delay_ns = 2'000'000;
  l.duplicate = 0.1;
  l.jitter_ns = 60'000;
  return l;
}

void check_bounded(const Network& net, Check& c) {
  for (std::size_t r = 0; r < net.size(); ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at idle");
    c.expect(net.pool_in_use(r) == 0, "member ", r, " still has ", net.pool_in_use(r), " buffers in use at idle");
  }
}

}  // namespace

TEST_CASE("sim: ordering.fifo drop-stale under loss + reordering + duplication: increasing and intact without duplicates") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(config(seed, faulty_link(seed, /*lossy=*/true)));
    attach(net);
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(drop_stale_plan());
    simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      simtest::check_fifo(net, r, seed, c);
      const auto counters = net.counters(r);
      const std::uint64_t dropped = counters.get("drops.stale") + counters.get("drops.duplicate");
      c.expect(net.deliveries(r).size() + dropped == net.link_stats(r).arrived, "member ", r, ": ",
               net.deliveries(r).size(), " delivered + ", dropped, " dropped as stale/duplicate != ",
               net.link_stats(r).arrived, " arrived");
    }
    check_bounded(net, c);
  });
}

TEST_CASE("sim: ordering.fifo strict with reordering and no loss: every message once in send order") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(config(seed, faulty_link(seed, /*lossy=*/false)));
    attach(net);
    // The window covers the deepest reordering (2 ms / 30 us per message) and hold_us is
    // longer than the largest extra delay, so nothing may be skipped.
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(strict_plan(256, 20'000));
    simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      std::vector<std::uint32_t> next(net.size(), 0);
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        if (!p.ok || p.member >= net.size()) continue;
        c.expect(p.k == next[p.member], "member ", r, " delivered message ", p.k, " of member ", p.member,
                 " when message ", next[p.member], " was due");
        next[p.member] = p.k + 1;
      }
      for (std::size_t s = 0; s < net.size(); ++s) {
        if (s == r) continue;
        c.expect(next[s] == kMessages, "member ", r, " delivered ", next[s], " of ", kMessages, " messages of member ",
                 s);
      }
      c.expect(net.events(r).empty(), "member ", r, " reported ", net.events(r).size(), " events (gaps?)");
    }
    check_bounded(net, c);
  });
}

TEST_CASE("sim: ordering.fifo strict with loss: in order with gaps reported (exactly-once accounting) in bounded memory") {
  std::uint64_t join_gaps = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    Network net(config(seed, faulty_link(seed, /*lossy=*/true)));
    attach(net);
    // Small windows make packets land beyond the window (window skips); short holds make
    // gaps time out while reordered packets are still in flight (late packets are stale).
    static constexpr std::uint32_t kWindows[] = {4, 16, 256};
    static constexpr std::uint64_t kHolds[] = {300, 3'000, 20'000};
    const std::uint32_t window = kWindows[seed % 3];
    const std::uint64_t hold_us = kHolds[(seed / 3) % 3];
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(strict_plan(window, hold_us));
    simtest::schedule_burst(net, all(net), kMessages, 0, 30'000, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    check_bounded(net, c);
    // A fence: one more message from everyone over a clean network, so the tail of the
    // burst is accounted for too (a receiver cannot know of messages after the last one
    // it heard of).
    net.set_default_link(LinkParams::clean());
    simtest::schedule_burst(net, all(net), 1, net.now_ns() + 1'000, 1, seed, kMessages);
    c.expect(net.run_until_idle(20'000'000'000), "the run did not go idle after the fence");
    for (std::size_t r = 0; r < net.size(); ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      simtest::check_fifo(net, r, seed, c);
      for (std::size_t s = 0; s < net.size(); ++s) {
        if (s == r) continue;
        // Every receiver was present from the start, so for every window size the
        // delivered numbers and the reported gaps must cover 1..N exactly, even when the
        // first window + 1 messages were lost (the stage then reports them as a join gap).
        const auto cov = simtest::check_exactly_once(net, r, s, net.epoch(s), c);
        c.expect(cov.first == 1 && cov.last == kMessages + 1, "member ", r, " accounted for messages ", cov.first,
                 "..", cov.last, " of 1..", kMessages + 1, " of member ", s, " (delivered + skipped), window ",
                 window);
      }
      join_gaps += net.counters(r).get("ordering.join_skipped");
    }
    check_bounded(net, c);
  });
  // Only the smallest window (4) is likely to see a sender's first 5 messages lost or late;
  // the stage then reports 1..first-1 as a join gap, which the coverage check above counts.
  MESSAGE("strict with loss: " << join_gaps << " (receiver, sender) pairs started with a join gap");
}
