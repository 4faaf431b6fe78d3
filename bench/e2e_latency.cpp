// End-to-end ping-pong latency: two processes on one multicast group; the pinger sends a
// ping, the ponger answers with a pong, the pinger measures the round trip. Compared in the
// same run:
//   raw          UDP multicast, blocking recv()/sendto(), no libTMC (the baseline)
//   tmc          best-effort libTMC channel, the application calling send() and a blocking
//                receive() on its own thread (the ordinary API; receive() reads the socket
//                itself while it waits: OpenOptions::inline_receive)
//   tmc-queue    like `tmc` with inline_receive off: the loop thread reads the socket and
//                hands each message to the thread blocked in receive() (for comparison)
//   tmc-handler  best-effort libTMC channel answering from on_message handlers, i.e. on the
//                runtime's loop thread (no hand-off to an application thread)
//   tmc-ordered  point-to-point ordering + error checking, receive() like `tmc`
//   tmc-spin     like `tmc-handler` on a runtime whose loop busy-polls (IdleStrategy::spin):
//                one spinning thread per host, as Aeron's embedded driver in INVOKER mode
//   tmc-yield    the same with IdleStrategy::yield
//   tmc-spin-recv  `tmc` (send() and receive() on the application thread) on a spinning
//                runtime: the loop and the receiving thread both poll (two cores per host)
// Reported: round-trip p50 / p99 / mean in microseconds and the ratio of p50 to raw's.
// With --repeat N every implementation runs N times, the repetitions interleaved (raw,
// tmc, ..., raw, tmc, ...) so that load from elsewhere hits all alike; the table shows the
// median of each column over the runs, and a second table each run's p50 ratio to the
// raw run just before it.
//
//   tmc-e2e-latency [--seconds 2] [--repeat 1] [--size 64] [--impls raw,tmc,tmc-handler,tmc-ordered]
//                   (also: tmc-queue, tmc-fifo, tmc-checked, tmc-spin, tmc-yield, tmc-spin-recv)
//                   [--interface IF] [--netns PINGER_NS,PONGER_NS] [--loopback 0|1]
// --loopback: IP_MULTICAST_LOOP for every implementation; default 1, or 0 with --netns.
#include <atomic>
#include <cinttypes>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "e2e_common.hpp"

namespace {

using namespace tmc::bench;
using namespace std::chrono_literals;

// Payload: u64 sequence, then a kind byte, then padding to --size.
constexpr std::uint8_t kPing = 'P';
constexpr std::uint8_t kPong = 'Q';
constexpr std::uint8_t kQuit = 'X';
// Rounds that start in the first tenth of the run are warm-up (caches, page faults, the
// scheduler learning the ping-pong pattern) and are not counted.
constexpr double kWarmupShare = 0.1;
constexpr std::size_t kMinSize = 9;

struct Samples {
  std::vector<double> rtt_ns;
  std::uint64_t timeouts = 0;
  void print() {
    std::sort(rtt_ns.begin(), rtt_ns.end());
    auto pct = [&](double q) {
      if (rtt_ns.empty()) return 0.0;
      const auto i = static_cast<std::size_t>(q * static_cast<double>(rtt_ns.size() - 1));
      return rtt_ns[i];
    };
    double sum = 0;
    for (double v : rtt_ns) sum += v;
    const double mean = rtt_ns.empty() ? 0 : sum / static_cast<double>(rtt_ns.size());
    std::printf("result rounds=%zu p50_ns=%.0f p99_ns=%.0f mean_ns=%.0f timeouts=%" PRIu64 "\n", rtt_ns.size(), pct(0.50),
                pct(0.99), mean, timeouts);
    std::fflush(stdout);
  }
};

void ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

std::size_t msg_size(const Options& o) { return std::max(kMinSize, static_cast<std::size_t>(o.num("size", 64))); }

// --- raw --------------------------------------------------------------------------------

/// IP_MULTICAST_LOOP off (--loopback 0): across namespaces nobody on the sender's host
/// listens, and each side would otherwise read back every datagram it sends.
void raw_loopback(const Options& o, const RawSocket& s) {
  const int loop = o.num("loopback", 1) != 0 ? 1 : 0;
  check_sys(setsockopt(s.fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop), "IP_MULTICAST_LOOP");
}

int raw_pong(const Options& o) {
  RawSocket s(o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"), true, 1 << 20);
  raw_loopback(o, s);
  s.set_recv_timeout(200ms);
  std::vector<std::uint8_t> buf(65536);
  ready();
  const std::uint64_t hard_stop = mono_ns() + static_cast<std::uint64_t>((o.num("seconds", 2) + 10) * 1e9);
  while (mono_ns() < hard_stop) {
    const ssize_t n = ::recv(s.fd, buf.data(), buf.size(), 0);
    if (n < static_cast<ssize_t>(kMinSize)) continue;
    if (buf[8] == kQuit) break;
    if (buf[8] != kPing) continue;  // our own pongs come back through multicast loopback
    buf[8] = kPong;
    (void)::sendto(s.fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<const sockaddr*>(&s.group),
                   sizeof s.group);
  }
  return 0;
}

int raw_ping(const Options& o) {
  RawSocket s(o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"), true, 1 << 20);
  raw_loopback(o, s);
  s.set_recv_timeout(100ms);
  const std::size_t size = msg_size(o);
  std::vector<std::uint8_t> out(size, 0x5a);
  std::vector<std::uint8_t> in(65536);
  Samples samples;
  const std::uint64_t begin = mono_ns();
  const std::uint64_t stop = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * 1e9);
  const std::uint64_t warm = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * kWarmupShare * 1e9);
  for (std::uint64_t seq = 0; mono_ns() < stop; ++seq) {
    put_seq(out.data(), seq);
    out[8] = kPing;
    const std::uint64_t t0 = mono_ns();
    (void)::sendto(s.fd, out.data(), out.size(), 0, reinterpret_cast<const sockaddr*>(&s.group), sizeof s.group);
    bool answered = false;
    for (;;) {
      const ssize_t n = ::recv(s.fd, in.data(), in.size(), 0);
      if (n < 0) break;  // timeout
      if (n >= static_cast<ssize_t>(kMinSize) && in[8] == kPong && get_seq(in.data()) == seq) {
        answered = true;
        break;
      }
    }
    const std::uint64_t t1 = mono_ns();
    if (!answered) {
      ++samples.timeouts;
    } else if (t0 >= warm) {
      samples.rtt_ns.push_back(static_cast<double>(t1 - t0));
    }
  }
  out[8] = kQuit;
  for (int i = 0; i < 3; ++i) {
    (void)::sendto(s.fd, out.data(), out.size(), 0, reinterpret_cast<const sockaddr*>(&s.group), sizeof s.group);
  }
  samples.print();
  return 0;
}

// --- libTMC -----------------------------------------------------------------------------

/// Implementations that answer (and ping) from on_message handlers on the loop thread.
bool uses_handlers(const std::string& impl) { return impl == "tmc-handler" || impl == "tmc-spin" || impl == "tmc-yield"; }

tmc::Channel open_tmc(const Options& o) {
  std::string impl = o.str("impl");
  tmc::OpenOptions options;
  if (impl == "tmc-spin" || impl == "tmc-spin-recv") options.idle_strategy = tmc::IdleStrategy::spin;
  if (impl == "tmc-yield") options.idle_strategy = tmc::IdleStrategy::yield;
  if (uses_handlers(impl) || impl == "tmc-spin-recv") impl = "tmc";
  if (impl == "tmc-queue") {
    impl = "tmc";
    options.inline_receive = false;
  }
  tmc::Manifest m = bench_manifest(impl, o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"),
                                   tmc::Duplexity::full);
  m.loopback = o.num("loopback", 1) != 0;
  return tmc::Channel::open(m, options);
}

int tmc_pong(const Options& o) {
  tmc::Channel c = open_tmc(o);
  const bool handler = uses_handlers(o.str("impl"));
  std::atomic<bool> quit{false};
  std::vector<std::uint8_t> reply(65536);
  if (handler) {
    c.on_message([&](tmc::Message&& m) {
      const auto p = m.payload();
      if (p.size() < kMinSize) return;
      if (p[8] == kQuit) quit.store(true);
      if (p[8] != kPing) return;
      std::memcpy(reply.data(), p.data(), p.size());
      reply[8] = kPong;
      (void)c.send(std::span<const std::uint8_t>(reply.data(), p.size()));
    });
  }
  ready();
  const std::uint64_t hard_stop = mono_ns() + static_cast<std::uint64_t>((o.num("seconds", 2) + 10) * 1e9);
  while (!quit.load() && mono_ns() < hard_stop) {
    if (handler) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    auto m = c.receive(200ms);
    if (!m) continue;
    const auto p = m->payload();
    if (p.size() < kMinSize) continue;
    if (p[8] == kQuit) break;
    if (p[8] != kPing) continue;
    std::memcpy(reply.data(), p.data(), p.size());
    reply[8] = kPong;
    (void)c.send(std::span<const std::uint8_t>(reply.data(), p.size()));
  }
  c.on_message(nullptr);
  c.close();
  return 0;
}

int tmc_ping_blocking(const Options& o, tmc::Channel& c) {
  const std::size_t size = msg_size(o);
  std::vector<std::uint8_t> out(size, 0x5a);
  Samples samples;
  const std::uint64_t begin = mono_ns();
  const std::uint64_t stop = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * 1e9);
  const std::uint64_t warm = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * kWarmupShare * 1e9);
  for (std::uint64_t seq = 0; mono_ns() < stop; ++seq) {
    put_seq(out.data(), seq);
    out[8] = kPing;
    const std::uint64_t t0 = mono_ns();
    (void)c.send(std::span<const std::uint8_t>(out.data(), out.size()));
    bool answered = false;
    for (;;) {
      auto m = c.receive(100ms);
      if (!m) break;
      const auto p = m->payload();
      if (p.size() >= kMinSize && p[8] == kPong && get_seq(p.data()) == seq) {
        answered = true;
        break;
      }
    }
    const std::uint64_t t1 = mono_ns();
    if (!answered) {
      ++samples.timeouts;
    } else if (t0 >= warm) {
      samples.rtt_ns.push_back(static_cast<double>(t1 - t0));
    }
  }
  out[8] = kQuit;
  for (int i = 0; i < 3; ++i) (void)c.send(std::span<const std::uint8_t>(out.data(), out.size()));
  c.close();
  samples.print();
  return 0;
}

/// The pinger lives in the handler too: each pong's arrival sends the next ping from the
/// loop thread. The main thread only waits. A watchdog resends when a round is lost.
int tmc_ping_handler(const Options& o, tmc::Channel& c) {
  const std::size_t size = msg_size(o);
  std::vector<std::uint8_t> out(size, 0x5a);
  Samples samples;
  samples.rtt_ns.reserve(1 << 20);
  std::mutex mu;  // guards everything below; the handler and the watchdog both take it
  std::uint64_t seq = 0;
  std::uint64_t t0 = 0;
  bool done = false;
  const std::uint64_t begin = mono_ns();
  const std::uint64_t stop = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * 1e9);
  const std::uint64_t warm = begin + static_cast<std::uint64_t>(o.num("seconds", 2) * kWarmupShare * 1e9);
  auto send_ping = [&] {
    put_seq(out.data(), seq);
    out[8] = kPing;
    t0 = mono_ns();
    (void)c.send(std::span<const std::uint8_t>(out.data(), out.size()));
  };
  c.on_message([&](tmc::Message&& m) {
    const auto p = m.payload();
    if (p.size() < kMinSize || p[8] != kPong) return;
    const std::uint64_t now = mono_ns();
    std::lock_guard<std::mutex> lk(mu);
    if (done || get_seq(p.data()) != seq) return;
    if (t0 >= warm) samples.rtt_ns.push_back(static_cast<double>(now - t0));
    ++seq;
    if (now >= stop) {
      done = true;
      return;
    }
    send_ping();
  });
  {
    std::lock_guard<std::mutex> lk(mu);
    send_ping();
  }
  for (;;) {
    std::this_thread::sleep_for(20ms);
    std::lock_guard<std::mutex> lk(mu);
    if (done) break;
    const std::uint64_t now = mono_ns();
    if (now > stop + 1'000'000'000) break;
    if (now - t0 > 100'000'000) {  // lost round: count it and move on
      ++samples.timeouts;
      ++seq;
      send_ping();
    }
  }
  c.on_message(nullptr);
  out[8] = kQuit;
  for (int i = 0; i < 3; ++i) (void)c.send(std::span<const std::uint8_t>(out.data(), out.size()));
  c.close();
  std::lock_guard<std::mutex> lk(mu);
  samples.print();
  return 0;
}

int tmc_ping(const Options& o) {
  tmc::Channel c = open_tmc(o);
  return uses_handlers(o.str("impl")) ? tmc_ping_handler(o, c) : tmc_ping_blocking(o, c);
}

int role_main(const Options& o) {
  const std::string role = o.str("role");
  const bool raw = o.str("impl", "raw") == "raw";
  if (role == "pong") return raw ? raw_pong(o) : tmc_pong(o);
  if (role == "ping") return raw ? raw_ping(o) : tmc_ping(o);
  throw std::runtime_error("unknown --role '" + role + "' (ping, pong)");
}

// --- orchestration ----------------------------------------------------------------------

int orchestrate(const Options& o) {
  const auto impls = o.list("impls", "raw,tmc,tmc-handler,tmc-ordered");
  const std::vector<std::string> netns = o.list("netns", "");
  auto ns = [&](std::size_t i) { return i < netns.size() ? netns[i] : std::string(); };
  struct Row {
    std::string impl;
    std::map<std::string, std::string> kv;
    bool ok = false;
  };
  const int repeat = std::max(1, static_cast<int>(o.num("repeat", 1)));
  std::vector<std::vector<Row>> runs(static_cast<std::size_t>(repeat));
  for (int rep = 0; rep < repeat; ++rep) {
    std::vector<Row>& rows = runs[static_cast<std::size_t>(rep)];
    int index = 0;
    for (const auto& impl : impls) {
      std::fprintf(stderr, "latency (%d/%d): %s ...\n", rep + 1, repeat, impl.c_str());
      Row row;
      row.impl = impl;
      std::vector<std::string> common = {"--impl", impl, "--size", o.str("size", "64"),
                                         "--group", "239.255.78." + std::to_string(1 + index),
                                         "--port", std::to_string(48300 + index), "--seconds", o.str("seconds", "2")};
      ++index;
      if (o.has("interface")) {
        common.push_back("--interface");
        common.push_back(o.str("interface"));
      }
      // Across namespaces no one on a sender's host listens: multicast loopback only makes
      // each side read back what it sent (unless --loopback 1 asks for it).
      common.push_back("--loopback");
      common.push_back(o.str("loopback", netns.empty() ? "1" : "0"));
      std::vector<std::string> a = {"--role", "pong"};
      a.insert(a.end(), common.begin(), common.end());
      Child pong(a, ns(1));
      auto r = pong.read_line(10s);
      if (r && *r == "ready") {
        std::vector<std::string> b = {"--role", "ping"};
        b.insert(b.end(), common.begin(), common.end());
        Child ping(b, ns(0));
        auto line = ping.read_line(std::chrono::milliseconds(static_cast<int>(o.num("seconds", 2) * 1000) + 15000));
        if (line) {
          row.kv = parse_kv(*line);
          row.ok = kv_num(row.kv, "rounds") > 0;
        }
        ping.wait(5s);
      }
      pong.wait(5s);
      if (!row.ok) std::fprintf(stderr, "  FAILED\n");
      rows.push_back(std::move(row));
    }
  }
  // Per implementation: the median of each column over the successful runs; rounds and
  // lost rounds are summed.
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  struct Summary {
    double p50 = 0, p99 = 0, mean = 0, rounds = 0, timeouts = 0;
    int ok = 0;
  };
  std::vector<Summary> sums(impls.size());
  for (std::size_t i = 0; i < impls.size(); ++i) {
    std::vector<double> p50, p99, mean;
    for (const auto& rows : runs) {
      const Row& r = rows[i];
      if (!r.ok) continue;
      ++sums[i].ok;
      p50.push_back(kv_num(r.kv, "p50_ns"));
      p99.push_back(kv_num(r.kv, "p99_ns"));
      mean.push_back(kv_num(r.kv, "mean_ns"));
      sums[i].rounds += kv_num(r.kv, "rounds");
      sums[i].timeouts += kv_num(r.kv, "timeouts");
    }
    sums[i].p50 = median(p50);
    sums[i].p99 = median(p99);
    sums[i].mean = median(mean);
  }
  double raw_p50 = 0;
  double raw_p99 = 0;
  for (std::size_t i = 0; i < impls.size(); ++i) {
    if (impls[i] == "raw" && sums[i].ok > 0) {
      raw_p50 = sums[i].p50;
      raw_p99 = sums[i].p99;
    }
  }
  if (repeat > 1) std::printf("Median over %d interleaved runs of %s s each:\n\n", repeat, o.str("seconds", "2").c_str());
  std::printf("| implementation | size | round trips | RTT p50 (us) | RTT p99 (us) | RTT mean (us) | lost rounds | p50 vs raw | p99 vs raw |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  int failures = 0;
  for (std::size_t i = 0; i < impls.size(); ++i) {
    const Summary& x = sums[i];
    failures += repeat - x.ok;
    if (x.ok == 0) {
      std::printf("| %s | %s B | failed | | | | | | |\n", impls[i].c_str(), o.str("size", "64").c_str());
      continue;
    }
    std::printf("| %s | %s B | %.0f | %.1f | %.1f | %.1f | %.0f | %.2f | %.2f |\n", impls[i].c_str(), o.str("size", "64").c_str(),
                x.rounds, x.p50 / 1e3, x.p99 / 1e3, x.mean / 1e3, x.timeouts, raw_p50 > 0 ? x.p50 / raw_p50 : 0.0,
                raw_p99 > 0 ? x.p99 / raw_p99 : 0.0);
  }
  if (repeat > 1 && raw_p50 > 0) {
    // Each run against the raw run of the same repetition (closest in time, so most alike
    // in load).
    std::printf("\np50 vs raw, run by run:\n\n| implementation |");
    for (int r = 0; r < repeat; ++r) std::printf(" run %d |", r + 1);
    std::printf(" median |\n|---|");
    for (int r = 0; r <= repeat; ++r) std::printf("---:|");
    std::printf("\n");
    for (std::size_t i = 0; i < impls.size(); ++i) {
      std::printf("| %s |", impls[i].c_str());
      std::vector<double> ratios;
      for (const auto& rows : runs) {
        double raw = 0;
        for (const Row& r : rows) {
          if (r.impl == "raw" && r.ok) raw = kv_num(r.kv, "p50_ns");
        }
        const Row& r = rows[i];
        if (!r.ok || raw <= 0) {
          std::printf(" - |");
          continue;
        }
        ratios.push_back(kv_num(r.kv, "p50_ns") / raw);
        std::printf(" %.2f |", ratios.back());
      }
      std::printf(" %.2f |\n", median(ratios));
    }
  }
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o(argc, argv);
    if (o.has("help")) {
      std::printf("usage: %s [--seconds 2] [--repeat 1] [--size 64] [--impls raw,tmc,tmc-handler,tmc-ordered]\n"
                  "          [--interface IF]\n"
                  "          [--netns PINGER_NS,PONGER_NS]\n", argv[0]);
      return 0;
    }
    if (o.has("role")) return role_main(o);
    return orchestrate(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc-e2e-latency: %s\n", e.what());
    return 2;
  }
}
