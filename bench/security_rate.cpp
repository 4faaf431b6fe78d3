// What `security` costs: message rate and one-way latency of `none`, `authenticate` and
// `encrypt`, at 64 B and 1 KiB, best-effort and reliable, in one run. One process, a sender
// and a receiver channel on one multicast group on loopback (both on the default runtime),
// so the numbers compare the pipelines, not the network.
//
//   tmc-security-rate [--count 100000] [--window 64] [--pings 5000] [--repeat 3] [--port 47901]
//
// Rate: the sender sends a window, the receiver takes it, repeated (as tmc-cpp-rate);
// messages received per second of the timed part, and the process's CPU time per message
// over the same part (both ends and the loop thread), which a loaded machine inflates far
// less than wall time. Latency: one message at a time, the send time carried in the
// payload, taken on receive (same clock, same process). Every configuration runs --repeat
// times, the rounds interleaved, and the medians are printed as a Markdown table with each
// configuration's rate and CPU cost relative to `none` of the same size and delivery.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <time.h>
#include <unistd.h>
#include <vector>

#include <tmc/channel.hpp>

namespace {

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

struct Row {
  std::string security;
  bool reliable = false;
  long size = 0;
  double rate = 0;
  double cpu_us = 0;  ///< process CPU time per message received
  double p50_us = 0;
  double p99_us = 0;
  long lost = 0;
};

tmc::Value manifest(const char* name, long port, const std::string& security, bool reliable,
                    const std::string& key_file) {
  tmc::Value::Map m{{"id", "security-rate-" + std::to_string(port)},
                    {"name", name},
                    {"port", static_cast<std::int64_t>(port)},
                    {"members", tmc::Value::List{"tx", "rx"}},
                    {"security", security}};
  if (security != "none") m.emplace_back("key file", key_file);
  if (reliable) m.emplace_back("reliability", true);
  return tmc::Value(std::move(m));
}

double cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

Row run(const std::string& security, bool reliable, long size, long count, long window, long pings, long port,
        const std::string& key_file) {
  Row row{security, reliable, size};
  tmc::Channel rx = tmc::Channel::open(manifest("rx", port, security, reliable, key_file));
  tmc::Channel tx = tmc::Channel::open(manifest("tx", port, security, reliable, key_file));
  std::vector<std::uint8_t> payload(static_cast<std::size_t>(size), 0x5a);
  long sent = 0;
  long received = 0;
  auto round = [&](long n) {
    for (long i = 0; i < n; ++i) {
      if (tx.send(std::span<const std::uint8_t>(payload)).is_ok()) ++sent;
    }
    for (long i = 0; i < n; ++i) {
      if (!rx.receive(std::chrono::milliseconds(200))) break;
      ++received;
    }
  };
  // Let membership settle (reliable channels wait for the receiver's first heartbeat).
  for (long done = 0; done < count / 10; done += window) round(window);
  sent = received = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_s();
  for (long done = 0; done < count; done += window) round(window);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  row.rate = static_cast<double>(received) / s;
  row.cpu_us = received > 0 ? (cpu_s() - c0) * 1e6 / static_cast<double>(received) : 0;
  row.lost = sent - received;

  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(pings));
  for (long i = 0; i < pings; ++i) {
    const std::uint64_t t = now_ns();
    std::memcpy(payload.data(), &t, sizeof t);
    if (!tx.send(std::span<const std::uint8_t>(payload)).is_ok()) continue;
    auto m = rx.receive(std::chrono::milliseconds(200));
    if (!m || m->payload().size() < sizeof t) continue;
    std::uint64_t t_sent = 0;
    std::memcpy(&t_sent, m->payload().data(), sizeof t_sent);
    lat.push_back(static_cast<double>(now_ns() - t_sent) / 1000.0);
  }
  std::sort(lat.begin(), lat.end());
  if (!lat.empty()) {
    row.p50_us = lat[lat.size() / 2];
    row.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  }
  tx.close();
  rx.close();
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  const long count = arg(argc, argv, "--count", 100000);
  const long window = arg(argc, argv, "--window", 64);
  const long pings = arg(argc, argv, "--pings", 5000);
  long port = arg(argc, argv, "--port", 47901);
  // A throwaway group key for this run.
  char dir[] = "/tmp/tmc-security-rate-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return 1;
  const std::string key_file = std::string(dir) + "/bench.keys";
  {
    std::ofstream(key_file) << "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
  }
  const long repeat = std::max(1L, arg(argc, argv, "--repeat", 3));
  std::vector<Row> rows;  // medians, one per configuration
  std::vector<std::vector<Row>> runs;
  int rc = 0;
  try {
    for (long r = 0; r < repeat; ++r) {
      std::size_t i = 0;
      for (bool reliable : {false, true}) {
        for (long size : {64L, 1024L}) {
          for (const char* security : {"none", "authenticate", "encrypt"}) {
            if (runs.size() <= i) runs.emplace_back();
            runs[i].push_back(run(security, reliable, size, count, window, pings, port++, key_file));
            const Row& x = runs[i].back();
            std::fprintf(stderr, "round %ld: %s %s %ld B: %.0f msg/s, %.2f us CPU/msg\n", r + 1,
                         x.reliable ? "reliable" : "best-effort", x.security.c_str(), x.size, x.rate, x.cpu_us);
            ++i;
          }
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "security_rate: %s\n", e.what());
    rc = 1;
  }
  for (const auto& rs : runs) {
    Row m = rs.front();
    std::vector<double> rate, cpu, p50, p99;
    long lost = 0;
    for (const Row& x : rs) {
      rate.push_back(x.rate);
      cpu.push_back(x.cpu_us);
      p50.push_back(x.p50_us);
      p99.push_back(x.p99_us);
      lost += x.lost;
    }
    m.rate = median(rate);
    m.cpu_us = median(cpu);
    m.p50_us = median(p50);
    m.p99_us = median(p99);
    m.lost = lost;
    rows.push_back(m);
  }
  std::remove(key_file.c_str());
  ::rmdir(dir);
  std::printf("| delivery | size | security | msg/s | vs none | CPU us/msg | none's CPU / this | p50 us | p99 us | lost |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const Row* base = nullptr;
    for (const Row& b : rows) {
      if (b.reliable == r.reliable && b.size == r.size && b.security == "none") base = &b;
    }
    const double rate_share = base != nullptr && base->rate > 0 ? 100.0 * r.rate / base->rate : 0.0;
    const double cpu_share = base != nullptr && r.cpu_us > 0 ? 100.0 * base->cpu_us / r.cpu_us : 0.0;
    std::printf("| %s | %ld B | %s | %.0f | %.0f%% | %.2f | %.0f%% | %.1f | %.1f | %ld |\n",
                r.reliable ? "reliable" : "best-effort", r.size, r.security.c_str(), r.rate, rate_share, r.cpu_us,
                cpu_share, r.p50_us, r.p99_us, r.lost);
  }
  return rc;
}
