// The module objects loaded through the module manager (ModuleSet, digest checked) and run
// in the simulator: each loaded stage behaves exactly as the same code linked in (same
// deliveries, seed for seed), so the proofs of test_fec_sim.cpp and test_causal_sim.cpp
// hold for the objects a program loads; the ledbat controller drives congestion.window
// (`algorithm: ledbat`) and holds its window back when the path's delay rises, which the
// loss-based aimd does not.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include "causal/causal.hpp"
#include "fec/fec.hpp"
#include "sim_util.hpp"
#include "tmc/manifest.hpp"
#include "tmc/modules.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kMs = 1'000'000;

std::string object_path(const std::string& mod) { return std::string(TMC_MODULE_DIR) + "/tmc_" + mod + ".so"; }

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// fec, causal and ledbat, loaded with their digests checked.
const tmc::ModuleSet& loaded() {
  static const tmc::ModuleSet* set = [] {
    auto* s = new tmc::ModuleSet;
    for (const char* mod : {"fec", "causal", "ledbat"}) {
      const std::string path = object_path(mod);
      const tmc::Status st = s->load(path, tmc::sha256_hex(file_bytes(path)));
      REQUIRE_MESSAGE(st.is_ok(), st.to_string());
    }
    return s;
  }();
  return *set;
}

// The same stages linked in, registered like a program that builds its own Registry.
const tmc::Registry& linked() {
  static const tmc::Registry r = [] {
    tmc::Registry reg;
    tmc::register_builtin_stages(reg);
    REQUIRE(reg.add(tmc::modules::fec_xor_info()).is_ok());
    REQUIRE(reg.add(tmc::modules::causal_info()).is_ok());
    return reg;
  }();
  return r;
}

tmc::Plan member_plan(std::vector<tmc::PlannedStage> stages, std::size_t index, std::size_t n) {
  tmc::Plan p = tmc::sim::make_plan(std::move(stages));
  p.member = "m" + std::to_string(index);
  for (std::size_t i = 0; i < n; ++i) p.members.push_back("m" + std::to_string(i));
  return p;
}

LinkParams lossy(double loss) {
  LinkParams l = simtest::hostile_link(loss);
  l.corrupt = 0.0;
  return l;
}

using Log = std::vector<std::vector<tmc::sim::Delivery>>;

// Three members, reliable, with `top` above reliability.arq and `repair` below it; every
// member sends, and member 1 answers what it gets from member 0 (causally dependent).
Log run(const tmc::Registry& reg, const std::vector<tmc::PlannedStage>& top,
        const std::vector<tmc::PlannedStage>& repair, std::uint64_t seed, Check& c, tmc::CounterSnapshot* counters) {
  constexpr std::size_t n = 3;
  Network net(simtest::config(seed, lossy(0.01 * static_cast<double>(1 + seed % 5))));
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<tmc::PlannedStage> s = top;
    s.push_back(tmc::sim::stage("ordering.seq"));
    s.push_back(tmc::sim::stage("reliability.arq", {{"nack_delay_us", "3000"}}));
    s.insert(s.end(), repair.begin(), repair.end());
    s.push_back(tmc::sim::stage("membership.heartbeat", {{"interval_us", "20000"}, {"timeout_us", "300000"}}));
    s.push_back(tmc::sim::stage("checksum.crc32c"));
    net.add_member(member_plan(std::move(s), i, n), reg);
  }
  simtest::schedule_burst(net, {0, 2}, 100, 300 * kMs, 100'000, seed);
  std::size_t seen = 0;
  for (std::uint64_t at = 300 * kMs; at < 400 * kMs; at += 500'000) {
    net.schedule(at, [&net, &seen, seed] {
      const auto& log = net.deliveries(1);
      for (; seen < log.size(); ++seen) {
        const auto k = static_cast<std::uint32_t>(net.sent(1).size());
        if (log[seen].from == 0) net.send(1, simtest::make_payload(1, k, seed));
      }
    });
  }
  c.expect(net.run_until(3'000 * kMs), "event limit hit");
  Log out;
  for (std::size_t r = 0; r < n; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    for (std::size_t s = 0; s < n; ++s) {
      std::size_t got = 0;
      for (const auto& d : net.deliveries(r)) got += d.from == s ? 1 : 0;
      if (s != r)
        c.expect(got == net.sent(s).size(), "member ", r, " got ", got, " of ", net.sent(s).size(), " from ", s);
    }
    out.push_back(net.deliveries(r));
    if (counters != nullptr && r == 2) *counters = net.counters(r);
  }
  return out;
}

bool same(const Log& a, const Log& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t r = 0; r < a.size(); ++r) {
    if (a[r].size() != b[r].size()) return false;
    for (std::size_t i = 0; i < a[r].size(); ++i) {
      const auto& x = a[r][i];
      const auto& y = b[r][i];
      if (x.from != y.from || x.seq != y.seq || x.time_ns != y.time_ns || x.payload != y.payload) return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("loaded modules: fec, causal and ledbat load with their digests and describe themselves") {
  const tmc::ModuleSet& set = loaded();
  CHECK(set.loaded_text() == "fec 1.0.0, causal 1.0.0, ledbat 1.0.0");
  const tmc::StageInfo* fec = set.registry().find("fec.xor");
  REQUIRE(fec != nullptr);
  CHECK(fec->layer == tmc::StageLayer::repair);
  CHECK(fec->provenance.find("module fec 1.0.0, sha256 ") == 0);
  const tmc::StageInfo* causal = set.registry().find("ordering.causal");
  REQUIRE(causal != nullptr);
  CHECK(causal->layer == tmc::StageLayer::ordering);
  CHECK(causal->requires_below == std::vector<std::string_view>{"reliability.arq"});
  auto ledbat = set.make_controller("ledbat", tmc::CongestionLimits{});
  REQUIRE(ledbat != nullptr);
  CHECK(ledbat->window_bytes() == tmc::CongestionLimits{}.mss_bytes * std::uint64_t{10});
  // The generated stage reference covers module stages like built-ins.
  const std::string docs = tmc::stages_markdown(set.registry());
  CHECK(docs.find("fec.xor") != std::string::npos);
  CHECK(docs.find("ordering.causal_forced") != std::string::npos);
}

TEST_CASE("loaded modules: fec.xor and ordering.causal loaded run exactly as linked in seed for seed") {
  const std::vector<tmc::PlannedStage> causal = {tmc::sim::stage("ordering.causal")};
  const std::vector<tmc::PlannedStage> fec = {tmc::sim::stage("fec.xor", {{"k", "8"}, {"flush_us", "1000"}})};
  std::uint64_t rebuilt = 0;
  std::uint64_t held = 0;
  simtest::for_each_seed(20, [&](std::uint64_t seed, Check& c, auto&) {
    tmc::CounterSnapshot cs;
    const Log a = run(loaded().registry(), causal, fec, seed, c, &cs);
    const Log b = run(linked(), causal, fec, seed, c, nullptr);
    c.expect(same(a, b), "the loaded modules delivered differently from the linked-in code");
    c.expect(cs.get("fec.xor.module_faults") == 0 && cs.get("ordering.causal.module_faults") == 0, "module faults");
    rebuilt += cs.get("fec.rebuilt");
    held += cs.get("ordering.causal_held");
  });
  MESSAGE("loaded: member 2 rebuilt " << rebuilt << " datagrams and held " << held << " messages for causality");
  const simtest::SeedRange r = simtest::seed_range(20);
  if (!r.single) {
    CHECK(rebuilt > 0);
    CHECK(held > 0);
  }
}

namespace {

struct WindowRun {
  std::uint64_t max_window = 0;  // the largest window member 0's congestion.window reached
  std::size_t delivered = 0;     // messages member 1 delivered by the end
};

// Two members; member 0 sends 100-byte messages every 100 us for 2 s through reliability
// and congestion.window with `algorithm`. With `delay_rises`, every link's delay goes
// from 10 ms to 100 ms at 600 ms (a queue another flow built).
WindowRun window_run(const tmc::Registry& reg, const std::string& algorithm, bool delay_rises, std::uint64_t seed,
                     Check& c) {
  Network net(simtest::config(seed, LinkParams::clean(10 * kMs)));
  for (std::size_t i = 0; i < 2; ++i) {
    net.add_member(member_plan({tmc::sim::stage("reliability.arq", {{"max_retries", "60"}}),
                                tmc::sim::stage("congestion.window", {{"algorithm", algorithm}}),
                                tmc::sim::stage("membership.heartbeat", {{"interval_us", "20000"}}),
                                tmc::sim::stage("checksum.crc32c")},
                               i, 2),
                   reg);
  }
  if (delay_rises) net.schedule(600 * kMs, [&net] { net.set_default_link(LinkParams::clean(100 * kMs)); });
  constexpr std::uint32_t kCount = 20'000;
  for (std::uint32_t k = 0; k < kCount; ++k) {
    net.schedule_send(10 * kMs + k * 100'000ull, 0, std::vector<std::uint8_t>(100, static_cast<std::uint8_t>(k)));
  }
  c.expect(net.run_until(4'000 * kMs), "event limit hit");
  WindowRun out;
  out.max_window = net.counters(0).get("congestion.max_window_bytes");
  out.delivered = net.deliveries(1).size();
  // At a steady delay every window reaches the end; a yielding controller may not.
  if (!delay_rises) {
    c.expect(out.delivered == kCount, algorithm, ": member 1 delivered ", out.delivered, " of ", kCount);
  }
  return out;
}

}  // namespace

TEST_CASE("loaded modules: congestion.window runs ledbat which yields when the delay rises") {
  simtest::for_each_seed(1, [](std::uint64_t seed, Check& c, auto&) {
    const tmc::Registry& reg = loaded().registry();
    const WindowRun ledbat_flat = window_run(reg, "ledbat", false, seed, c);
    const WindowRun ledbat_rise = window_run(reg, "ledbat", true, seed, c);
    const WindowRun aimd_rise = window_run(reg, "aimd", true, seed, c);
    MESSAGE("largest window: ledbat " << ledbat_flat.max_window << " B at a steady delay, " << ledbat_rise.max_window
                                      << " B when it rises (delivered " << ledbat_rise.delivered << "); aimd "
                                      << aimd_rise.max_window << " B when it rises (delivered " << aimd_rise.delivered
                                      << ")");
    c.expect(ledbat_flat.max_window > tmc::CongestionLimits{}.mss_bytes * std::uint64_t{10}, "ledbat never grew");
    c.expect(ledbat_rise.max_window < ledbat_flat.max_window, "ledbat grew as much with the queuing delay as without");
    // The loss-based aimd sees no loss and keeps sending; ledbat leaves the path to others.
    c.expect(ledbat_rise.delivered < aimd_rise.delivered, "ledbat did not yield to the queuing delay");
  });
}

namespace {

// A manifest that asks for all three modules: the compiler places them by their layers.
tmc::Plan compiled_with_modules(std::size_t self) {
  const std::string yaml =
      "id: sim-all-modules\n"
      "members: [m0, m1, m2]\n"
      "reliability: true\n"
      "point-to-point ordering: strict\n"
      "error checking: true\n"
      "congestion control: ledbat\n"
      "modules: [fec, causal, ledbat]\n"
      "stages:\n"
      "  fec.xor: {k: 8, flush_us: 1000}\n"
      "  ordering.causal: {}\n";
  tmc::Manifest m;
  tmc::Diagnostics d;
  REQUIRE_MESSAGE(tmc::parse_manifest(yaml, "modules.yaml", m, d), d.to_string());
  m.name = "m" + std::to_string(self);
  tmc::Plan p;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), loaded().registry(), p);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return p;
}

std::ptrdiff_t position(const tmc::Plan& p, std::string_view kind) {
  for (std::size_t i = 0; i < p.stages.size(); ++i) {
    if (p.stages[i].kind == kind) return static_cast<std::ptrdiff_t>(i);
  }
  return -1;
}

}  // namespace

TEST_CASE("loaded modules: a manifest asking for all three compiles them into place and runs in the simulator") {
  const tmc::Plan plan = compiled_with_modules(0);
  // ordering.causal directly above ordering.seq; fec.xor below reliability and congestion
  // control, above membership; congestion.window runs ledbat.
  CHECK(position(plan, "ordering.causal") + 1 == position(plan, "ordering.seq"));
  CHECK(position(plan, "reliability.arq") < position(plan, "fec.xor"));
  CHECK(position(plan, "congestion.window") < position(plan, "fec.xor"));
  CHECK(position(plan, "fec.xor") < position(plan, "membership.heartbeat"));
  const auto w = position(plan, "congestion.window");
  REQUIRE(w >= 0);
  CHECK(plan.stages[static_cast<std::size_t>(w)].params.at("algorithm") == "ledbat");

  std::uint64_t rebuilt = 0;
  std::uint64_t held = 0;
  simtest::for_each_seed(20, [&](std::uint64_t seed, Check& c, auto& attach) {
    constexpr std::size_t n = 3;
    Network net(simtest::config(seed, lossy(0.03)));
    attach(net);
    for (std::size_t i = 0; i < n; ++i) net.add_member(compiled_with_modules(i), loaded().registry());
    simtest::schedule_burst(net, {0, 2}, 150, 300 * kMs, 100'000, seed);
    std::size_t seen = 0;
    for (std::uint64_t at = 300 * kMs; at < 400 * kMs; at += 500'000) {
      net.schedule(at, [&net, &seen, seed] {
        const auto& log = net.deliveries(1);
        for (; seen < log.size(); ++seen) {
          const auto k = static_cast<std::uint32_t>(net.sent(1).size());
          if (log[seen].from == 0) net.send(1, simtest::make_payload(1, k, seed));
        }
      });
    }
    c.expect(net.run_until(5'000 * kMs), "event limit hit");
    for (std::size_t r = 0; r < n; ++r) {
      simtest::check_intact(net, r, seed, c);
      simtest::check_no_duplicates(net, r, seed, c);
      for (std::size_t s = 0; s < n; ++s) {
        std::size_t got = 0;
        for (const auto& d : net.deliveries(r)) got += d.from == s ? 1 : 0;
        if (s != r) {
          c.expect(got == net.sent(s).size(), "member ", r, " got ", got, " of ", net.sent(s).size(), " from ", s);
        }
      }
      // An answer of member 1 never reaches member 2 before the message it answers.
      std::size_t from0 = 0;
      std::size_t answers = 0;
      for (const auto& d : net.deliveries(r)) {
        if (d.from == 0) ++from0;
        if (d.from == 1) {
          ++answers;
          c.expect(r == 0 || from0 >= answers, "member ", r, " delivered answer ", answers, " after only ", from0,
                   " messages of member 0");
        }
      }
      const auto cs = net.counters(r);
      c.expect(cs.get("ordering.causal_forced") == 0, "member ", r, " gave up on a causal dependency");
      c.expect(cs.get("fec.xor.module_faults") + cs.get("ordering.causal.module_faults") == 0, "module faults");
      c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets");
      rebuilt += cs.get("fec.rebuilt");
      held += cs.get("ordering.causal_held");
    }
  });
  MESSAGE("compiled plan with all three modules: rebuilt " << rebuilt << ", held for causality " << held);
  if (!simtest::seed_range(20).single) CHECK(rebuilt > 0);
}
