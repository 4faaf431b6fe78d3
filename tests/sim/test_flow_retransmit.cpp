// Simulation proofs that retransmissions pass flow and congestion control.
//
// 1. A burst of reliable messages far larger than a small flow-control window and a small
//    congestion window, over links losing 10-20% of datagrams: every message is met (none
//    failed), delivered exactly once and in order at every receiver, every queue drains,
//    and repairs (retransmissions of data already passed down) go down at once, ahead of
//    the new data waiting in either stage, without being charged as new data.
// 2. flow.credit with policy max: a cut-off receiver does not hold the sender back, and it
//    is reported as slow_member once although no data ever waited for it.
//
// Reliability's timers start when a message leaves reliability.arq, so a message waiting
// in flow.credit's or congestion.window's queue times out while it waits. reliability.arq
// spends its retry budget only on timeouts that show a loss, so such a wait no longer fails
// a message that was never lost. Scenario 1 runs with a large budget; the same scenario
// with the default budget (8 retries) is below.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint32_t kMessages = 120;

using StageParams = std::map<std::string, std::string, std::less<>>;

enum class Limit { flow, congestion, both };

tmc::Plan plan_for(std::size_t index, std::size_t n, Limit limit, int max_retries) {
  std::vector<tmc::PlannedStage> stages = {
      // Ordering must not give up on a message before reliability does.
      tmc::sim::stage("ordering.fifo", {{"mode", "strict"}, {"window", "1024"}, {"hold_us", "60000000"}}),
      tmc::sim::stage("ordering.seq"),
      tmc::sim::stage("reliability.arq", {{"messages", "all"}, {"max_retries", std::to_string(max_retries)}})};
  if (limit != Limit::congestion) {
    stages.push_back(tmc::sim::stage("flow.credit", {{"window_bytes", "600"}, {"slow_timeout_us", "60000000"}}));
  }
  if (limit != Limit::flow) {
    stages.push_back(tmc::sim::stage("congestion.window", {{"algorithm", "aimd"},
                                                           {"mss_bytes", "200"},
                                                           {"initial_window_packets", "2"},
                                                           {"min_window_packets", "2"},
                                                           {"max_window_packets", "4"},
                                                           {"stall_timeout_us", "60000000"}}));
  }
  stages.push_back(tmc::sim::stage("membership.heartbeat", {{"interval_us", "50000"}, {"timeout_us", "60000000"}}));
  stages.push_back(tmc::sim::stage("checksum.crc32c"));
  tmc::Plan p = tmc::sim::make_plan(std::move(stages));
  p.member = "m" + std::to_string(index);
  for (std::size_t i = 0; i < n; ++i) p.members.push_back("m" + std::to_string(i));
  return p;
}

LinkParams lossy_link(std::uint64_t seed) {
  LinkParams l = LinkParams::clean();
  l.loss = 0.10 + 0.10 * static_cast<double>(seed % 3) / 2.0;  // 10%, 15%, 20%
  l.duplicate = 0.02;
  l.reorder = 0.05;
  l.reorder_delay_ns = 1 * kMs;
  l.jitter_ns = 100'000;
  return l;
}

struct Totals {
  std::uint64_t timeouts = 0;
  std::uint64_t flow_waits = 0;
  std::uint64_t cc_waits = 0;
  std::uint64_t repairs_passed = 0;
  std::uint64_t slow = 0;
};

void scenario(std::uint64_t seed, Check& c, Limit limit, int max_retries, Totals& totals,
              const std::function<void(Network&)>& attach) {
  Network net(simtest::config(seed, lossy_link(seed)));
  attach(net);
  const std::size_t n = 3;
  for (std::size_t i = 0; i < n; ++i) net.add_member(plan_for(i, n, limit, max_retries));
  // The whole burst is handed to the pipeline within 1.5 ms, once the views are full.
  simtest::schedule_burst(net, {0}, kMessages, 200 * kMs, 10'000, seed);
  c.expect(net.run_until(120'000 * kMs), "event limit hit");

  std::size_t met = 0;
  for (const auto& e : net.events(0)) {
    if (e.type == tmc::EventType::delivery_met) ++met;
    if (e.type == tmc::EventType::delivery_failed) {
      c.expect(false, "message ", e.token - 1, " failed (missing members 0x", std::hex, e.members.word(0), std::dec, ")");
    }
  }
  c.expect(met == kMessages, "sender reported ", met, " of ", kMessages, " messages met");
  for (std::size_t r = 1; r < n; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    simtest::check_fifo(net, r, seed, c);
    c.expect(net.deliveries(r).size() == kMessages, "member ", r, " delivered ", net.deliveries(r).size(), " of ",
             kMessages);
  }
  for (std::size_t r = 0; r < n; ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at the end");
  }
  const auto cs = net.counters(0);
  if (!c.ok() && std::getenv("TMC_FLOW_DEBUG") != nullptr) {
    for (std::size_t i = 0; i < cs.names.size(); ++i)
      if (cs.values[i] != 0) std::cout << "  m0 " << cs.names[i] << " = " << cs.values[i] << "\n";
  }
  totals.timeouts += cs.get("reliability.timeouts");
  totals.flow_waits += cs.get("flow.waits");
  totals.cc_waits += cs.get("congestion.window_waits");
  totals.repairs_passed += cs.get("flow.retransmits_passed") + cs.get("congestion.retransmits_passed");
}

}  // namespace

// What CI proves (a budget large enough that no message can run out while it waits): every
// message met, exactly once, in order, with repairs passing waiting data in both stages.
TEST_CASE("sim: retransmissions pass flow.credit and congestion.window at once: small windows and 10-20% loss") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    scenario(seed, c, Limit::both, 60, totals, attach);
  });
  if (simtest::many_seeds(kSeeds)) {
    CHECK(totals.flow_waits > 0);
    CHECK(totals.cc_waits > 0);
    CHECK(totals.timeouts > 0);
    CHECK(totals.repairs_passed > 0);  // repairs really went down while new data waited
  }
}

// With reliability's default budget (8 retries) a burst waits in flow.credit or
// congestion.window long enough for reliability's timers to expire on messages that never
// left. reliability.arq now spends its budget only on timeouts that show a loss (a member
// acked a later message, or its acks made no progress for rto_max since the message
// really left), so both pass with the default.
// Before that change a few seeds in 1000 failed behind flow.credit and about 3% behind
// congestion.window.
TEST_CASE("sim: default retry budget behind flow.credit: small window and 10-20% loss and no message fails") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    scenario(seed, c, Limit::flow, 8, totals, attach);
  });
}

// congestion.window holds its whole window while the slowest member lacks one datagram, so
// the members' acks stall for a second or more now and then (a lost repair or its lost acks,
// at rto_max once backed off) while most of the burst waits below. reliability.arq measures
// a member's silence only from when a message is known to have left the stages below (a
// member acked it or a later one, or nothing older is unsettled); measured from when it was
// handed down, each such stall spent a retry of every waiting message, and a few seeds in
// 1000 failed one of the last messages.
TEST_CASE("sim: default retry budget behind congestion.window: small window and 10-20% loss and no message fails") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    scenario(seed, c, Limit::congestion, 8, totals, attach);
  });
}

namespace {

// Policy max: m0 sends, m1 receives normally, m2 is cut off (it consumes nothing) from
// 250 ms to 1250 ms. The sender must not wait for m2 (m1 has everything before the heal),
// must report m2 as slow exactly once although nothing waited for it, and after the heal
// reliability repairs m2 (ack from all) so that everyone has everything.
void max_policy_scenario(std::uint64_t seed, Check& c, Totals& totals, const std::function<void(Network&)>& attach) {
  LinkParams l = LinkParams::clean();
  l.loss = 0.05 * static_cast<double>(seed % 3);  // 0, 5%, 10%
  l.reorder = 0.05;
  l.jitter_ns = 100'000;
  Network net(simtest::config(seed, l));
  attach(net);
  const std::size_t n = 3;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<tmc::PlannedStage> stages = {
        tmc::sim::stage("ordering.fifo", {{"mode", "strict"}, {"window", "1024"}, {"hold_us", "60000000"}}),
        tmc::sim::stage("ordering.seq"),
        tmc::sim::stage("reliability.arq", {{"messages", "all"}, {"max_retries", "60"}, {"rto_max_us", "250000"}}),
        tmc::sim::stage("flow.credit",
                        {{"policy", "max"}, {"window_bytes", "1500"}, {"slow_timeout_us", "100000"}}),
        tmc::sim::stage("membership.heartbeat", {{"interval_us", "50000"}, {"timeout_us", "5000000"}}),
        tmc::sim::stage("checksum.crc32c")};
    tmc::Plan p = tmc::sim::make_plan(std::move(stages));
    p.member = "m" + std::to_string(i);
    for (std::size_t j = 0; j < n; ++j) p.members.push_back("m" + std::to_string(j));
    net.add_member(p);
  }
  constexpr std::uint32_t kCount = 100;
  net.partition({{0, 1}, {2}}, 250 * kMs, 1250 * kMs);
  simtest::schedule_burst(net, {0}, kCount, 200 * kMs, 4 * kMs, seed);
  c.expect(net.run_until(1240 * kMs), "event limit hit");
  c.expect(net.deliveries(1).size() == kCount, "policy max: member 1 has ", net.deliveries(1).size(), " of ", kCount,
           " before the heal (the sender waited for the cut-off member?)");
  const tmc::Group& g = net.pipeline(0)->group();
  const int slot2 = g.slot_of_name("m2");
  const int slot1 = g.slot_of_name("m1");
  std::size_t slow2 = 0;
  for (const auto& e : net.events(0)) {
    if (e.type != tmc::EventType::slow_member) continue;
    ++totals.slow;
    if (e.members == tmc::MemberSet::of(slot2)) ++slow2;
    c.expect(e.members != tmc::MemberSet::of(slot1), "policy max: member 1 (the fast one) was reported slow");
  }
  c.expect(slow2 == 1, "policy max: member 2 was reported slow ", slow2, " times during the partition (want once)");
  c.expect(net.run_until(8000 * kMs), "event limit hit");
  for (std::size_t r = 1; r < n; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    simtest::check_fifo(net, r, seed, c);
    c.expect(net.deliveries(r).size() == kCount, "member ", r, " delivered ", net.deliveries(r).size(), " of ",
             kCount, " after the heal");
  }
  for (const auto& e : net.events(0)) {
    c.expect(e.type != tmc::EventType::delivery_failed, "message ", e.token - 1, " failed");
  }
  for (std::size_t r = 0; r < n; ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at the end");
  }
}

}  // namespace

TEST_CASE("sim: flow.credit policy max: the fast receiver is not held back and the slow one is reported once") {
  Totals totals;
  simtest::for_each_seed(kSeeds, [&totals](std::uint64_t seed, Check& c, auto& attach) {
    max_policy_scenario(seed, c, totals, attach);
  });
  if (simtest::many_seeds(kSeeds)) CHECK(totals.slow > 0);
}
