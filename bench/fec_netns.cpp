// tmc-fec-netns: one member of the FEC benchmark across network namespaces
// (scripts/bench-fec.sh builds the network, injects the loss and runs both channels).
//
//   tmc-fec-netns --role send --manifest FILE --name NAME --count N --rate R --size BYTES
//                 [--members N] [--repo DIR --trust FILE --state FILE]
//   tmc-fec-netns --role recv --manifest FILE --name NAME --count N [--idle S] [--ready FILE]
//                 [--repo DIR --trust FILE --state FILE]
//
// The manifest decides what the channel holds (reliability alone, or reliability and
// fec.xor from the module repository given with --repo/--trust/--state). Every message
// carries its sequence number and the sender's CLOCK_MONOTONIC time of send(); the members
// run on one machine, so a receiver's delivery time minus it is the delivery latency,
// repairs included. The sender paces N messages at R per second, then waits (up to 30 s)
// until every message's delivery outcome is settled (all acknowledged). A receiver stops
// after N deliveries or --idle seconds without one.
//
// Each prints one line, "result key=value ...": the sender its retransmissions, datagrams
// and bytes on the wire, payload bytes and FEC parity datagrams; a receiver its deliveries,
// latency percentiles, delivery rate and FEC rebuilds.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>
#include <tmc/manifest.hpp>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string role, manifest, name, ready, repo, trust, state;
  long count = 0;
  double rate = 2000;
  std::size_t size = 1024;
  long members = 2;
  double idle_s = 3;
};

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

void put_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

double percentile(std::vector<std::uint64_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

tmc::Channel open(const Args& a, tmc::Duplexity duplexity) {
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(a.manifest, m, diag)) throw std::runtime_error(diag.to_string());
  m.name = a.name;
  m.duplexity = duplexity;
  tmc::OpenOptions o;
  o.module_repository = {.dir = a.repo, .trust_file = a.trust, .state_file = a.state};
  return tmc::Channel::open(m, o);
}

int send(const Args& a) {
  tmc::Channel c = open(a, tmc::Duplexity::send_only);
  if (tmc::Status st = c.wait_for_members(static_cast<std::size_t>(a.members), 20s); !st) {
    std::fprintf(stderr, "%s: %s\n", a.name.c_str(), st.to_string().c_str());
    return 1;
  }
  std::vector<std::uint8_t> msg(a.size, 0x5a);
  std::vector<std::future<tmc::DeliveryOutcome>> outcomes;
  outcomes.reserve(static_cast<std::size_t>(a.count));
  const auto start = Clock::now();
  for (long i = 0; i < a.count; ++i) {
    put_u64(msg.data(), static_cast<std::uint64_t>(i));
    put_u64(msg.data() + 8, now_ns());
    std::future<tmc::DeliveryOutcome> f;
    if (!c.send(msg, tmc::MessageManifest{}, &f)) {
      std::fprintf(stderr, "%s: send %ld failed\n", a.name.c_str(), i);
      return 1;
    }
    outcomes.push_back(std::move(f));
    std::this_thread::sleep_until(start + std::chrono::duration<double>((static_cast<double>(i) + 1) / a.rate));
  }
  const double send_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::uint64_t met = 0;
  const auto give_up = Clock::now() + 30s;
  for (auto& f : outcomes) {
    if (f.wait_until(give_up) == std::future_status::ready && f.get().state == tmc::DeliveryOutcome::State::met) ++met;
  }
  const double settled_s = std::chrono::duration<double>(Clock::now() - start).count();
  const tmc::ChannelStats st = c.stats();
  c.close();
  std::printf("result role=send name=%s sent=%" PRIu64 " met=%" PRIu64 " send_s=%.3f settled_s=%.3f retransmits=%" PRIu64
              " datagrams=%" PRIu64 " wire_bytes=%" PRIu64 " payload_bytes=%" PRIu64 " parity=%" PRIu64 "\n",
              a.name.c_str(), st.messages_sent, met, send_s, settled_s, st.counter("reliability.retransmits"),
              st.datagrams_sent, st.datagram_bytes_sent, st.bytes_sent, st.counter("fec.parity_sent"));
  return met == static_cast<std::uint64_t>(a.count) ? 0 : 1;
}

int recv(const Args& a) {
  tmc::Channel c = open(a, tmc::Duplexity::receive_only);
  std::mutex mu;
  std::vector<std::uint64_t> latency_ns;
  latency_ns.reserve(static_cast<std::size_t>(a.count));
  std::vector<bool> seen(static_cast<std::size_t>(a.count), false);
  std::atomic<std::uint64_t> first_ns{0}, last_ns{0}, delivered{0}, duplicates{0};
  c.on_message([&](tmc::Message&& m) {
    const std::uint64_t t = now_ns();
    const auto p = m.payload();
    if (p.size() < 16) return;
    const std::uint64_t seq = get_u64(p.data());
    std::lock_guard<std::mutex> lk(mu);
    if (seq >= seen.size() || seen[seq]) {
      duplicates.fetch_add(1);
      return;
    }
    seen[seq] = true;
    latency_ns.push_back(t - get_u64(p.data() + 8));
    if (first_ns.load() == 0) first_ns.store(t);
    last_ns.store(t);
    delivered.fetch_add(1);
  });
  if (!a.ready.empty()) std::ofstream(a.ready) << "ready\n";
  const auto idle = static_cast<std::uint64_t>(a.idle_s * 1e9);
  const std::uint64_t begin = now_ns();
  while (delivered.load() < static_cast<std::uint64_t>(a.count)) {
    std::this_thread::sleep_for(10ms);
    const std::uint64_t since = last_ns.load() != 0 ? last_ns.load() : begin;
    if (now_ns() - since > idle + (last_ns.load() == 0 ? 20'000'000'000ull : 0)) break;
  }
  c.on_message(nullptr);
  const tmc::ChannelStats st = c.stats();
  c.close();
  std::lock_guard<std::mutex> lk(mu);
  const double span_s = static_cast<double>(last_ns.load() - first_ns.load()) / 1e9;
  const double rate = span_s > 0 ? static_cast<double>(delivered.load() - 1) / span_s : 0;
  const double p50 = percentile(latency_ns, 0.50);
  const double p99 = percentile(latency_ns, 0.99);
  const double pmax = percentile(latency_ns, 1.0);
  std::printf("result role=recv name=%s delivered=%" PRIu64 " duplicates=%" PRIu64
              " p50_us=%.1f p99_us=%.1f max_us=%.1f rate=%.0f rebuilt=%" PRIu64 " nacks_sent=%" PRIu64 "\n",
              a.name.c_str(), delivered.load(), duplicates.load(), p50, p99, pmax, rate, st.counter("fec.rebuilt"),
              st.counter("reliability.nacks_sent"));
  return delivered.load() == static_cast<std::uint64_t>(a.count) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--role") a.role = v;
    else if (k == "--manifest") a.manifest = v;
    else if (k == "--name") a.name = v;
    else if (k == "--count") a.count = std::atol(v);
    else if (k == "--rate") a.rate = std::atof(v);
    else if (k == "--size") a.size = static_cast<std::size_t>(std::atol(v));
    else if (k == "--members") a.members = std::atol(v);
    else if (k == "--idle") a.idle_s = std::atof(v);
    else if (k == "--ready") a.ready = v;
    else if (k == "--repo") a.repo = v;
    else if (k == "--trust") a.trust = v;
    else if (k == "--state") a.state = v;
    else {
      std::fprintf(stderr, "tmc-fec-netns: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if ((a.role != "send" && a.role != "recv") || a.manifest.empty() || a.name.empty() || a.count <= 0 ||
      a.size < 16 || a.rate <= 0) {
    std::fprintf(stderr, "usage: tmc-fec-netns --role send|recv --manifest FILE --name NAME --count N "
                         "[--rate R] [--size 16..] [--members N] [--idle S] [--ready FILE] "
                         "[--repo DIR --trust FILE --state FILE]\n");
    return 2;
  }
  try {
    return a.role == "send" ? send(a) : recv(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc-fec-netns %s: %s\n", a.name.c_str(), e.what());
    return 1;
  }
}
