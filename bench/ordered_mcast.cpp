// Ordered-multicast benchmark: throughput and one-way latency of three members
// that all send and all deliver, each its own process in its own network namespace
// (scripts/bench-ordered.sh builds the network, starts tmc-sequencer when a row needs it,
// runs every row and calls --role report for the table).
//
// Rows (the manifest and capability file decide; this program only runs a member):
//   no-ordering     reliability + point-to-point ordering (each sender's order, no total order)
//   sw-sequencer    group ordering + reliability, a member sequences (ordering.group)
//   tmc-sequencer   the same with a capability file declaring network.sequencer: members
//                   unicast their data to the tmc-sequencer process, which stamps and multicasts
//
// Load: every member sends --rate messages per second for --seconds (paced), or with
// --rate 0 as fast as its channel's send() returns. The harness runs each row at a few
// loads; the lowest one measures latency without queueing, the unpaced one the most the
// row sustains (or how it breaks).
// Every payload starts with a u64 sequence number (big-endian; the top bit marks warm-up
// messages, the top two bits end markers), then the u64 CLOCK_MONOTONIC time of the send()
// call and the u32 index of the sender. Namespaces share the host's monotonic clock, so a
// receiver computes the one-way latency (send() call to delivery in the handler) directly.
// A member only counts messages from the other members (with group ordering its own come
// back too; without it they do not), so every row counts the same thing.
//
// A member first waits until the membership view holds the others, prints "ready", and
// waits for the harness's --start-after file (so the three start within a few ms of each
// other); then 200 warm-up messages over 0.1 s, a 0.2 s pause, the measured sending, and 5
// end markers. It has finished receiving once it has end markers from every other member
// (plus 0.1 s of grace), or after --idle seconds without a delivery; then it prints its
// "result ..." line and stays alive (the others may still need its acknowledgments and
// repairs) until SIGTERM or --linger seconds.
//
// Roles:
//   --role member --name N --index I --members K --manifest FILE [--caps FILE] --group G
//                 --port P --interface IF --seconds S --rate R|0
//                 [--size B] --start-after FILE
//   --role report --input FILE      the harness's results file -> Markdown table
#include <sys/resource.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "e2e_common.hpp"
#include "tmc/capabilities.hpp"
#include "tmc/diagnostics.hpp"
#include "tmc/manifest.hpp"

namespace {

using namespace tmc::bench;
using namespace std::chrono_literals;

constexpr std::uint64_t kWarmupBit = 1ULL << 63;
constexpr std::uint64_t kEndBits = 3ULL << 62;
constexpr int kWarmupMessages = 200;
constexpr int kEndMarkers = 5;
constexpr std::uint64_t kEndGraceNs = 100'000'000;
constexpr std::size_t kHeaderBytes = 20;  // seq, send time, sender index
constexpr std::size_t kMaxSamples = 4'000'000;
constexpr int kMaxMembers = 16;

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int /*signo*/) { g_stop = 1; }

struct Config {
  std::string role;
  std::string name;
  int index = 0;
  int members = 3;
  std::string manifest;
  std::string caps;
  std::string group = "239.255.92.1";
  int port = 48700;
  std::string interface;
  double seconds = 2.0;
  double rate = 1000;
  int size = 64;
  double idle = 5.0;
  double linger = 30.0;
  std::string start_after;
  std::string input;
};


void put_u64(std::uint8_t* p, std::uint64_t v) noexcept { put_seq(p, v); }
std::uint64_t get_u64(const std::uint8_t* p) noexcept { return get_seq(p); }
void put_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v);
    v >>= 8;
  }
}
std::uint32_t get_u32(const std::uint8_t* p) noexcept {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
  return v;
}

/// What one member delivered from the others. Written by the loop thread (the handler);
/// read by the main thread through the atomics while running, and in full after close().
class Tally {
 public:
  Tally(int self, int members) : self_(self), members_(members) {
    samples_.reserve(kMaxSamples);
    for (auto& v : seen_) v.reserve(1 << 20);
  }

  void on(const std::uint8_t* p, std::size_t n, std::uint64_t now_ns) {
    if (n < kHeaderBytes) {
      ++runts_;
      return;
    }
    const std::uint64_t s = get_u64(p);
    const std::uint32_t from = get_u32(p + 16);
    if (from >= static_cast<std::uint32_t>(kMaxMembers)) {
      ++runts_;
      return;
    }
    // With group ordering a member's own messages come back too: then it has everything
    // once its own end marker is back as well as every other member's.
    if (static_cast<int>(from) == self_) own_seen_ = true;
    if ((s & kEndBits) == kEndBits) {
      if (static_cast<int>(from) == self_) {
        own_ended_ = true;
      } else if (!ended_[from]) {
        ended_[from] = true;
        ++ended_count_;
      }
      if (ended_count_ == members_ - 1 && (!own_seen_ || own_ended_) && end_ns() == 0) {
        end_ns_.store(now_ns, std::memory_order_relaxed);
      }
      return;
    }
    if (static_cast<int>(from) != self_) last_ns_.store(now_ns, std::memory_order_relaxed);
    if ((s & kWarmupBit) != 0) return;
    // The order of every measured delivery, own messages included: with group ordering
    // every member that delivered the same messages must have the same hash.
    order_hash_ = (order_hash_ ^ (s * 31 + from)) * 1099511628211ULL;
    ++hashed_;
    if (static_cast<int>(from) == self_) {
      ++own_;
      return;
    }
    auto& seen = seen_[from];
    if (s >= seen.size()) seen.resize(s + 1, false);
    if (seen[s]) {
      ++dups_;
      return;
    }
    seen[s] = true;
    if (has_last_[from] && s < last_seq_[from]) ++out_of_order_;
    has_last_[from] = true;
    last_seq_[from] = std::max(last_seq_[from], s);
    if (received_ == 0) first_ns_ = now_ns;
    window_end_ns_ = now_ns;
    ++received_;
    bytes_ += n;
    progress_.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t sent_ns = get_u64(p + 8);
    if (samples_.size() < kMaxSamples) samples_.push_back(now_ns > sent_ns ? now_ns - sent_ns : 0);
  }

  [[nodiscard]] std::uint64_t end_ns() const { return end_ns_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t last_ns() const { return last_ns_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }

  /// The "result" fields of the receiving half (call after the handler stopped).
  std::string fields() {
    std::sort(samples_.begin(), samples_.end());
    auto pct = [&](double q) -> std::uint64_t {
      if (samples_.empty()) return 0;
      const auto i = static_cast<std::size_t>(q * static_cast<double>(samples_.size() - 1));
      return samples_[i];
    };
    char b[512];
    std::snprintf(b, sizeof b,
                  "received=%" PRIu64 " bytes=%" PRIu64 " window_ns=%" PRIu64 " dups=%" PRIu64
                  " out_of_order=%" PRIu64 " own=%" PRIu64 " runts=%" PRIu64 " ended=%d lat_n=%zu lat_p50_ns=%" PRIu64
                  " lat_p99_ns=%" PRIu64 " lat_max_ns=%" PRIu64 " order_n=%" PRIu64 " order_hash=%016" PRIx64,
                  received_, bytes_, received_ > 1 ? window_end_ns_ - first_ns_ : 0, dups_, out_of_order_, own_,
                  runts_, ended_count_, samples_.size(), pct(0.5), pct(0.99), samples_.empty() ? 0 : samples_.back(), hashed_,
                  order_hash_);
    return b;
  }

 private:
  int self_;
  int members_;
  std::array<std::vector<bool>, kMaxMembers> seen_{};
  std::array<bool, kMaxMembers> ended_{};
  std::array<bool, kMaxMembers> has_last_{};
  std::array<std::uint64_t, kMaxMembers> last_seq_{};
  int ended_count_ = 0;
  bool own_seen_ = false, own_ended_ = false;
  std::vector<std::uint64_t> samples_;
  std::uint64_t received_ = 0, bytes_ = 0, dups_ = 0, out_of_order_ = 0, own_ = 0, runts_ = 0;
  std::uint64_t first_ns_ = 0, window_end_ns_ = 0;
  std::uint64_t order_hash_ = 14695981039346656037ULL, hashed_ = 0;
  std::atomic<std::uint64_t> end_ns_{0};
  std::atomic<std::uint64_t> last_ns_{0};
  std::atomic<std::uint64_t> progress_{0};
};

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

int member(const Config& c) {
  if (c.index < 0 || c.index >= c.members || c.members > kMaxMembers) {
    throw std::runtime_error("--index must be in 0..--members-1 (at most " + std::to_string(kMaxMembers) + ")");
  }
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(c.manifest, m, diag)) throw std::runtime_error(diag.to_string());
  m.group = c.group;
  m.port = c.port;
  m.interface = c.interface;
  m.name = c.name;
  tmc::OpenOptions opt;
  if (!c.caps.empty()) {
    tmc::Diagnostics cdiag;
    if (!tmc::load_capabilities(c.caps, opt.caps, cdiag)) throw std::runtime_error(cdiag.to_string());
  }
  tmc::Channel ch;
  if (tmc::Status st = tmc::Channel::try_open(m, opt, ch); !st) throw std::runtime_error("open: " + st.to_string());

  Tally t(c.index, c.members);
  ch.on_message([&](tmc::Message&& msg) {
    const auto p = msg.payload();
    t.on(p.data(), p.size(), mono_ns());
  });
  if (tmc::Status st = ch.wait_for_members(static_cast<std::size_t>(c.members - 1), 20s); !st) {
    throw std::runtime_error("waiting for the other members: " + st.to_string());
  }
  say("ready");
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!c.start_after.empty() && !file_exists(c.start_after)) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error(c.start_after + " never appeared");
    std::this_thread::sleep_for(2ms);
  }

  // --- sending -----------------------------------------------------------------------
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(c.size), 0x5a);
  std::uint64_t sent = 0, errors = 0;
  auto send_one = [&](std::uint64_t seq) {
    put_u64(buf.data(), seq);
    put_u64(buf.data() + 8, mono_ns());
    put_u32(buf.data() + 16, static_cast<std::uint32_t>(c.index));
    return ch.send(std::span<const std::uint8_t>(buf.data(), buf.size())).is_ok();
  };
  for (int i = 0; i < kWarmupMessages; ++i) {
    send_one(kWarmupBit | static_cast<std::uint64_t>(i));
    if (i % 20 == 19) std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(200ms);
  const std::uint64_t start = mono_ns();
  const std::uint64_t stop = start + static_cast<std::uint64_t>(c.seconds * 1e9);
  const bool paced = c.rate > 0;
  const double interval_ns = paced ? 1e9 / c.rate : 0.0;
  for (std::uint64_t seq = 0;; ++seq) {
    if (paced) {
      const auto due = start + static_cast<std::uint64_t>(static_cast<double>(seq) * interval_ns);
      if (due >= stop) break;
      while (mono_ns() < due) {
        const std::uint64_t left = due - mono_ns();
        if (left > 200'000) std::this_thread::sleep_for(std::chrono::nanoseconds(left - 100'000));
      }
    } else if (mono_ns() >= stop) {
      break;
    }
    if (send_one(seq)) {
      ++sent;
    } else {
      ++errors;
    }
  }
  const std::uint64_t send_elapsed = mono_ns() - start;
  for (int i = 0; i < kEndMarkers; ++i) {
    send_one(kEndBits | static_cast<std::uint64_t>(i));
    std::this_thread::sleep_for(1ms);
  }

  // --- until every other member's end marker (or idle) -----------------------------------
  const auto idle_ns = static_cast<std::uint64_t>(c.idle * 1e9);
  const std::uint64_t hard_stop = mono_ns() + static_cast<std::uint64_t>((c.idle + 30) * 1e9);
  for (;;) {
    const std::uint64_t now = mono_ns();
    const std::uint64_t end = t.end_ns();
    if (end != 0 && now > end + kEndGraceNs) break;
    const std::uint64_t last = t.last_ns();
    if (now > last + idle_ns && now > start + idle_ns) break;
    if (now > hard_stop || g_stop != 0) break;
    std::this_thread::sleep_for(10ms);
  }
  const double cpu = self_cpu_ns();
  const tmc::ChannelStats mid = ch.stats();
  // Report now, then stay for the others' repairs and acknowledgments.
  ch.on_message(nullptr);
  char head[256];
  std::snprintf(head, sizeof head, "result name=%s sent=%" PRIu64 " send_errors=%" PRIu64 " send_elapsed_ns=%" PRIu64
                " cpu_ns=%.0f datagrams_sent=%" PRIu64 " datagrams_received=%" PRIu64 " ",
                c.name.c_str(), sent, errors, send_elapsed, cpu, mid.datagrams_sent, mid.datagrams_received);
  say(head + t.fields());
  const auto linger_until = std::chrono::steady_clock::now() + std::chrono::duration<double>(c.linger);
  while (g_stop == 0 && std::chrono::steady_clock::now() < linger_until) std::this_thread::sleep_for(10ms);
  const tmc::ChannelStats st = ch.stats();
  ch.close();
  std::fprintf(stderr, "%s counters:", c.name.c_str());
  for (const auto& [k, v] : st.counters) {
    if (v != 0) std::fprintf(stderr, " %s=%" PRIu64, k.c_str(), v);
  }
  std::fprintf(stderr, "\n");
  return 0;
}

// --- report -------------------------------------------------------------------------------

struct Case {
  std::string label;
  std::string mode;  ///< the load: messages/s per member, or "max"
  std::string status = "ok";
  std::string reason;
  std::vector<std::map<std::string, std::string>> members;
  std::map<std::string, std::string> sequencer;  ///< tmc-sequencer's counters, when it ran
  double rate = 0;       ///< mean over members: delivered from the others per second
  double complete = 0;   ///< min over members: delivered / sent by the others
  double p50_us = 0, p99_us = 0;  ///< mean over members of their percentiles
  double dups = 0, out_of_order = 0;
  double cpu_ns_per_msg = 0;
  std::string order;  ///< identical | differ | incomplete: every member's order of all measured deliveries

  void derive() {
    order = "identical";
    bool own_delivered = false;
    for (const auto& m : members) own_delivered = own_delivered || kv_num(m, "own") > 0;
    // Without group ordering a member's own messages do not come back: nothing to compare.
    if (!own_delivered) order = "n/a";
    for (const auto& m : members) {
      if (!own_delivered) break;
      if (kv_num(m, "order_n") != kv_num(members.front(), "order_n")) {
        order = "incomplete";
        break;
      }
      if (m.at("order_hash") != members.front().at("order_hash")) order = "differ";
    }
    double sent_total = 0;
    for (const auto& m : members) sent_total += kv_num(m, "sent");
    const double n = static_cast<double>(members.size());
    complete = 1e9;
    double delivered_total = 0, cpu_total = 0;
    for (const auto& m : members) {
      const double got = kv_num(m, "received");
      const double others_sent = sent_total - kv_num(m, "sent");
      // A member that got everything in a burst would report a tiny window; nothing can
      // be delivered faster than it was sent, so half the sending time is the floor.
      const double window_s = std::max(kv_num(m, "window_ns"), kv_num(m, "send_elapsed_ns") * 0.5) / 1e9;
      rate += (window_s > 0 ? got / window_s : 0) / n;
      complete = std::min(complete, others_sent > 0 ? got / others_sent : 0);
      p50_us += kv_num(m, "lat_p50_ns") / 1e3 / n;
      p99_us += kv_num(m, "lat_p99_ns") / 1e3 / n;
      dups += kv_num(m, "dups");
      out_of_order += kv_num(m, "out_of_order");
      delivered_total += got;
      cpu_total += kv_num(m, "cpu_ns");
    }
    cpu_ns_per_msg = delivered_total > 0 ? cpu_total / delivered_total : 0;
  }
};

std::vector<Case> read_cases(const std::string& path) {
  std::vector<Case> out = read_results<Case>(
      path,
      [](std::map<std::string, std::string> kv) {
        Case c;
        c.label = kv["label"];
        c.mode = kv["load"];
        return c;
      },
      [](Case& c, const std::string& head, const std::string& rest) {
        if (head == "member") {
          c.members.push_back(parse_kv(rest));
        } else if (head == "sequencer") {
          c.sequencer = parse_kv(rest);
        } else {
          return false;
        }
        return true;
      });
  for (auto& c : out) {
    if (c.status == "ok" && c.members.empty()) {
      c.status = "failed";
      c.reason = "no member reported";
    }
    if (c.status == "ok") c.derive();
  }
  return out;
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

int report(const Config& cfg) {
  const std::vector<Case> cases = read_cases(cfg.input);
  // The first row label is the baseline; every other row is divided by it at the same load.
  const std::string base_label = cases.empty() ? "" : cases.front().label;
  auto base_of = [&](const Case& c) -> const Case* {
    for (const auto& x : cases) {
      if (x.label == base_label && x.mode == c.mode && x.status == "ok") return &x;
    }
    return nullptr;
  };
  auto ratio = [](double v, const Case* base, double Case::*field) -> std::string {
    if (base == nullptr || base->*field <= 0) return "n/a";
    return fmt("%.2f", v / (base->*field));
  };
  std::printf("| row | offered msg/s per member | delivered msg/s per member | vs %s | delivered/sent (min) | "
              "latency p50 us | p99 us | p50 vs %s | p99 vs %s | dup, out of order | same order at every member | "
              "CPU ns per delivered msg |\n",
              base_label.c_str(), base_label.c_str(), base_label.c_str());
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
  int failures = 0;
  for (const auto& c : cases) {
    const std::string load = c.mode == "max" ? "as fast as send() returns" : c.mode;
    const std::string head = "| " + c.label + " | " + load + " | ";
    if (c.status == "na") {
      std::printf("%snot available: %s | | | | | | | | | |\n", head.c_str(), c.reason.c_str());
      continue;
    }
    if (c.status != "ok") {
      ++failures;
      std::printf("%sfailed: %s | | | | | | | | | |\n", head.c_str(), c.reason.c_str());
      continue;
    }
    const Case* b = base_of(c);
    std::printf("%s%.0f | %s | %.4f | %.0f | %.0f | %s | %s | %.0f, %.0f | %s | %.0f |\n", head.c_str(), c.rate,
                ratio(c.rate, b, &Case::rate).c_str(), c.complete, c.p50_us, c.p99_us,
                ratio(c.p50_us, b, &Case::p50_us).c_str(), ratio(c.p99_us, b, &Case::p99_us).c_str(), c.dups,
                c.out_of_order, c.order.c_str(), c.cpu_ns_per_msg);
  }
  // Where datagrams were lost: the kernel's receive-buffer drops per host, and what
  // tmc-sequencer did with what it received.
  std::string drops;
  for (const auto& c : cases) {
    if (c.status != "ok") continue;
    double member_drops = 0;
    for (const auto& m : c.members) member_drops += kv_num(m, "udp_rcvbuf_errors");
    drops += (drops.empty() ? "" : "; ") + c.label + " at " + c.mode + ": members " + fmt("%.0f", member_drops);
    if (!c.sequencer.empty()) {
      drops += ", tmc-sequencer " + fmt("%.0f", kv_num(c.sequencer, "udp_rcvbuf_errors")) + " (it received " +
               fmt("%.0f", kv_num(c.sequencer, "received")) + ", stamped " + fmt("%.0f", kv_num(c.sequencer, "stamped")) +
               ", refused as stale " + fmt("%.0f", kv_num(c.sequencer, "stale")) + ")";
    }
  }
  if (!drops.empty()) std::printf("\nDatagrams dropped by full socket receive buffers: %s\n", drops.c_str());
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"libTMC ordered-multicast benchmark participant (scripts/bench-ordered.sh runs it)"};
  app.add_option("--role", c.role, "member or report")->required()->check(CLI::IsMember({"member", "report"}));
  app.add_option("--name", c.name, "member name");
  app.add_option("--index", c.index, "this member's index, 0..members-1 (carried in every payload)");
  app.add_option("--members", c.members, "members in the group, this one included")->check(CLI::Range(2, kMaxMembers));
  app.add_option("--manifest", c.manifest, "libTMC manifest (YAML)");
  app.add_option("--caps", c.caps, "capability file (YAML), e.g. declaring network.sequencer");
  app.add_option("--group", c.group, "IPv4 multicast group");
  app.add_option("--port", c.port, "UDP port")->check(CLI::Range(1, 65535));
  app.add_option("--interface", c.interface, "network interface");
  app.add_option("--seconds", c.seconds, "measured sending time")->check(CLI::Range(0.05, 600.0));
  app.add_option("--rate", c.rate, "messages per second per member; 0 = as fast as send() returns")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--size", c.size, "message size in bytes")->check(CLI::Range(static_cast<int>(kHeaderBytes), 1400));
  app.add_option("--idle", c.idle, "stop receiving after this long without a delivery, seconds")
      ->check(CLI::Range(0.05, 60.0));
  app.add_option("--linger", c.linger, "after reporting, stay this long at most (until SIGTERM), seconds")
      ->check(CLI::Range(0.0, 120.0));
  app.add_option("--start-after", c.start_after, "start sending once this file exists");
  app.add_option("--input", c.input, "report: the harness's results file");
  CLI11_PARSE(app, argc, argv);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  try {
    if (c.role == "report") return report(c);
    if (c.manifest.empty() || c.name.empty()) throw std::runtime_error("--role member needs --manifest and --name");
    return member(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc-ordered-mcast (%s %s): %s\n", c.role.c_str(), c.name.c_str(), e.what());
    return 2;
  }
}
