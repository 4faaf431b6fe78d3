// Members joining a large group one at a time while a sender streams, 1 % loss on every
// link: the sender's ack state stays O(window + members) whatever the joins.
//   - each join is a view change while messages are in flight: the messages sent before it
//     keep the ack set they were sent with, the ones after it include the newcomer. The
//     sender keeps one position per member and one interval of messages per member (from
//     its join to its leave), not a member set and a tree per view: the gauge
//     reliability.ack_state_bytes, sampled every few milliseconds, never exceeds what it was
//     with three members plus kBytesPerMember for each member that joined;
//   - every message the sender sent is met (acked by every member of its ack set), none
//     fails, and every member delivers what it received exactly once, intact.
// A table row is printed per size: the peak ack state, the heap the sender frees when it
// leaves (pipeline and packet pool) and the simulator's wall time.
// The CI case runs 100 members; the bench case ("bench: ...", skipped unless asked for)
// runs 100, 300 and 1,000 (TMC_JOIN_SIZES=300 runs only those).
#include <doctest/doctest.h>

#include <malloc.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "sim_util.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kStartNs = 100 * kMs;     // the first members are in by then
constexpr std::uint64_t kJoinGapNs = 2 * kMs;     // one member joins every 2 ms
constexpr std::uint64_t kSendGapNs = 1 * kMs;     // the sender sends every 1 ms
constexpr std::uint64_t kSampleGapNs = 5 * kMs;   // the gauge is read this often
constexpr std::size_t kFirst = 3;                 // members present from the start
// Per member the sender keeps its ack position, its interval, its ack clock (a few
// timestamps) and a leaf of the minimum tree: about 150 bytes. A member set and a tree per
// view change in flight (O(members) each) exceed this after a few joins.
constexpr double kBytesPerMember = 256;

tmc::Plan plan(std::size_t self) {
  // No member list: every member is discovered when heard (a join).
  const std::string yaml = "id: sim-joins\nreliability: true\nheartbeat us: 1000000\nfailure timeout us: 20000000\n";
  return simtest::compile_plan(yaml, "m" + std::to_string(self));
}

struct JoinCost {
  double base_state = 0;   // ack state with the first members, at the first message
  double peak_state = 0;   // the most it was while members joined and after
  std::size_t sender_heap = 0;
  double wall_s = 0;
};

JoinCost run(std::size_t n, std::uint64_t seed, Check& c) {
  const auto t0 = std::chrono::steady_clock::now();
  tmc::sim::LinkParams link = tmc::sim::LinkParams::clean(100'000);
  link.jitter_ns = 50'000;
  link.loss = 0.01;
  tmc::sim::Config cfg = simtest::config(seed, link);
  cfg.max_events_per_run = 2'000'000'000;
  JoinCost cost;
  const std::uint64_t last_join = kStartNs + (n - kFirst) * kJoinGapNs;
  const std::uint64_t stop = last_join + 200 * kMs;  // the stream goes on a while after the last join
  const auto count = static_cast<std::uint32_t>((stop - kStartNs) / kSendGapNs);
  {
    Network net(cfg);
    for (std::size_t i = 0; i < kFirst; ++i) net.add_member(plan(i));
    for (std::size_t i = kFirst; i < n; ++i) {
      net.schedule(kStartNs + (i - kFirst) * kJoinGapNs + kJoinGapNs / 2, [&net, p = plan(i)] { net.add_member(p); });
    }
    simtest::schedule_burst(net, {0}, count, kStartNs, kSendGapNs, seed);
    const auto sample = [&net, &cost] {
      const double v = net.gauges(0).get("reliability.ack_state_bytes");
      if (!std::isnan(v)) cost.peak_state = std::max(cost.peak_state, v);
    };
    net.schedule(kStartNs + 1, [&] { cost.base_state = net.gauges(0).get("reliability.ack_state_bytes"); });
    for (std::uint64_t t = kStartNs; t < stop + 2'000 * kMs; t += kSampleGapNs) net.schedule(t, sample);
    c.expect(net.run_until(stop + 4'000 * kMs), "event limit hit");
    sample();
    c.expect(net.size() == n, "only ", net.size(), " of ", n, " members joined");
    // Every message met (acked by its whole ack set), none failed.
    std::map<std::uint64_t, tmc::EventType> outcome;
    for (const auto& e : net.events(0)) {
      if (e.type != tmc::EventType::delivery_met && e.type != tmc::EventType::delivery_failed) continue;
      c.expect(outcome.emplace(e.token, e.type).second, "message ", e.token, " settled twice");
      c.expect(e.type == tmc::EventType::delivery_met, "n=", n, ": message ", e.token, " failed at t=", e.time_ns,
               " (", e.members.count(), " members did not ack)");
    }
    c.expect(outcome.size() == count, "n=", n, ": ", outcome.size(), " of ", count, " messages settled");
    for (std::size_t r = 1; r < n; ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
    }
    // A member present from the start delivers everything.
    c.expect(net.deliveries(1).size() == count, "member 1 delivered ", net.deliveries(1).size(), " of ", count);
    const std::size_t before = mallinfo2().uordblks;
    net.leave(0);
    const std::size_t after = mallinfo2().uordblks;
    cost.sender_heap = before - std::min(before, after);
  }
  const double bound = cost.base_state + kBytesPerMember * static_cast<double>(n);
  c.expect(cost.peak_state <= bound, "n=", n, ": the sender's ack state reached ", cost.peak_state,
           " bytes, more than ", bound, " (", cost.base_state, " with ", kFirst, " members + ", kBytesPerMember,
           " per member)");
  cost.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return cost;
}

void family(const std::vector<std::size_t>& sizes, std::uint64_t seeds) {
  std::cout << "members joining one every " << kJoinGapNs / kMs << " ms, a message every " << kSendGapNs / kMs
            << " ms, 1 % loss\n"
            << "    n  seed  base state KiB  peak state KiB  sender heap KiB  wall s\n";
  for (const std::size_t n : sizes) {
    simtest::for_each_seed(seeds, [&](std::uint64_t seed, Check& c, auto&) {
      const JoinCost k = run(n, seed, c);
      char row[160];
      std::snprintf(row, sizeof row, "%5zu  %4llu  %14.1f  %14.1f  %15.1f  %6.2f\n", n,
                    static_cast<unsigned long long>(seed), k.base_state / 1024, k.peak_state / 1024,
                    static_cast<double>(k.sender_heap) / 1024, k.wall_s);
      std::cout << row << std::flush;
    });
  }
}

}  // namespace

TEST_CASE("sim: members join one at a time mid-stream at 1% loss: sender ack state O(window + members)") {
  family({100}, 1);
}

TEST_CASE("bench: members joining mid-stream 100 to 1000 (TMC_JOIN_SIZES)" * doctest::skip()) {
  std::vector<std::size_t> sizes = {100, 300, 1000};
  if (const char* only = std::getenv("TMC_JOIN_SIZES"); only != nullptr && *only != '\0') {
    sizes.clear();
    for (const char* p = only; *p != '\0';) {
      char* end = nullptr;
      const std::size_t n = std::strtoul(p, &end, 10);
      if (end == p) break;
      sizes.push_back(n);
      p = *end == ',' ? end + 1 : end;
    }
  }
  family(sizes, 2);
}
