// Forgetting and lifetimes (the application-guided decisions: Channel::forget, the manifest's
// 'lifetime'), on the compiler's plan for reliability + strict point-to-point ordering, under
// loss up to 20 %, duplication, reordering and corruption. Every member sends; about half
// the messages have a lifetime of their own (3..30 ms), and the senders forget messages at
// random (now and then "this one and every one before it"). Checked per seed:
//   - no stall: the run settles well before any ordering or reliability timeout could
//     rescue it (ordering waits 10 s for a gap; the run ends 3 s after the last send), and
//     nothing is left held;
//   - every message has exactly one outcome at its sender: met, failed, forgotten or expired;
//   - no member delivers a message after its deadline (the simulator's clocks agree, and
//     the manifest's skew covers the link's largest delay);
//   - every member delivers each message at most once, intact and in the order sent, and
//     every message without a lifetime that was met is delivered to every member.
// The broken variant (receivers whose plan lacks lifetime.deadline, so they ignore
// deadlines) must be caught by the same deadline check.
#include <doctest/doctest.h>

#include <map>

#include "sim_util.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

// 200 seeds in CI (about 2 s); 1,000 pass: TMC_SIM_SEEDS=1000.
constexpr std::uint64_t kSeeds = 200;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::size_t kMembers = 3;
constexpr std::uint32_t kCount = 100;  // messages per member

const std::string kManifest =
    "id: sim-forget\n"
    "members: [m0, m1, m2]\n"
    "reliability: true\n"
    "point-to-point ordering: strict\n"
    "error checking: true\n"
    "lifetime: {skew us: 3000}\n";  // the hostile link delays a copy by at most 2.2 ms

tmc::Plan compiled(std::size_t self) {
  tmc::Manifest m;
  tmc::Diagnostics d;
  REQUIRE_MESSAGE(tmc::parse_manifest(kManifest, "sim.yaml", m, d), d.to_string());
  m.name = "m" + std::to_string(self);
  tmc::Plan p;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), tmc::Registry::builtin(), p);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return p;
}

// A receiver that ignores lifetimes: its plan has no lifetime.deadline (the extension is
// ignored, nothing is checked at delivery).
tmc::Plan without_lifetime(tmc::Plan p) {
  std::erase_if(p.stages, [](const tmc::PlannedStage& s) { return s.kind == "lifetime.deadline"; });
  return p;
}

// Deterministic choices of the scenario (apart from the network's own generator).
struct Dice {
  std::uint64_t s;
  std::uint64_t next() noexcept {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
};

struct Totals {
  std::uint64_t met = 0, failed = 0, forgotten = 0, expired = 0;
  std::uint64_t gaps_released = 0, gaps_timeout = 0;
  std::uint64_t late_deliveries = 0;  // deliveries after the deadline (must stay 0 unless broken)
};

void scenario(std::uint64_t seed, bool broken, Check& c, Totals& t, const std::function<void(Network&)>& attach) {
  Network net(simtest::config(seed, simtest::hostile_link(0.05 * static_cast<double>(seed % 5))));  // 0% .. 20%
  attach(net);
  for (std::size_t i = 0; i < kMembers; ++i) net.add_member(broken && i != 0 ? without_lifetime(compiled(i)) : compiled(i));
  Dice dice{seed * 0x9E3779B97F4A7C15ull + 1};
  const std::uint64_t start = 300 * kMs;
  for (std::uint32_t k = 0; k < kCount; ++k) {
    for (std::size_t m = 0; m < kMembers; ++m) {
      const std::uint64_t at = start + k * kMs + m * 1000;
      const std::uint64_t lifetime = dice.below(2) == 0 ? 0 : (3 + dice.below(28)) * kMs;
      const std::uint64_t roll = dice.below(100);
      const std::uint64_t back = 1 + dice.below(8);
      net.schedule(at, [&net, m, k, lifetime, roll, back, seed] {
        const auto payload = simtest::make_payload(m, k, seed);
        if (lifetime != 0) {
          net.send_with_lifetime(m, payload, lifetime);
        } else {
          net.send(m, payload);
        }
        // Forget now and then: one recent message, or rarely it and all before it.
        const std::uint64_t sent = net.sent(m).size();
        if (roll < 10 && sent > back) net.forget(m, sent - back, tmc::ForgetScope::message);
        if (roll == 10 && sent > back) net.forget(m, sent - back, tmc::ForgetScope::and_earlier);
      });
    }
  }
  const std::uint64_t last_send = start + kCount * kMs;
  c.expect(net.run_until(last_send + 3'000 * kMs), "event limit hit");

  for (std::size_t s = 0; s < kMembers; ++s) {
    const auto& sent = net.sent(s);
    std::vector<int> outcomes(sent.size() + 1, 0);
    std::vector<tmc::EventType> outcome(sent.size() + 1, tmc::EventType::gap_skipped);
    for (const auto& e : net.events(s)) {
      switch (e.type) {
        case tmc::EventType::delivery_met: ++t.met; break;
        case tmc::EventType::delivery_failed: ++t.failed; break;
        case tmc::EventType::delivery_forgotten: ++t.forgotten; break;
        case tmc::EventType::delivery_expired: ++t.expired; break;
        default: continue;
      }
      if (e.token == 0 || e.token > sent.size()) {
        c.expect(false, "member ", s, ": outcome for unknown token ", e.token);
        continue;
      }
      ++outcomes[e.token];
      outcome[e.token] = e.type;
    }
    for (std::size_t tok = 1; tok <= sent.size(); ++tok) {
      c.expect(outcomes[tok] == 1, "member ", s, ": message ", tok, " has ", outcomes[tok], " outcomes");
    }
    // At every other member: at most once, in order, never late; everything met without a
    // lifetime arrives.
    for (std::size_t r = 0; r < kMembers; ++r) {
      if (r == s) continue;
      std::vector<int> got(kCount, 0);
      std::int64_t last = -1;
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        if (!p.ok || p.member != s || p.k >= kCount) continue;
        ++got[p.k];
        c.expect(static_cast<std::int64_t>(p.k) > last, "member ", r, " delivered message ", p.k, " of member ", s,
                 " after message ", last);
        last = p.k;
        const std::uint64_t deadline = sent[p.k].expires_ns;
        if (deadline != 0 && d.time_ns > deadline) {
          ++t.late_deliveries;
          if (!broken) {
            c.expect(false, "member ", r, " delivered message ", p.k, " of member ", s, " at ", d.time_ns,
                     ", after its deadline ", deadline);
          }
        }
      }
      for (std::uint32_t k = 0; k < kCount; ++k) {
        c.expect(got[k] <= 1, "member ", r, " delivered message ", k, " of member ", s, " ", got[k], " times");
        if (!broken && outcome[k + 1] == tmc::EventType::delivery_met && sent[k].expires_ns == 0) {
          const auto cs = net.counters(r);
          c.expect(got[k] == 1, "member ", r, " never delivered message ", k, " of member ", s,
                   " (met, no lifetime; its reliability.duplicates ", cs.get("reliability.duplicates"),
                   ", ordering.stale_dropped ", cs.get("ordering.stale_dropped"), ", lifetime.expired_at_delivery ",
                   cs.get("lifetime.expired_at_delivery"), ", drops.duplicate ", cs.get("drops.duplicate"),
                   ", lifetime.expired_received ", cs.get("lifetime.expired_received"), ", beyond_window ",
                   cs.get("reliability.beyond_window"), ", ordering.duplicates_dropped ",
                   cs.get("ordering.duplicates_dropped"), ", ordering.held ", cs.get("ordering.held"), ")");
        }
      }
    }
  }
  for (std::size_t r = 0; r < kMembers; ++r) {
    simtest::check_intact(net, r, seed, c);
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at the end");
    for (const auto& e : net.events(r)) {
      if (e.type != tmc::EventType::gap_skipped) continue;
      if (e.cause == tmc::EventCause::released) ++t.gaps_released;
      if (e.cause == tmc::EventCause::timeout) ++t.gaps_timeout;
    }
  }
}

}  // namespace

TEST_CASE("sim: forget and lifetime: no stall and no late delivery and the rest exactly once in order") {
  Totals t;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    scenario(seed, /*broken=*/false, c, t, attach);
  });
  if (simtest::many_seeds(kSeeds)) {
    CHECK(t.forgotten > 0);
    CHECK(t.expired > 0);
    CHECK(t.gaps_released > 0);  // ordering moved past holes the senders released
    CHECK(t.late_deliveries == 0);
  }
  MESSAGE("met " << t.met << ", failed " << t.failed << ", forgotten " << t.forgotten << ", expired " << t.expired
                 << "; gaps skipped: released " << t.gaps_released << ", timeout " << t.gaps_timeout);
}

TEST_CASE("sim: forget and lifetime: the deadline check catches receivers that ignore lifetimes") {
  Totals t;
  // The same seeds with the broken receivers; the checks above must see late deliveries.
  const std::uint64_t seeds = std::min<std::uint64_t>(simtest::seed_range(kSeeds).count, 200);
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    Check c;
    scenario(seed, /*broken=*/true, c, t, [](Network&) {});
  }
  MESSAGE("late deliveries by receivers that ignore lifetimes: " << t.late_deliveries << " in " << seeds << " seeds");
  if (seeds >= 50) CHECK(t.late_deliveries > 0);
}
