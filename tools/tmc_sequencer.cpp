// tmc-sequencer: a standalone network sequencer, the role the paper's §3 gives a programmable
// switch (NOPaxos's ordered unreliable multicast, OUM).
//
//   tmc-sequencer --listen IP:PORT --group IP:PORT [--interface IFNAME|IP] [--session N]
//                 [--ttl N] [--no-loop] [--channel NAME] [--buffer-bytes N]
//                 [--stats-interval S] [--history N] [--max-held N] [--max-senders N]
//
// Members of a group-ordered channel whose capabilities declare `sequencer: IP:PORT` send
// their ordered data by unicast to --listen. For each datagram the sequencer:
//   1. decodes it with tmc::wire::decode (the library's only parser: every byte is hostile);
//   2. admits it by detail::SequencerAdmission's rules: each sender's data is stamped in
//      its per-sender order (Ext::seq) with no holes — a datagram that arrives before an
//      earlier one of its sender is held (reliable) until the earlier one comes, or stamped
//      at once over the hole (unreliable); a retransmission of a datagram already stamped
//      is stamped again with the SAME global number and multicast again, so a member that
//      missed the first multicast is repaired by its sender's reliability;
//   3. inserts the group_seq extension (u64 global number from 1, u32 session) and, when the
//      datagram carries a CRC32C trailer, recomputes it;
//   4. multicasts the result to --group (out of --interface, loopback on by default so
//      members on this host receive it too).
// It reads and sends in batches (recvmmsg/sendmmsg) and asks for large socket buffers
// (--buffer-bytes, default 8 MiB; what the kernel granted is printed at start), and counts
// what the kernel dropped on its receive queue (SO_RXQ_OVFL). The session is random per
// start (or --session), so members notice a restart and skip to the new order. It prints
// its counters every --stats-interval seconds (0: never) and on SIGINT or SIGTERM, then
// exits with status 0.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "primitives/common/endpoint.hpp"
#include "sequencer/stamp.hpp"
#include "tmc/packet.hpp"
#include "tmc/wire.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

bool parse_endpoint(const std::string& s, sockaddr_in& out) {
  std::uint32_t ip = 0;
  std::uint16_t port = 0;
  if (!tmc::detail::parse_ip_port(s, ip, port)) return false;
  std::memset(&out, 0, sizeof out);
  out.sin_family = AF_INET;
  out.sin_port = htons(port);
  out.sin_addr.s_addr = htonl(ip);
  return true;
}

using Admission = tmc::detail::SequencerAdmission;

// Datagrams per recvmmsg/sendmmsg call. Each slot holds a datagram of the largest size,
// so the two batches take 2 * 64 * 64 KiB = 8 MiB.
constexpr unsigned kBatch = 64;

struct IoCounters {
  unsigned long long received = 0, malformed = 0, foreign = 0, sent = 0, send_errors = 0, kernel_drops = 0,
                     batches = 0;
};

void print_counters(const IoCounters& io, const Admission& a) {
  const Admission::Counters& c = a.counters();
  std::printf("tmc-sequencer: session %u\n", a.session());
  std::printf("  received     %llu\n  kernel_drops %llu\n  malformed    %llu\n  foreign      %llu\n", io.received,
              io.kernel_drops, io.malformed, io.foreign);
  std::printf("  not_data     %llu\n  no_seq       %llu\n", static_cast<unsigned long long>(c.not_data),
              static_cast<unsigned long long>(c.no_seq));
  std::printf("  stamped      %llu\n  restamped    %llu\n  relayed      %llu\n",
              static_cast<unsigned long long>(c.stamped), static_cast<unsigned long long>(c.restamped),
              static_cast<unsigned long long>(c.relayed));
  std::printf("  held         %llu\n  released     %llu\n  refused      %llu\n  dup_held     %llu\n",
              static_cast<unsigned long long>(c.held), static_cast<unsigned long long>(c.released),
              static_cast<unsigned long long>(c.refused), static_cast<unsigned long long>(c.duplicate_held));
  std::printf("  stale        %llu\n  passed_over  %llu\n  too_large    %llu\n  evicted      %llu\n",
              static_cast<unsigned long long>(c.stale), static_cast<unsigned long long>(c.passed_over),
              static_cast<unsigned long long>(c.too_large), static_cast<unsigned long long>(c.senders_evicted));
  std::printf("  holding      %zu\n  senders      %zu\n  sent         %llu\n  send_errors  %llu\n",
              a.held_datagrams(), a.senders(), io.sent, io.send_errors);
  std::fflush(stdout);
}

// Ask for `bytes` of socket buffer (SO_RCVBUF or SO_SNDBUF); as root the FORCE variant
// passes net.core.{r,w}mem_max. Returns what the kernel granted.
int grow_buffer(int fd, int opt, int force_opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
  int granted = 0;
  socklen_t len = sizeof granted;
  (void)getsockopt(fd, SOL_SOCKET, opt, &granted, &len);
  return granted;
}

// The outgoing batch: admission emits stamped datagrams into it; it is sent when full and
// after each received batch.
struct OutBatch {
  int fd = -1;
  sockaddr_in to{};
  std::vector<std::uint8_t> bufs;
  mmsghdr msgs[kBatch]{};
  iovec iov[kBatch]{};
  unsigned n = 0;
  IoCounters* io = nullptr;

  void flush() {
    unsigned done = 0;
    while (done < n) {
      const int r = sendmmsg(fd, msgs + done, n - done, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        ++io->send_errors;  // this one is lost (e.g. ENOBUFS); go on with the rest
        ++done;
        continue;
      }
      io->sent += static_cast<unsigned>(r);
      done += static_cast<unsigned>(r);
    }
    n = 0;
  }
  static void emit(void* ctx, const std::uint8_t* d, std::size_t len) {
    auto* b = static_cast<OutBatch*>(ctx);
    if (b->n == kBatch) b->flush();
    std::uint8_t* slot = b->bufs.data() + std::size_t{b->n} * tmc::wire::kMaxDatagramBytes;
    std::memcpy(slot, d, len);
    b->iov[b->n].iov_base = slot;
    b->iov[b->n].iov_len = len;
    msghdr& h = b->msgs[b->n].msg_hdr;
    h.msg_name = &b->to;
    h.msg_namelen = sizeof b->to;
    h.msg_iov = &b->iov[b->n];
    h.msg_iovlen = 1;
    h.msg_control = nullptr;
    h.msg_controllen = 0;
    ++b->n;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tmc-sequencer: stamps a global order on a libTMC group's data and multicasts it (OUM)"};
  std::string listen;
  std::string group;
  std::string interface;
  std::uint32_t session = 0;
  int ttl = 1;
  bool no_loop = false;
  std::string channel;
  int buffer_bytes = 8 << 20;
  double stats_interval_s = 0;
  Admission::Limits limits;
  app.add_option("--listen", listen, "IP:PORT to receive data on (the capabilities' sequencer address)")->required();
  app.add_option("--group", group, "multicast IP:PORT of the group to send stamped datagrams to")->required();
  app.add_option("--interface", interface, "interface name or IPv4 address to multicast from");
  app.add_option("--session", session, "session number (default: random, never 0)");
  app.add_option("--channel", channel, "only stamp this channel id's datagrams (default: any)");
  app.add_option("--ttl", ttl, "multicast TTL")->check(CLI::Range(1, 255));
  app.add_flag("--no-loop", no_loop, "do not loop multicast back to this host");
  app.add_option("--buffer-bytes", buffer_bytes, "SO_RCVBUF and SO_SNDBUF to ask for (default 8 MiB)")
      ->check(CLI::Range(65536, 1 << 30));
  app.add_option("--stats-interval", stats_interval_s, "print the counters every S seconds (default 0: only on exit)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--history", limits.history,
                 "stamps remembered per sender for retransmissions (default 8192)")
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--max-held", limits.max_held, "out-of-order datagrams held per sender (default 64)")
      ->check(CLI::Range(0u, 65536u));
  app.add_option("--max-senders", limits.max_senders, "sender incarnations remembered (default 1024)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  CLI11_PARSE(app, argc, argv);

  sockaddr_in listen_addr{};
  sockaddr_in group_addr{};
  if (!parse_endpoint(listen, listen_addr)) {
    std::fprintf(stderr, "tmc-sequencer: --listen must be IPv4:port, got '%s'\n", listen.c_str());
    return 2;
  }
  if (!parse_endpoint(group, group_addr) || !IN_MULTICAST(ntohl(group_addr.sin_addr.s_addr))) {
    std::fprintf(stderr, "tmc-sequencer: --group must be a multicast IPv4:port, got '%s'\n", group.c_str());
    return 2;
  }
  if (session == 0) {
    std::random_device rd;
    while (session == 0) session = rd();
  }
  const std::uint32_t channel_hash =
      channel.empty() ? 0 : tmc::wire::channel_hash(channel.data(), channel.size());

  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    std::perror("tmc-sequencer: socket");
    return 1;
  }
  const int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Bursts from every member arrive at once; a small queue overflows and each datagram lost
  // here costs a retransmission, so ask for a large one (and count its overflows).
  const int rcvbuf = grow_buffer(fd, SO_RCVBUF, SO_RCVBUFFORCE, buffer_bytes);
  const int sndbuf = grow_buffer(fd, SO_SNDBUF, SO_SNDBUFFORCE, buffer_bytes);
  const bool ovfl = setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) == 0;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&listen_addr), sizeof listen_addr) != 0) {
    std::fprintf(stderr, "tmc-sequencer: cannot bind %s: %s\n", listen.c_str(), std::strerror(errno));
    return 1;
  }
  if (!interface.empty()) {
    ip_mreqn mreq{};
    if (inet_pton(AF_INET, interface.c_str(), &mreq.imr_address) != 1) {
      mreq.imr_ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
      if (mreq.imr_ifindex == 0) {
        std::fprintf(stderr, "tmc-sequencer: --interface '%s' is neither an IPv4 address nor an interface\n",
                     interface.c_str());
        return 2;
      }
    }
    if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof mreq) != 0) {
      std::fprintf(stderr, "tmc-sequencer: IP_MULTICAST_IF %s: %s\n", interface.c_str(), std::strerror(errno));
      return 1;
    }
  }
  const unsigned char ttl_byte = static_cast<unsigned char>(ttl);
  const unsigned char loop = no_loop ? 0 : 1;
  (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl_byte, sizeof ttl_byte);
  (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);

  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  // Receive batch: one slot per datagram, one byte larger than the largest valid one so
  // that an oversized datagram shows as such (MSG_TRUNC is checked too).
  constexpr std::size_t kSlot = tmc::wire::kMaxDatagramBytes + 1;
  constexpr std::size_t kCtl = CMSG_SPACE(sizeof(std::uint32_t));
  std::vector<std::uint8_t> in(kBatch * kSlot);
  std::vector<std::uint8_t> ctl(kBatch * kCtl);
  mmsghdr rmsgs[kBatch]{};
  iovec riov[kBatch]{};
  IoCounters io;
  OutBatch out;
  out.fd = fd;
  out.to = group_addr;
  out.bufs.resize(std::size_t{kBatch} * tmc::wire::kMaxDatagramBytes);
  out.io = &io;
  Admission admission(session, limits);
  std::uint32_t last_ovfl = 0;
  std::printf("tmc-sequencer: listening on %s, multicasting to %s, session %u\n", listen.c_str(), group.c_str(),
              session);
  std::printf("tmc-sequencer: socket buffers granted: receive %d bytes, send %d bytes (asked %d)%s\n", rcvbuf,
              sndbuf, buffer_bytes, ovfl ? "" : "; kernel drop counting unavailable");
  std::fflush(stdout);

  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(stats_interval_s));
  auto next_stats = Clock::now() + interval;

  while (g_stop == 0) {
    if (stats_interval_s > 0 && Clock::now() >= next_stats) {
      print_counters(io, admission);
      next_stats += interval;
    }
    pollfd pfd{fd, POLLIN, 0};
    const int r = poll(&pfd, 1, 200);
    if (r < 0 && errno != EINTR) {
      std::perror("tmc-sequencer: poll");
      break;
    }
    if (r <= 0) continue;
    // Drain the queue in batches before sleeping again.
    for (;;) {
      for (unsigned i = 0; i < kBatch; ++i) {
        riov[i].iov_base = in.data() + std::size_t{i} * kSlot;
        riov[i].iov_len = kSlot;
        msghdr& h = rmsgs[i].msg_hdr;
        h = msghdr{};
        h.msg_iov = &riov[i];
        h.msg_iovlen = 1;
        h.msg_control = ctl.data() + std::size_t{i} * kCtl;
        h.msg_controllen = kCtl;
      }
      const int got = recvmmsg(fd, rmsgs, kBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) break;
      ++io.batches;
      for (int i = 0; i < got; ++i) {
        msghdr& h = rmsgs[i].msg_hdr;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&h); cm != nullptr; cm = CMSG_NXTHDR(&h, cm)) {
          if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
            std::uint32_t v = 0;
            std::memcpy(&v, CMSG_DATA(cm), sizeof v);
            io.kernel_drops += v - last_ovfl;  // a running total for the socket
            last_ovfl = v;
          }
        }
        ++io.received;
        const std::size_t n = rmsgs[i].msg_len;
        tmc::Packet p;
        p.buf = in.data() + static_cast<std::size_t>(i) * kSlot;
        p.cap = static_cast<std::uint32_t>(kSlot);
        p.off = 0;
        p.len = static_cast<std::uint32_t>(std::min(n, kSlot));
        if (n > tmc::wire::kMaxDatagramBytes || (h.msg_flags & MSG_TRUNC) != 0 ||
            tmc::wire::decode(p) != tmc::wire::DecodeError::none) {
          ++io.malformed;
          continue;
        }
        if (channel_hash != 0 && p.channel != channel_hash) {
          ++io.foreign;
          continue;
        }
        (void)admission.admit(p, &OutBatch::emit, &out);
      }
      out.flush();
      if (got < static_cast<int>(kBatch)) break;
    }
  }
  out.flush();
  print_counters(io, admission);
  close(fd);
  return 0;
}
