// Simulation proofs for flow.credit and congestion.window, with
// reliability.arq above them and membership.heartbeat + checksum.crc32c below:
//   - exactly-once, intact delivery of every reliable message still holds with both stages
//     holding data back, under loss up to 20%, duplication, reordering and corruption;
//   - the sender never has more than window_bytes of reliable payload unconsumed toward any
//     receiver (probed every 2 ms: its own view, the flow.unconsumed_bytes gauge, and what
//     the senders passed down against what each receiver counted as consumed);
//   - a receiver cut off by a partition raises slow_member at the sender; with eject_slow
//     the others get everything before the partition heals, without it the sender waits;
//   - no livelock: after the heal everything is delivered everywhere and queues drain.
#include <doctest/doctest.h>

#include <functional>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kWindowBytes = 1500;

using Params = std::map<std::string, std::string, std::less<>>;

struct Setup {
  Params flow = {{"window_bytes", std::to_string(kWindowBytes)}, {"slow_timeout_us", "100000"}};
  Params cc = {{"algorithm", "aimd"},
               {"mss_bytes", "200"},
               {"initial_window_packets", "2"},
               {"min_window_packets", "2"},
               {"stall_timeout_us", "150000"}};
  std::uint64_t hb_timeout_us = 600'000;
};

tmc::Plan plan_for(std::size_t index, std::size_t n, const Setup& s) {
  tmc::Plan p = tmc::sim::make_plan(
      {tmc::sim::stage("reliability.arq", {{"messages", "all"}, {"max_retries", "60"}, {"rto_max_us", "250000"}}),
       tmc::sim::stage("flow.credit", s.flow), tmc::sim::stage("congestion.window", s.cc),
       tmc::sim::stage("membership.heartbeat",
                       {{"interval_us", "50000"}, {"timeout_us", std::to_string(s.hb_timeout_us)}}),
       tmc::sim::stage("checksum.crc32c")});
  p.member = "m" + std::to_string(index);
  for (std::size_t i = 0; i < n; ++i) p.members.push_back("m" + std::to_string(i));
  return p;
}

LinkParams hostile_link(std::uint64_t seed, double max_loss = 0.2) {
  return simtest::hostile_link(max_loss * static_cast<double>(seed % 5) / 4.0);  // 0 .. max_loss
}

// Each of `senders`' messages delivered exactly once and intact at every other member.
void check_all_delivered(const Network& net, const std::vector<std::size_t>& senders, std::size_t r,
                         std::uint64_t salt, Check& c) {
  simtest::check_intact(net, r, salt, c);
  simtest::check_no_duplicates(net, r, salt, c);
  std::map<std::size_t, std::size_t> got;
  for (const auto& d : net.deliveries(r)) ++got[d.from];
  for (std::size_t s : senders) {
    if (s == r) continue;
    c.expect(got[s] == net.sent(s).size(), "member ", r, " delivered ", got[s], " of the ", net.sent(s).size(),
             " messages of member ", s);
  }
}

std::size_t delivered_from(const Network& net, std::size_t r, std::size_t s) {
  std::size_t n = 0;
  for (const auto& d : net.deliveries(r)) n += d.from == s ? 1 : 0;
  return n;
}

// At the end nothing may be held anywhere. With TMC_FLOW_DEBUG=1 (and TMC_SIM_SEED) a
// member that still holds packets is dumped: per-stage holdings, counters, its view and
// every stage's gauges.
void check_drained(Network& net, Check& c) {
  for (std::size_t r = 0; r < net.size(); ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at the end");
    if (net.held_packets(r) != 0 && std::getenv("TMC_FLOW_DEBUG") != nullptr) {
      tmc::Pipeline* pl = net.pipeline(r);
      for (std::size_t i = 0; i < pl->stage_count(); ++i)
        std::cout << "  member " << r << " " << pl->stage_kind(i) << " holds " << pl->stage(i).held_packets() << "\n";
      const auto cs = net.counters(r);
      for (std::size_t i = 0; i < cs.names.size(); ++i)
        if (cs.values[i] != 0 && (cs.names[i].rfind("flow", 0) == 0 || cs.names[i].rfind("cong", 0) == 0 ||
                                  cs.names[i].rfind("reli", 0) == 0 || cs.names[i].rfind("memb", 0) == 0))
          std::cout << "  " << cs.names[i] << " = " << cs.values[i] << "\n";
      const auto gs = net.gauges(r);
      for (std::size_t i = 0; i < gs.names.size(); ++i) std::cout << "  " << gs.names[i] << " = " << gs.values[i] << "\n";
      const tmc::Group& g = pl->group();
      for (std::size_t s = 0; s < g.slots(); ++s)
        std::cout << "  slot " << s << " " << g.member(static_cast<int>(s)).name << " "
                  << tmc::member_state_name(g.member(static_cast<int>(s)).state) << "\n";
      for (std::size_t m = 0; m < net.size(); ++m)
        if (m != r) std::cout << "  member " << m << " consumed " << net.counters(m).get("flow.consumed_bytes") << " on_acks " << net.counters(m).get("flow.adverts_on_acks") << " standalone " << net.counters(m).get("flow.adverts_standalone") << " next_deadline " << net.pipeline(m)->next_deadline_ns() << "\n";
    }
  }
}

struct Totals {
  std::uint64_t flow_waits = 0;
  std::uint64_t cc_waits = 0;
  std::uint64_t cc_losses = 0;
  std::uint64_t slow = 0;
};

}  // namespace

TEST_CASE("sim: flow.credit + congestion.window under loss: exactly-once and never more than the window unconsumed") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, hostile_link(seed)));
    attach(net);
    const Setup setup;
    const std::size_t n = 3 + seed % 2;
    for (std::size_t i = 0; i < n; ++i) net.add_member(plan_for(i, n, setup));
    const std::vector<std::size_t> senders = {0, 1};
    // Data starts once the heartbeats have filled every view.
    simtest::schedule_burst(net, senders, 40, 200 * kMs, 300'000, seed);
    // Probe the flow-control bound every 2 ms while data moves, through what stats()
    // shows: each sender's own view of its slowest receiver (a gauge), and what the
    // senders' flow stages passed down against what each receiver's counted as consumed
    // (a receiver consumes only from the senders, so the per-sender bound, summed over
    // them, bounds its total).
    for (std::uint64_t t = 200 * kMs; t < 1000 * kMs; t += 2 * kMs) {
      net.schedule(t, [&net, &c, senders, n] {
        for (std::size_t s : senders) {
          const double unconsumed = net.gauges(s).get("flow.unconsumed_bytes");
          c.expect(unconsumed >= 0 && unconsumed <= static_cast<double>(kWindowBytes), "t=", net.now_ns(),
                   ": member ", s, " has ", unconsumed, " bytes unconsumed by its slowest receiver (window ",
                   kWindowBytes, ")");
        }
        for (std::size_t r = 0; r < n; ++r) {
          std::uint64_t sent = 0;
          std::uint64_t bound = net.counters(r).get("flow.consumed_bytes");
          for (std::size_t s : senders) {
            if (s == r) continue;
            sent += net.counters(s).get("flow.sent_bytes");
            bound += kWindowBytes;
          }
          c.expect(sent <= bound, "t=", net.now_ns(), ": the senders passed down ", sent, " bytes toward member ",
                   r, ", which consumed only ", net.counters(r).get("flow.consumed_bytes"), " (window ",
                   kWindowBytes, " each)");
        }
      });
    }
    c.expect(net.run_until(4000 * kMs), "event limit hit");
    for (std::size_t r = 0; r < n; ++r) check_all_delivered(net, senders, r, seed, c);
    check_drained(net, c);
    for (std::size_t s : senders) {
      const auto cs = net.counters(s);
      totals.flow_waits += cs.get("flow.waits");
      totals.cc_waits += cs.get("congestion.window_waits");
      totals.cc_losses += cs.get("congestion.losses");
    }
  });
  if (simtest::many_seeds(kSeeds)) {
    // The scenario must really exercise both stages.
    CHECK(totals.flow_waits > 0);
    CHECK(totals.cc_waits > 0);
    CHECK(totals.cc_losses > 0);
  }
}

namespace {

constexpr std::uint64_t kCutFrom = 250 * kMs;
constexpr std::uint64_t kCutUntil = 1250 * kMs;
constexpr std::uint32_t kPartitionMessages = 100;

// Member 3 of 4 is cut off from everyone during [kCutFrom, kCutUntil); member 0 sends.
// Membership's failure timeout is longer than the partition, so only flow control can let
// go of member 3.
void partition_scenario(std::uint64_t seed, Check& c, bool eject, Totals& totals,
                        const std::function<void(Network&)>& attach) {
  Network net(simtest::config(seed, hostile_link(seed, 0.1)));
  attach(net);
  Setup setup;
  setup.flow["eject_slow"] = eject ? "true" : "false";
  setup.hb_timeout_us = 5'000'000;
  const std::size_t n = 4;
  for (std::size_t i = 0; i < n; ++i) net.add_member(plan_for(i, n, setup));
  net.partition({{0, 1, 2}, {3}}, kCutFrom, kCutUntil);
  simtest::schedule_burst(net, {0}, kPartitionMessages, 200 * kMs, 4 * kMs, seed);
  c.expect(net.run_until(kCutUntil - 10 * kMs), "event limit hit");

  const tmc::Group& g = net.pipeline(0)->group();
  const int slot3 = g.slot_of_name("m3");
  std::size_t slow3 = 0;
  for (const auto& e : net.events(0)) {
    if (e.type != tmc::EventType::slow_member) continue;
    ++totals.slow;
    if (e.members == tmc::MemberSet::of(slot3)) {
      ++slow3;
      c.expect(e.sender == net.sender_id(3), "slow_member names slot ", slot3, " but sender ", e.sender);
    }
  }
  c.expect(slow3 == 1, "member 3 was reported slow ", slow3, " times during the partition (want exactly once)");
  const std::size_t at1 = delivered_from(net, 1, 0);
  const std::size_t at2 = delivered_from(net, 2, 0);
  if (eject) {
    c.expect(at1 == kPartitionMessages && at2 == kPartitionMessages,
             "with eject_slow the others should have everything before the heal: member 1 has ", at1,
             ", member 2 has ", at2, " of ", kPartitionMessages);
  } else {
    if (std::getenv("TMC_FLOW_DEBUG") != nullptr) {
      const auto cs = net.counters(0);
      for (std::size_t i = 0; i < cs.names.size(); ++i)
        if (cs.values[i] != 0) std::cout << cs.names[i] << " = " << cs.values[i] << "\n";
      std::cout << "m3 state " << tmc::member_state_name(g.member(slot3).state) << " receivers " << g.names(g.receivers()) << "\n";
    }
    c.expect(at1 < kPartitionMessages, "without eject_slow the sender should wait for member 3, yet member 1 has ",
             at1, " of ", kPartitionMessages);
  }
  // After the heal: no livelock, everything everywhere (member 3 too: reliability repairs it).
  c.expect(net.run_until(6000 * kMs), "event limit hit");
  for (std::size_t r = 1; r < n; ++r) check_all_delivered(net, {0}, r, seed, c);
  check_drained(net, c);
  totals.flow_waits += net.counters(0).get("flow.waits");
}

}  // namespace

TEST_CASE("sim: flow.credit partition with eject_slow: slow_member once and the others continue") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    partition_scenario(seed, c, /*eject=*/true, totals, attach);
  });
  if (simtest::many_seeds(kSeeds)) CHECK(totals.flow_waits > 0);
}

TEST_CASE("sim: flow.credit partition without eject_slow: slow_member once and the sender waits until the heal") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    partition_scenario(seed, c, /*eject=*/false, totals, attach);
  });
}
