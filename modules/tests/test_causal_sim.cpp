// ordering.causal in the simulator, on top of the compiler's reliable + ordered plan, four
// members, links with 1-5% loss, duplication, reordering, jitter and different delays per
// link. Members send on their own and in reply to what they deliver, so many messages are
// causally related across senders. The test keeps its own vector clocks, independent of
// the stage's: a member's clock takes in the clock of every message it delivers and counts
// its own sends, and each message is stamped with its sender's clock at send time.
// Invariants, per seed:
//   - every member delivers every message of every other member exactly once, intact;
//   - causal order: when m from s is delivered at r, r has already delivered every message
//     m's clock names (and m is the next from s);
//   - nothing was given up (no forced delivery) and nothing is held at the end.
// Over all seeds: the stage did hold messages, and concurrent messages were delivered in
// different orders at different members (causal order is not total order). Without the
// stage, the same checker finds violations (the test can fail).
//
// Seeds: 200 by default; TMC_SIM_SEEDS=1000 for the long run.
#include <doctest/doctest.h>

#include "causal/causal.hpp"
#include "sim_util.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 200;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::size_t kMembers = 4;

const tmc::Registry& registry() {
  static const tmc::Registry r = [] {
    tmc::Registry reg;
    tmc::register_builtin_stages(reg);
    REQUIRE(reg.add(tmc::modules::causal_info()).is_ok());
    return reg;
  }();
  return r;
}

// The compiler's plan for reliability + point-to-point ordering, with ordering.causal
// where its layer (ordering) places it: below ordering.fifo, directly above ordering.seq.
tmc::Plan plan_for(std::size_t self, bool causal) {
  const std::string yaml =
      "id: sim-causal\n"
      "members: [m0, m1, m2, m3]\n"
      "reliability: true\n"
      "point-to-point ordering: strict\n"
      "error checking: true\n";
  tmc::Manifest m;
  tmc::Diagnostics d;
  REQUIRE_MESSAGE(tmc::parse_manifest(yaml, "sim.yaml", m, d), d.to_string());
  m.name = "m" + std::to_string(self);
  tmc::Plan p;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), tmc::Registry::builtin(), p);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  if (!causal) return p;
  auto at = std::find_if(p.stages.begin(), p.stages.end(), [](const auto& st) { return st.kind == "ordering.seq"; });
  REQUIRE(at != p.stages.end());
  p.stages.insert(at, tmc::sim::stage("ordering.causal"));
  return p;
}

using Clock = std::vector<std::uint32_t>;

// The test's own happened-before bookkeeping.
class Causality {
 public:
  Causality(Network& net, std::uint64_t salt) : net_(net), salt_(salt), clock_(kMembers, Clock(kMembers, 0)),
                                                 seen_(kMembers, 0) {}

  // Take in the clocks of what member i delivered since the last look; returns the
  // messages (member, k) newly delivered.
  std::vector<std::pair<std::size_t, std::uint32_t>> absorb(std::size_t i) {
    std::vector<std::pair<std::size_t, std::uint32_t>> fresh;
    const auto& log = net_.deliveries(i);
    for (; seen_[i] < log.size(); ++seen_[i]) {
      const auto p = simtest::parse_payload(log[seen_[i]].payload, salt_);
      auto it = stamps_.find({p.member, p.k});
      if (!p.ok || it == stamps_.end()) continue;
      for (std::size_t s = 0; s < kMembers; ++s) clock_[i][s] = std::max(clock_[i][s], it->second[s]);
      fresh.emplace_back(p.member, p.k);
    }
    return fresh;
  }

  void send(std::size_t i) {
    absorb(i);
    const auto k = static_cast<std::uint32_t>(net_.sent(i).size());
    clock_[i][i] = k + 1;
    stamps_[{i, k}] = clock_[i];
    net_.send(i, simtest::make_payload(i, k, salt_));
  }

  [[nodiscard]] const Clock* stamp(std::size_t member, std::uint32_t k) const {
    auto it = stamps_.find({member, k});
    return it == stamps_.end() ? nullptr : &it->second;
  }

 private:
  Network& net_;
  std::uint64_t salt_;
  std::vector<Clock> clock_;
  std::vector<std::size_t> seen_;
  std::map<std::pair<std::size_t, std::uint32_t>, Clock> stamps_;
};

struct Totals {
  std::uint64_t violations = 0;
  std::uint64_t held = 0;
  std::uint64_t orders_differ = 0;  // receiver pairs whose common third-party order differs
  std::uint64_t messages = 0;
};

void scenario(bool causal, std::uint64_t seed, Check& c, Totals& t, const std::function<void(Network&)>& attach) {
  LinkParams link = simtest::hostile_link(0.01 * static_cast<double>(1 + seed % 5));  // 1% .. 5%
  link.corrupt = 0.0;
  Network net(simtest::config(seed, link));
  attach(net);
  for (std::size_t i = 0; i < kMembers; ++i) net.add_member(plan_for(i, causal), registry());
  // Different delays per directed link (100 us .. 4 ms), so a reply often overtakes the
  // message it answers on the way to a third member.
  std::uint64_t rng = seed * 7919;
  for (std::size_t a = 0; a < kMembers; ++a) {
    for (std::size_t b = 0; b < kMembers; ++b) {
      if (a == b) continue;
      LinkParams l = link;
      l.delay_ns = 100'000 + tmc::sim::splitmix64(rng) % 3'900'000;
      net.set_link(a, b, l);
    }
  }
  Causality hb(net, seed);
  constexpr std::uint32_t kSpontaneous = 20;
  constexpr std::uint32_t kRepliesMax = 30;
  std::vector<std::uint32_t> replies(kMembers, 0);
  for (std::size_t i = 0; i < kMembers; ++i) {
    for (std::uint32_t n = 0; n < kSpontaneous; ++n) {
      const std::uint64_t at = 300 * kMs + tmc::sim::splitmix64(rng) % (500 * kMs);
      net.schedule(at, [&hb, i] { hb.send(i); });
    }
  }
  // Every 300 us each member looks at what it delivered and answers some of it at once.
  for (std::uint64_t at = 300 * kMs; at < 1'500 * kMs; at += 300'000) {
    for (std::size_t i = 0; i < kMembers; ++i) {
      net.schedule(at + i, [&hb, &replies, i, seed] {
        for (const auto& [from, k] : hb.absorb(i)) {
          if (replies[i] < kRepliesMax && (k + from + i + seed) % 3 == 0) {
            ++replies[i];
            hb.send(i);
          }
        }
      });
    }
  }
  c.expect(net.run_until(6'000 * kMs), "event limit hit");

  std::vector<bool> failed(kMembers, false);
  for (std::size_t s = 0; s < kMembers; ++s) {
    for (const auto& e : net.events(s)) failed[s] = failed[s] || e.type == tmc::EventType::delivery_failed;
  }
  std::vector<std::vector<std::pair<std::size_t, std::uint32_t>>> order(kMembers);
  for (std::size_t r = 0; r < kMembers; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    Clock have(kMembers, 0);
    for (const auto& d : net.deliveries(r)) {
      const auto p = simtest::parse_payload(d.payload, seed);
      const Clock* v = p.ok ? hb.stamp(p.member, p.k) : nullptr;
      if (v == nullptr) continue;
      order[r].emplace_back(p.member, p.k);
      bool ok = (*v)[p.member] == have[p.member] + 1;
      for (std::size_t k = 0; k < kMembers; ++k) {
        if (k != p.member && k != r && (*v)[k] > have[k]) ok = false;
      }
      if (!ok) {
        ++t.violations;
        if (causal) {
          c.expect(false, "member ", r, " delivered message ", p.k, " of member ", p.member,
                   " before something it depends on");
        }
      }
      have[p.member] = std::max(have[p.member], (*v)[p.member]);
    }
    for (std::size_t s = 0; s < kMembers; ++s) {
      if (s == r || failed[s]) continue;
      c.expect(have[s] == net.sent(s).size(), "member ", r, " delivered ", have[s], " of ", net.sent(s).size(),
               " messages of member ", s, " and none failed");
    }
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets");
    const auto cs = net.counters(r);
    if (causal) {
      bool any_failed = false;
      for (bool f : failed) any_failed = any_failed || f;
      c.expect(any_failed || cs.get("ordering.causal_forced") == 0, "member ", r, " gave up on ",
               cs.get("ordering.causal_forced"), " dependencies with nothing lost for good");
      t.held += cs.get("ordering.causal_held");
    }
  }
  // Causal order is not total order: two members may deliver concurrent messages of the
  // other members in different orders.
  for (std::size_t a = 0; a < kMembers; ++a) {
    for (std::size_t b = a + 1; b < kMembers; ++b) {
      auto third = [a, b](const std::vector<std::pair<std::size_t, std::uint32_t>>& o) {
        std::vector<std::pair<std::size_t, std::uint32_t>> v;
        for (const auto& m : o) {
          if (m.first != a && m.first != b) v.push_back(m);
        }
        return v;
      };
      if (third(order[a]) != third(order[b])) ++t.orders_differ;
    }
  }
  for (std::size_t s = 0; s < kMembers; ++s) t.messages += net.sent(s).size();
}

}  // namespace

TEST_CASE("sim: ordering.causal over reliability: exactly once and causal order and concurrent messages in any order") {
  Totals t;
  simtest::for_each_seed(kSeeds,
                         [&](std::uint64_t seed, Check& c, auto& attach) { scenario(true, seed, c, t, attach); });
  MESSAGE("ordering.causal: " << t.messages << " messages, " << t.held << " held for a causal predecessor, "
                              << t.orders_differ << " member pairs saw concurrent messages in different orders");
  const simtest::SeedRange r = simtest::seed_range(kSeeds);
  if (!r.single && r.count >= 20) {
    CHECK(t.held > 0);
    CHECK(t.orders_differ > 0);
  }
}

TEST_CASE("sim: without ordering.causal the same traffic breaks causal order (the checker can fail)") {
  Totals t;
  const simtest::SeedRange r = simtest::seed_range(20);
  for (std::uint64_t seed = r.first; seed < r.first + std::min<std::uint64_t>(r.count, 20); ++seed) {
    Check c;
    scenario(false, seed, c, t, [](Network&) {});
    CHECK_MESSAGE(c.ok(), "seed ", seed, ": ", c.report());
  }
  MESSAGE("without ordering.causal: " << t.violations << " causal violations in " << t.messages << " messages");
  CHECK(t.violations > 0);
}

TEST_CASE("sim: ordering.causal gives up on a dependency that cannot arrive and reports it as a gap") {
  simtest::for_each_seed(20, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, LinkParams::clean()));
    attach(net);
    for (std::size_t i = 0; i < kMembers; ++i) {
      tmc::Plan p = plan_for(i, true);
      for (auto& s : p.stages) {
        if (s.kind == "ordering.causal") s.params = {{"window", "4"}, {"hold_us", "100000"}};
      }
      net.add_member(p, registry());
    }
    // Member 2 hears nothing from member 0 until 2 s; member 1 answers each message of
    // member 0, so member 2 gets answers whose predecessor it cannot have.
    net.cut(0, 2, 0, 2'000 * kMs, /*one_way=*/true);
    Causality hb(net, seed);
    constexpr std::uint32_t kCount = 10;
    for (std::uint32_t n = 0; n < kCount; ++n) net.schedule(300 * kMs + n * 20 * kMs, [&hb] { hb.send(0); });
    for (std::uint64_t at = 300 * kMs; at < 700 * kMs; at += 1 * kMs) {
      net.schedule(at, [&hb] {
        for (const auto& m : hb.absorb(1)) {
          if (m.first == 0) hb.send(1);
        }
      });
    }
    c.expect(net.run_until(5'000 * kMs), "event limit hit");
    const auto cs = net.counters(2);
    c.expect(cs.get("ordering.causal_forced") > 0, "member 2 never gave up");
    c.expect(net.held_packets(2) == 0, "member 2 still holds ", net.held_packets(2), " packets");
    // Every answer of member 1 is delivered once, and every message of member 0 is
    // either delivered or inside a gap_skipped range ordering.causal reported.
    std::uint32_t answers = 0;
    std::vector<int> covered(kCount + 1, 0);
    for (const auto& d : net.deliveries(2)) {
      const auto p = simtest::parse_payload(d.payload, seed);
      if (p.ok && p.member == 1) ++answers;
      if (p.ok && p.member == 0 && p.k < kCount) ++covered[p.k + 1];
    }
    c.expect(answers == net.sent(1).size(), "member 2 delivered ", answers, " of ", net.sent(1).size(), " answers");
    for (const auto& e : net.events(2)) {
      if (e.type != tmc::EventType::gap_skipped || e.stage != "ordering.causal") continue;
      c.expect(e.sender == net.sender_id(0), "a gap of another sender was reported");
      for (std::uint64_t q = e.seq; q < e.seq + e.count && q <= kCount; ++q) ++covered[q];
    }
    for (std::uint32_t q = 1; q <= kCount; ++q) {
      c.expect(covered[q] == 1, "message ", q, " of member 0 delivered or skipped ", covered[q], " times at member 2");
    }
    // After the cut heals, reliability repairs what member 2 missed: too late, dropped.
    c.expect(cs.get("ordering.causal_stale_dropped") > 0, "nothing of member 0 arrived late");
  });
}
