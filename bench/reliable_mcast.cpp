// Reliable multicast benchmark: one sender, two receivers, each its own process
// in its own network namespace (scripts/bench-reliable.sh builds the network, injects the
// loss with nftables, runs every combination and calls --role report for the table).
//
// Transports compared in one run:
//   raw        UDP multicast, one message per datagram, sendmmsg/recvmmsg (the baseline)
//   zmq-epgm   ZeroMQ PUB/SUB over epgm:// (OpenPGM in UDP: NAK-based repair, rate-limited)
//   zmq-tcp    ZeroMQ PUB/SUB over tcp:// (one TCP connection per subscriber)
//   tmc        a libTMC channel from --manifest (YAML); the harness overrides 'group', 'port',
//              'interface' and 'name' per run, and with --security authenticate|encrypt the
//              manifest's `security` (under a throwaway group key every process of the run reads)
//
// Every message carries a u64 sequence number first (big-endian). The sender first sends a
// short warm-up (sequence numbers with the top bit set, which receivers do not count) so
// that slow joiners (ZeroMQ subscriptions, PGM receivers locking onto a new source, libTMC
// membership) are settled before the measured stream starts; then it sends as fast as the
// transport lets it for --seconds, then a few end markers (top two bits set), and then it
// stays alive, so that transports which repair from the sender (PGM, libTMC reliability)
// can finish their repairs, until SIGTERM (the harness sends it once both receivers are
// done) or --linger seconds. A receiver stops shortly after it sees an end marker (with an
// ordered transport everything before it has been delivered or given up by then), or after
// --idle seconds without any message (all end markers lost).
//
// Roles:
//   --role recv --transport T --size N --group G --port P --interface IF [--peer SENDER_IP]
//       prints "ready" once joined/subscribed, then one "result ..." line when the stream
//       has been idle for --idle seconds
//   --role send --transport T --size N --group G --port P --interface IF --seconds S
//       prints one "result ..." line
//   --role report --input FILE
//       reads the harness's results file and prints the Markdown table
//
// Each process reports its own CPU time (getrusage(RUSAGE_SELF): user + system, every
// thread, including ZeroMQ's I/O thread and libTMC's loop thread).
#include <sys/resource.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>

#include <array>
#include <atomic>
#include <csignal>
#include <cinttypes>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "e2e_common.hpp"
#include "tmc/diagnostics.hpp"
#include "tmc/manifest.hpp"

#if defined(TMC_BENCH_HAVE_ZMQ)
#include <zmq.h>
#endif

namespace {

using namespace tmc::bench;
using namespace std::chrono_literals;

constexpr int kBatch = 32;
constexpr int kMaxUdpPayload = 65507;  ///< IPv4: 65535 - IP header - UDP header
constexpr int kMaxSize = 64 << 20;     ///< the largest 'max message bytes' a manifest may say
constexpr int kSocketBufferBytes = 4 * 1024 * 1024;
constexpr std::uint64_t kWarmupBit = 1ULL << 63;
constexpr std::uint64_t kEndBits = 3ULL << 62;
constexpr int kWarmupMessages = 200;
constexpr int kEndMarkers = 5;
// After the first end marker a receiver waits this much longer (a straggler reordered
// behind it by an unordered transport still counts).
constexpr std::uint64_t kEndGraceNs = 100'000'000;

volatile std::sig_atomic_t g_stop_lingering = 0;
extern "C" void on_stop_signal(int /*signo*/) { g_stop_lingering = 1; }

struct Config {
  std::string role;
  std::string transport = "raw";
  std::string manifest;
  std::string group = "239.255.91.1";
  int port = 48600;
  std::string interface;
  std::string peer;  ///< zmq-tcp receivers: the sender's address
  std::string name;  ///< libTMC member name
  std::string security;  ///< libTMC: overrides the manifest's `security` unless empty
  int size = 64;
  int receivers = 2;
  double seconds = 2.0;
  double warmup = 0.5;
  double linger = 20.0;
  double idle = 5.0;
  int zmq_rate_kbps = 1'000'000;  ///< ZMQ_RATE for epgm, kilobits per second
  int zmq_recovery_ms = 2000;     ///< ZMQ_RECOVERY_IVL for epgm
  // The sender's queue is kept short so that "sent" means handed to the transport (with
  // ZMQ_XPUB_NODROP a full queue blocks the sender), not parked in ZeroMQ's memory; the
  // receivers' queue is long because a SUB drops what does not fit.
  int zmq_sndhwm = 1000;       ///< ZMQ_SNDHWM, messages
  int zmq_rcvhwm = 100'000;    ///< ZMQ_RCVHWM, messages
  std::string input;
};


// --- receiver tally ---------------------------------------------------------------------

/// Counts distinct measured messages (a bitmap over sequence numbers), duplicates and
/// deliveries that arrive after a higher sequence number (out of order).
class Tally {
 public:
  void on(const std::uint8_t* p, std::size_t n, std::uint64_t now_ns) {
    if (n < 8) {
      ++runts_;
      return;
    }
    const std::uint64_t s = get_seq(p);
    if ((s & kEndBits) == kEndBits) {
      if (end_ns_.load(std::memory_order_relaxed) == 0) end_ns_.store(now_ns, std::memory_order_relaxed);
      return;
    }
    if ((s & kWarmupBit) != 0) {
      ++warmup_;
      return;
    }
    const std::size_t word = static_cast<std::size_t>(s >> 6);
    if (word >= seen_.size()) seen_.resize(std::max(word + 1, seen_.size() * 2), 0);
    const std::uint64_t bit = 1ULL << (s & 63);
    if ((seen_[word] & bit) != 0) {
      ++dups_;
      return;
    }
    seen_[word] |= bit;
    if (!any_) {
      any_ = true;
      first_ns_ = now_ns;
    } else if (s < max_seq_) {
      ++out_of_order_;
    }
    max_seq_ = std::max(max_seq_, s);
    ++received_;
    bytes_ += n;
    last_ns_ = now_ns;
    progress_.store(received_, std::memory_order_relaxed);
    last_.store(now_ns, std::memory_order_relaxed);
  }
  /// Readable from another thread while on() runs on one.
  [[nodiscard]] std::uint64_t progress() const noexcept { return progress_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t last_ns() const noexcept { return last_.load(std::memory_order_relaxed); }
  /// When the first end marker arrived; 0 = not yet.
  [[nodiscard]] std::uint64_t end_ns() const noexcept { return end_ns_.load(std::memory_order_relaxed); }

  void print(double cpu_ns, const std::string& extra = {}) const {
    std::printf("result received=%" PRIu64 " bytes=%" PRIu64 " window_ns=%" PRIu64 " dups=%" PRIu64
                " out_of_order=%" PRIu64 " warmup=%" PRIu64 " cpu_ns=%.0f%s%s\n",
                received_, bytes_, any_ ? last_ns_ - first_ns_ : 0, dups_, out_of_order_, warmup_, cpu_ns,
                extra.empty() ? "" : " ", extra.c_str());
    std::fflush(stdout);
  }

 private:
  std::vector<std::uint64_t> seen_;
  std::uint64_t received_ = 0, bytes_ = 0, dups_ = 0, out_of_order_ = 0, warmup_ = 0, runts_ = 0;
  std::uint64_t max_seq_ = 0, first_ns_ = 0, last_ns_ = 0;
  bool any_ = false;
  std::atomic<std::uint64_t> progress_{0};
  std::atomic<std::uint64_t> last_{0};
  std::atomic<std::uint64_t> end_ns_{0};
};

/// Whether a receiver should stop: shortly after the end marker; idle for cfg.idle after the
/// first measured message (every end marker lost); or past the hard limit (the sender never
/// came, or the stream never started).
struct StopRule {
  std::uint64_t idle_ns;
  std::uint64_t hard_stop_ns;
  explicit StopRule(const Config& c)
      : idle_ns(static_cast<std::uint64_t>(c.idle * 1e9)),
        hard_stop_ns(mono_ns() + static_cast<std::uint64_t>((c.seconds + c.warmup + c.idle + 30) * 1e9)) {}
  [[nodiscard]] bool done(const Tally& t, std::uint64_t now) const {
    const std::uint64_t end = t.end_ns();
    if (end != 0 && now > end + kEndGraceNs) return true;
    const std::uint64_t last = t.last_ns();
    if (t.progress() > 0 && now > last && now - last > idle_ns) return true;
    return now > hard_stop_ns;
  }
};

// --- sender pacing of the warm-up, shared by every transport ------------------------------

/// Runs `send_one(seq)` for the warm-up (spread over about 0.1 s), pauses, then as fast as
/// possible for cfg.seconds. send_one returns false when the message was not accepted.
template <typename SendOne, typename Flush>
void run_sender(const Config& c, SendOne&& send_one, Flush&& flush, std::uint64_t& sent, std::uint64_t& errors,
                std::uint64_t& elapsed_ns) {
  std::this_thread::sleep_for(std::chrono::duration<double>(c.warmup));
  for (int i = 0; i < kWarmupMessages; ++i) {
    send_one(kWarmupBit | static_cast<std::uint64_t>(i));
    if (i % 20 == 19) {
      flush();
      std::this_thread::sleep_for(10ms);
    }
  }
  flush();
  std::this_thread::sleep_for(std::chrono::duration<double>(std::min(0.2, c.warmup)));
  const std::uint64_t start = mono_ns();
  const std::uint64_t stop = start + static_cast<std::uint64_t>(c.seconds * 1e9);
  std::uint64_t seq = 0;
  // Check the clock once per batch of kBatch messages or 64 KiB, whichever is fewer (a batch
  // of 1 MiB messages would overrun --seconds by a large share).
  const int batch = std::clamp(65536 / c.size, 1, kBatch);
  // SIGTERM here means the receivers gave up (idle): stop early, the result says how far it got.
  while (mono_ns() < stop && g_stop_lingering == 0) {
    for (int i = 0; i < batch; ++i) {
      if (send_one(seq)) {
        ++seq;
      } else {
        ++errors;
      }
    }
  }
  flush();
  elapsed_ns = mono_ns() - start;
  sent = seq;
  for (int i = 0; i < kEndMarkers; ++i) {
    send_one(kEndBits | static_cast<std::uint64_t>(i));
    flush();
    std::this_thread::sleep_for(2ms);
  }
}

/// Stay alive for repairs until the harness says the receivers are done (SIGTERM or
/// SIGINT) or c.linger seconds have passed.
void linger(const Config& c) {
  const std::uint64_t until = mono_ns() + static_cast<std::uint64_t>(c.linger * 1e9);
  while (g_stop_lingering == 0 && mono_ns() < until) std::this_thread::sleep_for(10ms);
}

void print_send_result(std::uint64_t sent, std::uint64_t errors, std::uint64_t elapsed_ns, const std::string& extra) {
  std::printf("result sent=%" PRIu64 " elapsed_ns=%" PRIu64 " errors=%" PRIu64 " cpu_ns=%.0f%s%s\n", sent, elapsed_ns,
              errors, self_cpu_ns(), extra.empty() ? "" : " ", extra.c_str());
  std::fflush(stdout);
}

// --- raw UDP multicast -----------------------------------------------------------------

int raw_recv(const Config& c) {
  RawSocket s(c.group, c.port, c.interface, true, kSocketBufferBytes);
  s.set_recv_timeout(50ms);
  const std::size_t cap = static_cast<std::size_t>(std::max(c.size, 2048));
  std::vector<std::uint8_t> bufs(kBatch * cap);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (std::size_t i = 0; i < kBatch; ++i) {
    iov[i] = {bufs.data() + i * cap, cap};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  say("ready");
  Tally t;
  const StopRule stop(c);
  for (;;) {
    const int n = ::recvmmsg(s.fd, msgs.data(), kBatch, MSG_WAITFORONE, nullptr);
    const std::uint64_t now = mono_ns();
    for (int i = 0; i < n; ++i) {
      const auto u = static_cast<std::size_t>(i);
      t.on(bufs.data() + u * cap, msgs[u].msg_len, now);
    }
    if (stop.done(t, now)) break;
  }
  t.print(self_cpu_ns());
  return 0;
}

int raw_send(const Config& c) {
  RawSocket s(c.group, c.port, c.interface, false, kSocketBufferBytes);
  const auto size = static_cast<std::size_t>(c.size);
  std::vector<std::uint8_t> bufs(kBatch * size, 0x5a);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  for (std::size_t i = 0; i < kBatch; ++i) {
    iov[i] = {bufs.data() + i * size, size};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &s.group;
    msgs[i].msg_hdr.msg_namelen = sizeof s.group;
  }
  int queued = 0;
  std::uint64_t kernel_errors = 0;
  // One message per datagram, handed to the kernel kBatch at a time (sendmmsg).
  auto flush = [&] {
    int done = 0;
    while (done < queued) {
      const int n = ::sendmmsg(s.fd, msgs.data() + done, static_cast<unsigned>(queued - done), 0);
      if (n < 0) {
        // ENOBUFS and friends: the kernel dropped the rest of the batch; that is loss, as
        // it would be for any application, and the receivers count it.
        ++kernel_errors;
        break;
      }
      done += n;
    }
    queued = 0;
  };
  auto send_one = [&](std::uint64_t seq) {
    put_seq(bufs.data() + static_cast<std::size_t>(queued) * size, seq);
    if (++queued == kBatch) flush();
    return true;
  };
  std::uint64_t sent = 0, errors = 0, elapsed = 0;
  run_sender(c, send_one, flush, sent, errors, elapsed);
  linger(c);  // nothing to repair; waits like the others so that every row is run alike
  print_send_result(sent, errors, elapsed, "kernel_errors=" + std::to_string(kernel_errors));
  return 0;
}

// --- ZeroMQ ------------------------------------------------------------------------------

#if defined(TMC_BENCH_HAVE_ZMQ)

void zcheck(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + zmq_strerror(zmq_errno()));
}

void zset_int(void* sock, int option, int value, const char* what) {
  zcheck(zmq_setsockopt(sock, option, &value, sizeof value), what);
}

/// "epgm://<interface address>;<group>:<port>": OpenPGM needs the interface by address (or
/// name); the address is what works everywhere.
std::string epgm_endpoint(const Config& c) {
  const IfaceAddr ifa = resolve_interface(c.interface);
  char ip[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &ifa.addr, ip, sizeof ip);
  return "epgm://" + std::string(ip) + ";" + c.group + ":" + std::to_string(c.port);
}

void zmq_common_options(void* sock, const Config& c, bool sender) {
  // Closing waits until every queued message is out (the harness's timeout bounds it).
  zset_int(sock, ZMQ_LINGER, 30000, "ZMQ_LINGER");
  zset_int(sock, sender ? ZMQ_SNDHWM : ZMQ_RCVHWM, sender ? c.zmq_sndhwm : c.zmq_rcvhwm, "ZMQ_[SND|RCV]HWM");
  zset_int(sock, sender ? ZMQ_SNDBUF : ZMQ_RCVBUF, kSocketBufferBytes, "ZMQ_[SND|RCV]BUF");
  if (c.transport == "zmq-epgm") {
    // ZMQ_RATE bounds the PGM sender (original data and repairs) and sizes its transmit
    // window together with ZMQ_RECOVERY_IVL; receivers must use the same values.
    zset_int(sock, ZMQ_RATE, c.zmq_rate_kbps, "ZMQ_RATE");
    zset_int(sock, ZMQ_RECOVERY_IVL, c.zmq_recovery_ms, "ZMQ_RECOVERY_IVL");
    zset_int(sock, ZMQ_MULTICAST_HOPS, 1, "ZMQ_MULTICAST_HOPS");
  }
}

int zmq_recv_role(const Config& c) {
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_SUB);
  if (sock == nullptr) throw std::runtime_error(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
  zmq_common_options(sock, c, false);
  zset_int(sock, ZMQ_RCVTIMEO, 50, "ZMQ_RCVTIMEO");
  zcheck(zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0), "ZMQ_SUBSCRIBE");
  const std::string ep =
      c.transport == "zmq-epgm" ? epgm_endpoint(c) : "tcp://" + c.peer + ":" + std::to_string(c.port);
  zcheck(zmq_connect(sock, ep.c_str()), ("zmq_connect " + ep).c_str());
  say("ready");
  Tally t;
  const StopRule stop(c);
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(std::max(c.size, 65536)));
  for (;;) {
    const int n = zmq_recv(sock, buf.data(), buf.size(), 0);
    const std::uint64_t now = mono_ns();
    if (n >= 0) t.on(buf.data(), static_cast<std::size_t>(n), now);
    if (stop.done(t, now)) break;
  }
  const double cpu = self_cpu_ns();  // before teardown, like the other transports
  zmq_close(sock);
  zmq_ctx_term(ctx);
  t.print(cpu);
  return 0;
}

int zmq_send_role(const Config& c) {
  void* ctx = zmq_ctx_new();
  // XPUB is PUB plus two things used here: ZMQ_XPUB_NODROP makes a full queue block the
  // sender instead of dropping silently (so "sent" means handed to the transport, and TCP
  // gets back-pressure from the slowest subscriber), and over TCP the subscriptions arrive
  // as messages, so the sender can wait until every receiver has subscribed.
  void* sock = zmq_socket(ctx, ZMQ_XPUB);
  if (sock == nullptr) throw std::runtime_error(std::string("zmq_socket: ") + zmq_strerror(zmq_errno()));
  zmq_common_options(sock, c, true);
  zset_int(sock, ZMQ_XPUB_NODROP, 1, "ZMQ_XPUB_NODROP");
  zset_int(sock, ZMQ_XPUB_VERBOSE, 1, "ZMQ_XPUB_VERBOSE");
  if (c.transport == "zmq-epgm") {
    const std::string ep = epgm_endpoint(c);
    zcheck(zmq_connect(sock, ep.c_str()), ("zmq_connect " + ep).c_str());
  } else {
    const std::string ep = "tcp://" + c.peer + ":" + std::to_string(c.port);
    zcheck(zmq_bind(sock, ep.c_str()), ("zmq_bind " + ep).c_str());
    zset_int(sock, ZMQ_RCVTIMEO, 15000, "ZMQ_RCVTIMEO");
    std::array<std::uint8_t, 256> sub{};
    for (int i = 0; i < c.receivers; ++i) {
      if (zmq_recv(sock, sub.data(), sub.size(), 0) < 0) {
        throw std::runtime_error("only " + std::to_string(i) + " of " + std::to_string(c.receivers) +
                                 " subscribers arrived within 15 s");
      }
    }
  }
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(c.size), 0x5a);
  auto send_one = [&](std::uint64_t seq) {
    put_seq(buf.data(), seq);
    return zmq_send(sock, buf.data(), buf.size(), 0) == static_cast<int>(buf.size());
  };
  std::uint64_t sent = 0, errors = 0, elapsed = 0;
  run_sender(c, send_one, [] {}, sent, errors, elapsed);
  // PGM repairs come from the sender's transmit window: keep it alive for them.
  linger(c);
  zmq_close(sock);
  zmq_ctx_term(ctx);  // waits (up to ZMQ_LINGER) until queued messages are out
  print_send_result(sent, errors, elapsed,
                    c.transport == "zmq-epgm" ? "zmq_rate_kbps=" + std::to_string(c.zmq_rate_kbps) +
                                                    " zmq_recovery_ms=" + std::to_string(c.zmq_recovery_ms)
                                              : std::string());
  return 0;
}

#endif  // TMC_BENCH_HAVE_ZMQ

// --- libTMC --------------------------------------------------------------------------------

/// Every nonzero counter, one per line on stderr (the harness keeps it in the row's .err
/// file; `scripts/bench-reliable.sh --keep DIR` keeps those files): what to look at first
/// when a row is slow.
void dump_counters(const char* who, const tmc::ChannelStats& st) {
  for (const auto& [name, value] : st.counters) {
    if (value != 0) std::fprintf(stderr, "%s %s=%" PRIu64 "\n", who, name.c_str(), value);
  }
}

tmc::Manifest load_bench_manifest(const Config& c) {
  if (c.manifest.empty()) throw std::runtime_error("--transport tmc needs --manifest FILE");
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(c.manifest, m, diag)) throw std::runtime_error(diag.to_string());
  m.group = c.group;
  m.port = c.port;
  m.interface = c.interface;
  if (!c.name.empty()) m.name = c.name;
  // The bench manifests say 1400 (one datagram per message, no fragmentation stage); a
  // larger --size raises it to the message size, which adds the fragmentation stage.
  m.max_message_bytes = std::max<std::int64_t>(m.max_message_bytes, c.size);
  if (!c.security.empty()) {
    m.security = c.security;
    m.key_file = c.security == "none" ? std::string() : bench_key_file();
  }
  return m;
}

int tmc_recv(const Config& c) {
  tmc::Channel ch = tmc::Channel::open(load_bench_manifest(c));
  // The handler runs on the loop thread; this thread reads the tally only through its
  // atomics until the channel is closed (close() waits for the loop).
  Tally t;
  ch.on_message([&](tmc::Message&& m) {
    const auto p = m.payload();
    t.on(p.data(), p.size(), mono_ns());
  });
  say("ready");
  const StopRule stop(c);
  while (!stop.done(t, mono_ns())) std::this_thread::sleep_for(20ms);
  const double cpu = self_cpu_ns();
  ch.on_message(nullptr);
  const tmc::ChannelStats st = ch.stats();
  ch.close();
  dump_counters("recv", st);
  t.print(cpu, "datagrams_received=" + std::to_string(st.datagrams_received) +
                   " stale_drops=" + std::to_string(st.drop_count(tmc::DropReason::stale)));
  return 0;
}

int tmc_send(const Config& c) {
  tmc::Channel ch = tmc::Channel::open(load_bench_manifest(c));
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(c.size), 0x5a);
  auto send_one = [&](std::uint64_t seq) {
    put_seq(buf.data(), seq);
    return ch.send(std::span<const std::uint8_t>(buf.data(), buf.size())).is_ok();
  };
  std::uint64_t sent = 0, errors = 0, elapsed = 0;
  run_sender(c, send_one, [] {}, sent, errors, elapsed);
  // With reliability, repairs come from the sender: keep it alive for them.
  linger(c);
  ch.close();
  const tmc::ChannelStats st = ch.stats();
  dump_counters("send", st);
  print_send_result(sent, errors, elapsed,
                    "datagrams_sent=" + std::to_string(st.datagrams_sent) +
                        " send_errors=" + std::to_string(st.send_errors));
  return 0;
}

// --- report -----------------------------------------------------------------------------

struct Case {
  std::string label, transport;
  int size = 0;
  int loss_permille = 0;
  std::string status = "ok";  ///< ok | na | failed
  std::string reason;
  std::map<std::string, std::string> send;
  std::vector<std::map<std::string, std::string>> recv;
  double nft_dropped = -1;

  // Derived.
  double sent = 0, send_s = 0;
  std::vector<double> rate, goodput_mbps, recovery;
  double dups = 0, out_of_order = 0;
  double cpu_ns_per_msg = 0, send_cpu_ns_per_msg = 0, recv_cpu_ns_per_msg = 0;
  double mean_rate = 0, mean_goodput = 0;

  void derive() {
    sent = kv_num(send, "sent");
    send_s = kv_num(send, "elapsed_ns") / 1e9;
    double delivered_total = 0, recv_cpu = 0;
    for (const auto& r : recv) {
      const double got = kv_num(r, "received");
      // A receiver that got everything in a burst would report a tiny window; nothing can be
      // delivered faster than it was sent, so half the sender's time is the floor.
      const double window_s = std::max(kv_num(r, "window_ns") / 1e9, send_s * 0.5);
      rate.push_back(window_s > 0 ? got / window_s : 0);
      goodput_mbps.push_back(window_s > 0 ? kv_num(r, "bytes") / window_s / 1e6 : 0);
      recovery.push_back(sent > 0 ? got / sent : 0);
      dups += kv_num(r, "dups");
      out_of_order += kv_num(r, "out_of_order");
      delivered_total += got;
      recv_cpu += kv_num(r, "cpu_ns");
      recv_cpu_ns_per_msg += got > 0 ? kv_num(r, "cpu_ns") / got : 0;
    }
    const double n = recv.empty() ? 1.0 : static_cast<double>(recv.size());
    recv_cpu_ns_per_msg /= n;
    for (double v : rate) mean_rate += v / n;
    for (double v : goodput_mbps) mean_goodput += v / n;
    const double send_cpu = kv_num(send, "cpu_ns");
    cpu_ns_per_msg = delivered_total > 0 ? (send_cpu + recv_cpu) / delivered_total : 0;
    send_cpu_ns_per_msg = delivered_total > 0 ? send_cpu / (delivered_total / n) : 0;
  }
};

std::vector<Case> read_cases(const std::string& path) {
  std::vector<Case> out = read_results<Case>(
      path,
      [](std::map<std::string, std::string> kv) {
        Case c;
        c.label = kv["label"];
        c.transport = kv["transport"];
        c.size = static_cast<int>(kv_num(kv, "size"));
        c.loss_permille = static_cast<int>(kv_num(kv, "loss"));
        return c;
      },
      [](Case& c, const std::string& head, const std::string& rest) {
        if (head == "send") {
          c.send = parse_kv(rest);
        } else if (head == "recv") {
          c.recv.push_back(parse_kv(rest));
        } else if (head == "nft") {
          c.nft_dropped = kv_num(parse_kv(rest), "dropped");
        } else {
          return false;
        }
        return true;
      });
  for (auto& c : out) {
    if (c.status == "ok" && (c.send.empty() || c.recv.empty())) {
      c.status = "failed";
      c.reason = "missing sender or receiver result";
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

std::string pair(const char* f, const std::vector<double>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? " / " : "") + fmt(f, v[i]);
  return s;
}

int report(const Config& cfg) {
  const std::vector<Case> cases = read_cases(cfg.input);
  auto raw_of = [&](const Case& c) -> const Case* {
    for (const auto& x : cases) {
      if (x.transport == "raw" && x.size == c.size && x.loss_permille == c.loss_permille && x.status == "ok") return &x;
    }
    return nullptr;
  };
  std::printf("| transport | size | loss on r2 | sent msg/s | delivered msg/s (r1 / r2) | goodput MB/s (r1 / r2) | "
              "delivered/sent (r1 / r2) | dup, out of order | CPU ns per delivered msg (all; send, recv) | "
              "msg/s vs raw | goodput vs raw | CPU/msg vs raw |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  int failures = 0;
  for (const auto& c : cases) {
    const std::string head = "| " + c.label + " | " + std::to_string(c.size) + " B | " +
                             fmt("%.1f%%", c.loss_permille / 10.0) + " | ";
    if (c.status == "na") {
      std::printf("%snot available yet: %s | | | | | | | | |\n", head.c_str(), c.reason.c_str());
      continue;
    }
    if (c.status != "ok") {
      ++failures;
      std::printf("%sfailed: %s | | | | | | | | |\n", head.c_str(), c.reason.c_str());
      continue;
    }
    const Case* raw = raw_of(c);
    std::string r_rate = "n/a", r_good = "n/a", r_cpu = "n/a";
    if (raw != nullptr && raw->mean_rate > 0) r_rate = fmt("%.2f", c.mean_rate / raw->mean_rate);
    if (raw != nullptr && raw->mean_goodput > 0) r_good = fmt("%.2f", c.mean_goodput / raw->mean_goodput);
    if (raw != nullptr && raw->cpu_ns_per_msg > 0) r_cpu = fmt("%.2f", c.cpu_ns_per_msg / raw->cpu_ns_per_msg);
    std::printf("%s%.0f | %s | %s | %s | %.0f, %.0f | %.0f; %.0f, %.0f | %s | %s | %s |\n", head.c_str(),
                c.send_s > 0 ? c.sent / c.send_s : 0, pair("%.0f", c.rate).c_str(), pair("%.1f", c.goodput_mbps).c_str(),
                pair("%.4f", c.recovery).c_str(), c.dups, c.out_of_order, c.cpu_ns_per_msg, c.send_cpu_ns_per_msg,
                c.recv_cpu_ns_per_msg, r_rate.c_str(), r_good.c_str(), r_cpu.c_str());
  }
  // What nftables actually dropped, so a reader can check that the loss was applied.
  std::string drops;
  for (const auto& c : cases) {
    if (c.status == "ok" && c.nft_dropped >= 0) {
      drops += (drops.empty() ? "" : ", ") + c.label + " " + std::to_string(c.size) + " B: " + fmt("%.0f", c.nft_dropped);
    }
  }
  if (!drops.empty()) std::printf("\nPackets dropped by the nftables rule on r2 (1%% rows): %s\n", drops.c_str());
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

int run(const Config& c) {
  if (c.role == "report") return report(c);
  const bool send = c.role == "send";
  if (c.transport == "raw") {
    if (c.size > kMaxUdpPayload) {
      throw std::runtime_error("raw UDP carries one message per datagram: --size " + std::to_string(c.size) +
                               " is more than a UDP datagram holds (" + std::to_string(kMaxUdpPayload) + " B)");
    }
    return send ? raw_send(c) : raw_recv(c);
  }
  if (c.transport == "tmc") return send ? tmc_send(c) : tmc_recv(c);
  if (c.transport == "zmq-epgm" || c.transport == "zmq-tcp") {
#if defined(TMC_BENCH_HAVE_ZMQ)
    if (c.transport == "zmq-epgm" && zmq_has("pgm") == 0) {
      throw std::runtime_error("this libzmq was built without OpenPGM (zmq_has(\"pgm\") is false)");
    }
    return send ? zmq_send_role(c) : zmq_recv_role(c);
#else
    throw std::runtime_error("built without ZeroMQ (install libzmq3-dev and reconfigure)");
#endif
  }
  throw std::runtime_error("unknown transport '" + c.transport + "'");
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"libTMC reliable-multicast benchmark participant (scripts/bench-reliable.sh runs it)"};
  app.add_option("--role", c.role, "send, recv, or report")->required()->check(CLI::IsMember({"send", "recv", "report"}));
  app.add_option("--transport", c.transport, "raw, zmq-epgm, zmq-tcp or tmc")
      ->check(CLI::IsMember({"raw", "zmq-epgm", "zmq-tcp", "tmc"}));
  app.add_option("--manifest", c.manifest, "libTMC manifest (YAML) for --transport tmc");
  app.add_option("--group", c.group, "IPv4 multicast group");
  app.add_option("--port", c.port, "UDP (or TCP) port")->check(CLI::Range(1, 65535));
  app.add_option("--interface", c.interface, "network interface (default loopback)");
  app.add_option("--peer", c.peer, "zmq-tcp: the sender's IPv4 address (the sender binds it)");
  app.add_option("--name", c.name, "libTMC member name");
  app.add_option("--security", c.security, "libTMC: the manifest's security, overridden (none, authenticate, encrypt)")
      ->check(CLI::IsMember({"none", "authenticate", "encrypt"}));
  app.add_option("--size", c.size,
                 "message size in bytes (tmc: larger than a datagram is fragmented; raw: at most 65507)")
      ->check(CLI::Range(8, kMaxSize));
  app.add_option("--receivers", c.receivers, "zmq-tcp sender: subscribers to wait for")->check(CLI::Range(1, 64));
  app.add_option("--seconds", c.seconds, "measured sending time")->check(CLI::Range(0.05, 600.0));
  app.add_option("--warmup", c.warmup, "sender: wait before the warm-up messages, seconds")->check(CLI::Range(0.0, 60.0));
  app.add_option("--linger", c.linger, "sender: stay alive after the last message (repairs) until SIGTERM or this long, seconds")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--idle", c.idle, "receiver: stop after this long without a message, seconds")
      ->check(CLI::Range(0.05, 60.0));
  app.add_option("--zmq-rate-kbps", c.zmq_rate_kbps, "epgm: ZMQ_RATE, kilobits per second")->check(CLI::Range(1, 10'000'000));
  app.add_option("--zmq-recovery-ms", c.zmq_recovery_ms, "epgm: ZMQ_RECOVERY_IVL, milliseconds")->check(CLI::Range(1, 600'000));
  app.add_option("--zmq-sndhwm", c.zmq_sndhwm, "ZeroMQ sender high-water mark, messages")->check(CLI::Range(1, 100'000'000));
  app.add_option("--zmq-rcvhwm", c.zmq_rcvhwm, "ZeroMQ receiver high-water mark, messages")->check(CLI::Range(1, 100'000'000));
  app.add_option("--input", c.input, "report: the harness's results file");
  CLI11_PARSE(app, argc, argv);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  try {
    return run(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc-reliable-mcast (%s %s): %s\n", c.role.c_str(), c.transport.c_str(), e.what());
    return 2;
  }
}
