// End-to-end throughput: one sender process, one or two receiver processes, one multicast
// group, for raw UDP multicast (sendmmsg/recvmmsg, the baseline), a best-effort libTMC
// channel, and a libTMC channel with point-to-point ordering + error checking, all in the
// same run. Each sender sends as fast as it can for a fixed time; each receiver counts what
// it got. The headline number is the rate delivered at the receivers (messages per second
// over the receiver's active window), reported as a ratio to raw UDP measured with the same
// size and fan-out in the same run; each configuration runs --repeat times, interleaved,
// and the median is reported. Loss = 1 - received / sent. Also reported: CPU time (user +
// system, from wait4) per message of the sender and of each receiver — less sensitive to
// scheduling than wall-clock rates, but blind to softirq work done by ksoftirqd.
//
//   tmc-e2e-throughput [--seconds 0.7] [--repeat 3] [--sizes 64,1024] [--receivers 1,2]
//                      [--impls raw,tmc,tmc-ordered] [--interface IF]
//                      [--netns SENDER_NS,RECV1_NS,RECV2_NS] [--markdown]
//   (--impls also takes tmc-fifo, tmc-checked, and tmc-auth / tmc-encrypt for `security`)
//
// Roles (what the orchestrator runs in each child process):
//   --role recv --impl I --size N --group G --port P --seconds S [--interface IF]
//       prints "ready", then "result received=... bytes=... window_ns=... out_of_order=..."
//   --role send --impl I --size N --group G --port P --seconds S [--interface IF]
//       prints "result sent=... elapsed_ns=..."
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cinttypes>
#include <thread>

#include "e2e_common.hpp"

namespace {

using namespace tmc::bench;
using namespace std::chrono_literals;

constexpr int kBatch = 32;
constexpr int kSocketBufferBytes = 4 * 1024 * 1024;
// A receiver stops this long after the last datagram (the sender has finished by then).
constexpr std::uint64_t kIdleStopNs = 400'000'000;

struct RecvTally {
  std::uint64_t received = 0;
  std::uint64_t bytes = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t max_seq = 0;
  bool any = false;
  std::uint64_t first_ns = 0;
  std::uint64_t last_ns = 0;

  void on(const std::uint8_t* p, std::size_t n, std::uint64_t now_ns) noexcept {
    if (n < 8) return;
    const std::uint64_t s = get_seq(p);
    if (!any) {
      any = true;
      first_ns = now_ns;
    } else if (s <= max_seq) {
      ++out_of_order;
    }
    max_seq = std::max(max_seq, s);
    ++received;
    bytes += n;
    last_ns = now_ns;
  }
  void print() const {
    std::printf("result received=%" PRIu64 " bytes=%" PRIu64 " window_ns=%" PRIu64 " out_of_order=%" PRIu64
                " max_seq=%" PRIu64 "\n",
                received, bytes, any ? last_ns - first_ns : 0, out_of_order, max_seq);
    std::fflush(stdout);
  }
};

void ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

int raw_recv(const Options& o) {
  RawSocket s(o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"), true, kSocketBufferBytes);
  s.set_recv_timeout(50ms);
  const std::size_t cap = 65536;
  std::vector<std::uint8_t> bufs(kBatch * cap);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (int i = 0; i < kBatch; ++i) {
    iov[static_cast<std::size_t>(i)] = {bufs.data() + static_cast<std::size_t>(i) * cap, cap};
    msgs[static_cast<std::size_t>(i)].msg_hdr.msg_iov = &iov[static_cast<std::size_t>(i)];
    msgs[static_cast<std::size_t>(i)].msg_hdr.msg_iovlen = 1;
  }
  ready();
  RecvTally t;
  const std::uint64_t hard_stop_ns = mono_ns() + static_cast<std::uint64_t>((o.num("seconds", 0.7) + 8) * 1e9);
  for (;;) {
    const int n = ::recvmmsg(s.fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
    const std::uint64_t now = mono_ns();
    for (int i = 0; i < n; ++i) {
      t.on(bufs.data() + static_cast<std::size_t>(i) * cap, msgs[static_cast<std::size_t>(i)].msg_len, now);
    }
    if (t.any && now - t.last_ns > kIdleStopNs) break;
    if (now > hard_stop_ns) break;
  }
  t.print();
  return 0;
}

int raw_send(const Options& o) {
  RawSocket s(o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"), false, kSocketBufferBytes);
  const auto size = static_cast<std::size_t>(o.num("size", 64));
  std::vector<std::uint8_t> bufs(kBatch * size, 0x5a);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (int i = 0; i < kBatch; ++i) {
    const auto u = static_cast<std::size_t>(i);
    iov[u] = {bufs.data() + u * size, size};
    msgs[u].msg_hdr.msg_iov = &iov[u];
    msgs[u].msg_hdr.msg_iovlen = 1;
    msgs[u].msg_hdr.msg_name = &s.group;
    msgs[u].msg_hdr.msg_namelen = sizeof s.group;
  }
  const std::uint64_t start = mono_ns();
  const std::uint64_t stop = start + static_cast<std::uint64_t>(o.num("seconds", 0.7) * 1e9);
  std::uint64_t seq = 0;
  std::uint64_t errors = 0;
  while (mono_ns() < stop) {
    for (int i = 0; i < kBatch; ++i) put_seq(bufs.data() + static_cast<std::size_t>(i) * size, seq + static_cast<std::uint64_t>(i));
    int done = 0;
    while (done < kBatch) {
      const int n = ::sendmmsg(s.fd, msgs.data() + done, static_cast<unsigned>(kBatch - done), 0);
      if (n < 0) {
        // ENOBUFS and friends: the kernel dropped the batch's rest; that is loss, as it would
        // be for any application, and the receivers will count it.
        ++errors;
        break;
      }
      done += n;
    }
    seq += kBatch;
  }
  const std::uint64_t elapsed = mono_ns() - start;
  std::printf("result sent=%" PRIu64 " elapsed_ns=%" PRIu64 " errors=%" PRIu64 "\n", seq, elapsed, errors);
  std::fflush(stdout);
  return 0;
}

int tmc_recv(const Options& o) {
  const std::string impl = o.str("impl");
  auto manifest = bench_manifest(impl, o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"),
                                 tmc::Duplexity::receive_only);
  tmc::Channel c = tmc::Channel::open(manifest);
  // The handler runs on the loop thread; the tally is read only after the channel is closed
  // (close() waits for the loop), except for the two progress words below.
  RecvTally t;
  std::atomic<std::uint64_t> progress_received{0};
  std::atomic<std::uint64_t> progress_last_ns{0};
  c.on_message([&](tmc::Message&& m) {
    const auto p = m.payload();
    const std::uint64_t now = mono_ns();
    t.on(p.data(), p.size(), now);
    progress_received.store(t.received, std::memory_order_relaxed);
    progress_last_ns.store(now, std::memory_order_relaxed);
  });
  ready();
  const std::uint64_t hard_stop_ns = mono_ns() + static_cast<std::uint64_t>((o.num("seconds", 0.7) + 8) * 1e9);
  for (;;) {
    std::this_thread::sleep_for(20ms);
    const std::uint64_t now = mono_ns();
    const std::uint64_t last = progress_last_ns.load(std::memory_order_relaxed);
    if (progress_received.load(std::memory_order_relaxed) > 0 && now > last && now - last > kIdleStopNs) break;
    if (now > hard_stop_ns) break;
  }
  c.on_message(nullptr);
  const tmc::ChannelStats st = c.stats();
  c.close();
  t.print();
  std::fprintf(stderr, "  [%s receiver] datagrams_received=%" PRIu64 " delivered=%" PRIu64 " drops.stale=%" PRIu64
               " drops.checksum=%" PRIu64 " receive_errors=%" PRIu64 "\n",
               impl.c_str(), st.datagrams_received, st.messages_delivered,
               st.drop_count(tmc::DropReason::stale), st.drop_count(tmc::DropReason::checksum), st.receive_errors);
  return 0;
}

int tmc_send(const Options& o) {
  const std::string impl = o.str("impl");
  auto manifest = bench_manifest(impl, o.str("group"), static_cast<int>(o.num("port", 0)), o.str("interface"),
                                 tmc::Duplexity::send_only);
  tmc::Channel c = tmc::Channel::open(manifest);
  const auto size = static_cast<std::size_t>(o.num("size", 64));
  std::vector<std::uint8_t> buf(size, 0x5a);
  const std::uint64_t start = mono_ns();
  const std::uint64_t stop = start + static_cast<std::uint64_t>(o.num("seconds", 0.7) * 1e9);
  std::uint64_t seq = 0;
  std::uint64_t errors = 0;
  while (mono_ns() < stop) {
    // Check the clock once per batch, as the raw sender does.
    for (int i = 0; i < kBatch; ++i) {
      put_seq(buf.data(), seq++);
      if (!c.send(std::span<const std::uint8_t>(buf.data(), buf.size())).is_ok()) ++errors;
    }
  }
  c.close();  // flushes: every accepted message is handed to the kernel
  const std::uint64_t elapsed = mono_ns() - start;
  const tmc::ChannelStats st = c.stats();
  std::printf("result sent=%" PRIu64 " elapsed_ns=%" PRIu64 " errors=%" PRIu64 "\n", seq, elapsed, errors);
  std::fflush(stdout);
  std::fprintf(stderr, "  [%s sender] messages_sent=%" PRIu64 " datagrams_sent=%" PRIu64 " send_errors=%" PRIu64 "\n",
               impl.c_str(), st.messages_sent, st.datagrams_sent, st.send_errors);
  return 0;
}

int role_main(const Options& o) {
  const std::string role = o.str("role");
  const std::string impl = o.str("impl", "raw");
  if (role == "recv") return impl == "raw" ? raw_recv(o) : tmc_recv(o);
  if (role == "send") return impl == "raw" ? raw_send(o) : tmc_send(o);
  throw std::runtime_error("unknown --role '" + role + "' (send, recv)");
}

// --- orchestration ----------------------------------------------------------------------

struct RunResult {
  std::string impl;
  int size = 0;
  int receivers = 0;
  bool ok = false;
  std::string error;
  double sent = 0;
  double send_rate = 0;              ///< messages/s at the sender
  double delivered_rate = 0;         ///< messages/s per receiver (mean over receivers)
  double delivered_mbps = 0;         ///< payload MB/s per receiver (mean)
  double loss = 0;                   ///< mean over receivers
  double out_of_order = 0;           ///< summed over receivers
  double sender_cpu_ns_per_msg = 0;    ///< sender's CPU time (user + system) per message sent
  double receiver_cpu_ns_per_msg = 0;  ///< each receiver's CPU time per message it received (mean)
};

RunResult run_one(const std::string& impl, int size, int receivers, int index, const Options& o) {
  RunResult r;
  r.impl = impl;
  r.size = size;
  r.receivers = receivers;
  const std::string group = "239.255.77." + std::to_string(1 + index % 250);
  const std::string port = std::to_string(48100 + index);
  const std::string seconds = o.str("seconds", "0.7");
  const std::vector<std::string> netns = o.list("netns", "");
  auto ns = [&](std::size_t i) { return i < netns.size() ? netns[i] : std::string(); };
  std::vector<std::string> common = {"--impl", impl, "--size", std::to_string(size), "--group", group,
                                     "--port", port, "--seconds", seconds};
  if (o.has("interface")) {
    common.push_back("--interface");
    common.push_back(o.str("interface"));
  }
  std::vector<std::unique_ptr<Child>> rx;
  for (int i = 0; i < receivers; ++i) {
    std::vector<std::string> a = {"--role", "recv"};
    a.insert(a.end(), common.begin(), common.end());
    rx.push_back(std::make_unique<Child>(a, ns(static_cast<std::size_t>(1 + i))));
  }
  for (auto& c : rx) {
    auto line = c->read_line(10s);
    if (!line || *line != "ready") {
      r.error = "a receiver did not start";
      return r;
    }
  }
  std::vector<std::string> a = {"--role", "send"};
  a.insert(a.end(), common.begin(), common.end());
  Child tx(a, ns(0));
  const auto wait_ms = std::chrono::milliseconds(static_cast<int>(o.num("seconds", 0.7) * 1000) + 15000);
  auto sl = tx.read_line(wait_ms);
  if (!sl) {
    r.error = "the sender reported nothing";
    return r;
  }
  auto skv = parse_kv(*sl);
  r.sent = kv_num(skv, "sent");
  const double send_s = kv_num(skv, "elapsed_ns") / 1e9;
  r.send_rate = send_s > 0 ? r.sent / send_s : 0;
  tx.wait(5s);
  r.sender_cpu_ns_per_msg = r.sent > 0 ? tx.cpu_ns() / r.sent : 0;
  for (auto& c : rx) {
    auto line = c->read_line(wait_ms);
    if (!line) {
      r.error = "a receiver reported nothing";
      return r;
    }
    auto kv = parse_kv(*line);
    const double got = kv_num(kv, "received");
    const double window_s = kv_num(kv, "window_ns") / 1e9;
    // A receiver that got everything in one scheduling quantum would report a tiny window;
    // the sender's time is the floor (nothing can be delivered faster than it was sent).
    const double denom = std::max(window_s, send_s * 0.5);
    r.delivered_rate += denom > 0 ? got / denom : 0;
    r.delivered_mbps += denom > 0 ? kv_num(kv, "bytes") / denom / 1e6 : 0;
    r.loss += r.sent > 0 ? std::max(0.0, 1.0 - got / r.sent) : 0;
    r.out_of_order += kv_num(kv, "out_of_order");
    c->wait(5s);
    r.receiver_cpu_ns_per_msg += got > 0 ? c->cpu_ns() / got : 0;
  }
  r.receiver_cpu_ns_per_msg /= receivers;
  r.delivered_rate /= receivers;
  r.delivered_mbps /= receivers;
  r.loss /= receivers;
  r.ok = true;
  return r;
}

int orchestrate(const Options& o) {
  const auto impls = o.list("impls", "raw,tmc,tmc-ordered");
  std::vector<int> sizes;
  for (const auto& s : o.list("sizes", "64,1024")) sizes.push_back(std::stoi(s));
  std::vector<int> fanouts;
  for (const auto& s : o.list("receivers", "1,2")) fanouts.push_back(std::stoi(s));

  // Each configuration runs --repeat times, the repetitions interleaved (all
  // configurations once, then all again) so that a burst of load from elsewhere on the
  // machine hits every implementation alike; the repetition with the median delivered rate
  // is reported (the lower median for an even count).
  const int repeat = std::max(1, static_cast<int>(o.num("repeat", 3)));
  std::vector<std::vector<RunResult>> runs;
  int index = 0;
  for (int rep = 0; rep < repeat; ++rep) {
    std::size_t slot = 0;
    for (int size : sizes) {
      for (int n : fanouts) {
        for (const auto& impl : impls) {
          std::fprintf(stderr, "throughput (%d/%d): %s, %d B, 1 -> %d ...\n", rep + 1, repeat, impl.c_str(), size, n);
          RunResult r = run_one(impl, size, n, index++, o);
          if (!r.ok) std::fprintf(stderr, "  FAILED: %s\n", r.error.c_str());
          if (rep == 0) runs.emplace_back();
          runs[slot].push_back(r);
          ++slot;
        }
      }
    }
  }
  std::vector<RunResult> results;
  for (auto& slot : runs) {
    std::vector<RunResult> ok;
    for (const auto& r : slot) {
      if (r.ok) ok.push_back(r);
    }
    if (ok.empty()) {
      results.push_back(slot.front());
      continue;
    }
    std::sort(ok.begin(), ok.end(), [](const RunResult& a, const RunResult& b) { return a.delivered_rate < b.delivered_rate; });
    results.push_back(ok[(ok.size() - 1) / 2]);
  }
  auto raw_of = [&](const RunResult& r) -> const RunResult* {
    for (const auto& x : results) {
      if (x.impl == "raw" && x.size == r.size && x.receivers == r.receivers && x.ok) return &x;
    }
    return nullptr;
  };
  std::printf("| implementation | size | receivers | sent msg/s | delivered msg/s (per receiver) | delivered MB/s | loss | "
              "out of order | delivered vs raw | sender CPU ns/msg | receiver CPU ns/msg | CPU vs raw (send, recv) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  int failures = 0;
  for (const auto& r : results) {
    if (!r.ok) {
      ++failures;
      std::printf("| %s | %d B | %d | failed: %s | | | | | | | | |\n", r.impl.c_str(), r.size, r.receivers, r.error.c_str());
      continue;
    }
    const RunResult* raw = raw_of(r);
    char ratio[32] = "n/a";
    char cratio[48] = "n/a";
    if (raw != nullptr && raw->delivered_rate > 0) std::snprintf(ratio, sizeof ratio, "%.2f", r.delivered_rate / raw->delivered_rate);
    if (raw != nullptr && raw->sender_cpu_ns_per_msg > 0 && raw->receiver_cpu_ns_per_msg > 0) {
      std::snprintf(cratio, sizeof cratio, "%.2f, %.2f", r.sender_cpu_ns_per_msg / raw->sender_cpu_ns_per_msg,
                    r.receiver_cpu_ns_per_msg / raw->receiver_cpu_ns_per_msg);
    }
    std::printf("| %s | %d B | %d | %.0f | %.0f | %.1f | %.1f%% | %.0f | %s | %.0f | %.0f | %s |\n", r.impl.c_str(), r.size,
                r.receivers, r.send_rate, r.delivered_rate, r.delivered_mbps, r.loss * 100, r.out_of_order, ratio,
                r.sender_cpu_ns_per_msg, r.receiver_cpu_ns_per_msg, cratio);
  }
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o(argc, argv);
    if (o.has("help")) {
      std::printf("usage: %s [--seconds 0.7] [--repeat 3] [--sizes 64,1024] [--receivers 1,2] [--impls raw,tmc,tmc-ordered]\n"
                  "          [--interface IF] [--netns SENDER_NS,RECV1_NS,RECV2_NS]\n", argv[0]);
      return 0;
    }
    if (o.has("role")) return role_main(o);
    return orchestrate(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc-e2e-throughput: %s\n", e.what());
    return 2;
  }
}
