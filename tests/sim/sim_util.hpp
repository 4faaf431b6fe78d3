// Shared helpers for the simulator scenarios: seed loops with replay hints, a problem
// collector, self-checking payloads, and the property checks several scenarios share.
//
// Seeds: every scenario runs seeds 1..N (N = its default, or TMC_SIM_SEEDS=N). With
// TMC_SIM_SEED=S only seed S runs, so a failure replays exactly:
//   TMC_SIM_SEED=1234 ./tmc_sim_tests -tc='sim: ordering.fifo strict ...'
// TMC_SIM_TRACE=1 together with TMC_SIM_SEED prints the network trace of that seed.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sim/network.hpp"
#include "tmc/manifest.hpp"

namespace simtest {

/// The plan member `name` compiles from a manifest given as YAML text (default capabilities,
/// built-in stages); a parse or compile error fails the test with its message.
inline tmc::Plan compile_plan(const std::string& yaml, const std::string& name) {
  tmc::Manifest m;
  tmc::Diagnostics d;
  REQUIRE_MESSAGE(tmc::parse_manifest(yaml, "sim.yaml", m, d), d.to_string());
  m.name = name;
  tmc::Plan p;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), tmc::Registry::builtin(), p);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return p;
}

using tmc::sim::Network;

/// The hostile link of the reliability scenarios: `loss`, 5% duplication, 10% reordering
/// (2 ms), 100 us jitter, 2% corruption of up to 3 bits.
inline tmc::sim::LinkParams hostile_link(double loss) {
  tmc::sim::LinkParams l = tmc::sim::LinkParams::clean();
  l.loss = loss;
  l.duplicate = 0.05;
  l.reorder = 0.1;
  l.reorder_delay_ns = 2'000'000;
  l.jitter_ns = 100'000;
  l.corrupt = 0.02;
  l.corrupt_max_bits = 3;
  return l;
}

/// A network configuration with the given seed and link model.
inline tmc::sim::Config config(std::uint64_t seed, const tmc::sim::LinkParams& link = tmc::sim::LinkParams::clean()) {
  tmc::sim::Config c;
  c.seed = seed;
  c.link = link;
  return c;
}

/// Every member index of `net`, for assertions over all receivers.
inline std::vector<std::size_t> all(const Network& net) {
  std::vector<std::size_t> v;
  for (std::size_t i = 0; i < net.size(); ++i) v.push_back(i);
  return v;
}

/// Seeds to run: [first, first + count).
struct SeedRange {
  std::uint64_t first = 1;
  std::uint64_t count = 0;
  bool single = false;  ///< TMC_SIM_SEED was given
};

inline bool parse_u64(const char* text, std::uint64_t& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (end == nullptr || *end != '\0') return false;
  out = v;
  return true;
}

inline SeedRange seed_range(std::uint64_t default_count) {
  SeedRange r;
  r.count = default_count;
  if (const char* s = std::getenv("TMC_SIM_SEED"); s != nullptr) {
    std::uint64_t seed = 0;
    REQUIRE_MESSAGE(parse_u64(s, seed), "TMC_SIM_SEED must be a decimal number, got '" << std::string(s) << "'");
    r.first = seed;
    r.count = 1;
    r.single = true;
    return r;
  }
  if (const char* s = std::getenv("TMC_SIM_SEEDS"); s != nullptr) {
    std::uint64_t n = 0;
    REQUIRE_MESSAGE(parse_u64(s, n), "TMC_SIM_SEEDS must be a decimal number, got '" << std::string(s) << "'");
    r.count = n;
  }
  return r;
}

/// Collects what went wrong in one seed (checked without doctest's per-assertion cost,
/// reported once per failing seed).
class Check {
 public:
  template <class... A>
  bool expect(bool ok, const A&... what) {
    if (ok) return true;
    ++failures_;
    if (problems_.size() < kMaxKept) {
      std::ostringstream os;
      (os << ... << what);
      problems_.push_back(os.str());
    }
    return false;
  }
  [[nodiscard]] bool ok() const noexcept { return failures_ == 0; }
  [[nodiscard]] std::string report() const {
    std::ostringstream os;
    os << failures_ << " problem(s)";
    for (const auto& p : problems_) os << "\n    - " << p;
    if (failures_ > problems_.size()) os << "\n    - ...";
    return os.str();
  }

 private:
  static constexpr std::size_t kMaxKept = 8;
  std::vector<std::string> problems_;
  std::size_t failures_ = 0;
};

/// Whether enough seeds run for checks over all of them ("corruption happened at least
/// once") to be meaningful; false when replaying a single seed.
inline bool many_seeds(std::uint64_t default_count) { return seed_range(default_count).count >= 100; }

inline bool trace_requested() {
  const char* t = std::getenv("TMC_SIM_TRACE");
  return t != nullptr && *t != '\0' && *t != '0';
}

/// With TMC_SIM_FINGERPRINTS=FILE, every Network a scenario attaches appends one line to
/// FILE when it is destroyed: "<scenario>\t<seed>\t<network # in the seed>\t<fingerprint>".
/// scripts/sim-fingerprints.sh compares a few seeds of every scenario with the pinned list
/// in tests/sim/fingerprints.txt, so a refactor that claims to change no behaviour proves it.
inline std::ostream* fingerprint_log() {
  static std::ofstream file;
  static std::ostream* out = [] {
    const char* path = std::getenv("TMC_SIM_FINGERPRINTS");
    if (path == nullptr || *path == '\0') return static_cast<std::ostream*>(nullptr);
    file.open(path, std::ios::app);
    REQUIRE_MESSAGE(file.good(), "cannot write TMC_SIM_FINGERPRINTS file " << path);
    return static_cast<std::ostream*>(&file);
  }();
  return out;
}

/// Run `fn(seed, check, net_hook)` for every seed; a failing seed is reported with its
/// replay command, and the loop stops after a few failures to keep the output readable.
/// `fn` should call `attach(net)` on each Network it creates (turns tracing on when asked).
template <class F>
void for_each_seed(std::uint64_t default_count, F&& fn) {
  const SeedRange range = seed_range(default_count);
  const auto* test = doctest::getContextOptions()->currentTest;
  const std::string name = test != nullptr ? test->m_name : "?";
  // doctest's -tc splits its argument at commas, so a name with one could not be replayed.
  CHECK_MESSAGE(name.find(',') == std::string::npos, "scenario names must not contain commas: " << name);
  const bool trace = range.single && trace_requested();
  std::ostream* pins = fingerprint_log();
  std::uint64_t seed = 0;
  std::uint64_t networks = 0;
  auto attach = [trace, pins, &name, &seed, &networks](Network& net) {
    if (trace) net.set_trace(&std::cout);
    if (pins != nullptr) {
      net.set_fingerprint_sink([pins, &name, &seed, n = networks++](std::uint64_t f) {
        *pins << name << '\t' << seed << '\t' << n << '\t' << std::hex << f << std::dec << '\n';
      });
    }
  };
  std::uint64_t failed = 0;
  for (std::uint64_t i = 0; i < range.count; ++i) {
    seed = range.first + i;
    networks = 0;
    Check c;
    fn(seed, c, attach);
    if (!c.ok()) {
      ++failed;
      std::ostringstream os;
      os << "seed " << seed << ": " << c.report() << "\n  replay: TMC_SIM_SEED=" << seed
         << " ./tmc_sim_tests -tc='" << name << "'   (add TMC_SIM_TRACE=1 for the network trace)";
      FAIL_CHECK(os.str());
      if (failed >= 3) break;
    }
  }
  CHECK_MESSAGE(failed == 0, failed << " failing seed(s) out of " << range.count);
}

// --- payloads -----------------------------------------------------------------------------

/// A self-checking payload for message k of member `m`: [k: u32][m: u8][filler], the
/// filler and length derived from (salt, m, k). Any changed bit makes parse_payload fail
/// (unless it happens to produce another valid payload, which needs dozens of flips).
inline std::vector<std::uint8_t> make_payload(std::size_t m, std::uint32_t k, std::uint64_t salt) {
  std::uint64_t state = salt ^ (std::uint64_t{m} << 40) ^ k;
  const std::size_t len = 16 + tmc::sim::splitmix64(state) % 112;
  std::vector<std::uint8_t> out(len);
  tmc::wire::put_u32(out.data(), k);
  out[4] = static_cast<std::uint8_t>(m);
  for (std::size_t i = 5; i < len; ++i) out[i] = static_cast<std::uint8_t>(tmc::sim::splitmix64(state));
  return out;
}

struct Parsed {
  bool ok = false;
  std::size_t member = 0;
  std::uint32_t k = 0;
};

inline Parsed parse_payload(const std::vector<std::uint8_t>& p, std::uint64_t salt) {
  Parsed r;
  if (p.size() < 16) return r;
  r.k = tmc::wire::get_u32(p.data());
  r.member = p[4];
  r.ok = make_payload(r.member, r.k, salt) == p;
  return r;
}

/// Schedule `count` messages from each of `senders`, one every `interval_ns` starting at
/// `start_ns` (members offset by a few ns so their sends interleave deterministically).
inline void schedule_burst(Network& net, const std::vector<std::size_t>& senders, std::uint32_t count,
                           std::uint64_t start_ns, std::uint64_t interval_ns, std::uint64_t salt,
                           std::uint32_t first_k = 0, std::uint16_t flags = 0) {
  for (std::uint32_t k = 0; k < count; ++k) {
    for (std::size_t s : senders) {
      net.schedule_send(start_ns + k * interval_ns + s * 7, s, make_payload(s, first_k + k, salt), flags);
    }
  }
}

// --- shared property checks ---------------------------------------------------------------

/// Every delivery at `r` is a payload some member really sent (intact), from the member
/// the network says it came from. Returns how many deliveries were corrupted.
inline std::uint64_t check_intact(const Network& net, std::size_t r, std::uint64_t salt, Check& c,
                                  bool corruption_allowed = false) {
  std::uint64_t corrupted = 0;
  for (const auto& d : net.deliveries(r)) {
    const Parsed p = parse_payload(d.payload, salt);
    const bool good = p.ok && p.member == d.from && d.from < net.size() && p.k < net.sent(d.from).size() &&
                      net.sent(d.from)[p.k].payload == d.payload;
    if (!good) {
      ++corrupted;
      c.expect(corruption_allowed, "member ", r, " delivered a payload that was never sent (corrupted?) at t=",
               d.time_ns, ", from ", static_cast<std::int64_t>(d.from), ", seq ", d.seq);
    }
  }
  return corrupted;
}

/// Each (source, k) is delivered at most once in `log` (deliveries of member `r`).
inline void check_no_duplicates(const std::vector<tmc::sim::Delivery>& log, std::size_t r, std::uint64_t salt,
                                Check& c) {
  std::set<std::pair<std::size_t, std::uint32_t>> seen;
  for (const auto& d : log) {
    const Parsed p = parse_payload(d.payload, salt);
    if (!p.ok) continue;
    c.expect(seen.insert({p.member, p.k}).second, "member ", r, " delivered message ", p.k, " of member ", p.member,
             " twice");
  }
}
inline void check_no_duplicates(const Network& net, std::size_t r, std::uint64_t salt, Check& c) {
  check_no_duplicates(net.deliveries(r), r, salt, c);
}

/// Per (source, epoch), seq strictly increases, and seq names the message sent with it:
/// message k of an incarnation whose first message was k0 carries seq k - k0 + 1.
/// `first_k_of_epoch` maps (member, epoch) to k0 (default 0).
using FirstK = std::map<std::pair<std::size_t, std::uint32_t>, std::uint32_t>;
inline void check_fifo(const std::vector<tmc::sim::Delivery>& log, std::size_t r, std::uint64_t salt, Check& c,
                       const FirstK& first_k_of_epoch = {}) {
  std::map<std::pair<std::size_t, std::uint32_t>, std::uint64_t> last;
  for (const auto& d : log) {
    const auto key = std::make_pair(d.from, d.epoch);
    auto it = last.find(key);
    if (it != last.end()) {
      c.expect(d.seq > it->second, "member ", r, " delivered seq ", d.seq, " of member ", d.from, " after seq ",
               it->second, " (out of order or duplicate)");
    }
    last[key] = d.seq;
    const Parsed p = parse_payload(d.payload, salt);
    if (p.ok) {
      auto k0 = first_k_of_epoch.find(key);
      const std::uint32_t first = k0 == first_k_of_epoch.end() ? 0 : k0->second;
      c.expect(d.seq == std::uint64_t{p.k} - first + 1, "member ", r, " delivered seq ", d.seq, " from member ",
               d.from, " with the payload of message ", p.k);
    }
  }
}
inline void check_fifo(const Network& net, std::size_t r, std::uint64_t salt, Check& c,
                       const FirstK& first_k_of_epoch = {}) {
  check_fifo(net.deliveries(r), r, salt, c, first_k_of_epoch);
}

/// Exactly-once accounting for what member `r` got from member `s` in incarnation
/// `epoch`: the delivered sequence numbers and the ranges reported by gap_skipped events
/// must be disjoint and together cover first..last without a hole, where first is 1 —
/// or, when `late_join_above` is non-zero, any number above it (for a stage that starts
/// silently on a late join; ordering.fifo strict no longer does: it reports [1, first) as
/// a gap_skipped event, so its callers can leave this 0). Returns {first, last} (last = 0:
/// nothing).
struct Coverage {
  std::uint64_t first = 1;
  std::uint64_t last = 0;
};
inline Coverage check_exactly_once(const Network& net, std::size_t r, std::size_t s, std::uint32_t epoch, Check& c,
                                   std::uint64_t late_join_above = 0) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // [first, first + count)
  for (const auto& d : net.deliveries(r)) {
    if (d.from == s && d.epoch == epoch) spans.emplace_back(d.seq, 1);
  }
  const std::uint32_t id = net.sender_id(s);
  for (const auto& e : net.events(r)) {
    if (e.type == tmc::EventType::gap_skipped && e.sender == id && e.epoch == epoch) {
      c.expect(e.count > 0, "member ", r, " reported an empty gap of member ", s);
      spans.emplace_back(e.seq, e.count);
    }
  }
  std::sort(spans.begin(), spans.end());
  Coverage cov;
  if (!spans.empty() && late_join_above != 0 && spans.front().first > late_join_above) cov.first = spans.front().first;
  std::uint64_t next = cov.first;
  for (const auto& [first, count] : spans) {
    if (!c.expect(first == next, "member ", r, " from member ", s, ": expected seq ", next,
                  " to be delivered or skipped next, found ", first, " (+", count, ")")) {
      return cov;
    }
    next = first + count;
  }
  cov.last = next - 1;
  return cov;
}

/// Sum of the counters whose names are given.
inline std::uint64_t sum_counters(const tmc::CounterSnapshot& s, std::initializer_list<std::string_view> names) {
  std::uint64_t n = 0;
  for (auto name : names) n += s.get(name);
  return n;
}

/// Sum of "wire.*" counters (datagrams that failed decoding, by reason).
inline std::uint64_t wire_errors(const tmc::CounterSnapshot& s) {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < s.names.size(); ++i) {
    if (s.names[i].rfind("wire.", 0) == 0) n += s.values[i];
  }
  return n;
}

}  // namespace simtest
