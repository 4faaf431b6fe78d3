// tmc-sequencer: a standalone network sequencer, the role the paper's §3 gives a programmable
// switch (NOPaxos's ordered unreliable multicast, OUM).
//
//   tmc-sequencer --listen IP:PORT --group IP:PORT [--interface IFNAME|IP] [--session N]
//                 [--ttl N] [--no-loop]
//
// Members of a group-ordered channel whose capabilities declare `sequencer: IP:PORT` send
// their ordered data by unicast to --listen. For each datagram the sequencer:
//   1. decodes it with tmc::wire::decode (the library's only parser: every byte is hostile);
//   2. admits it only if it is a data datagram whose per-sender number (seq extension) is
//      above the last one it stamped for that (sender, epoch) — the network on the way in
//      may duplicate and reorder, and one message must never get two places in the order;
//   3. inserts the group_seq extension (u64 global number from 1, u32 session) and, when the
//      datagram carries a CRC32C trailer, recomputes it;
//   4. multicasts the result to --group (out of --interface, loopback on by default so
//      members on this host receive it too).
// The session is random per start (or --session), so members notice a restart and skip to
// the new order. On SIGINT or SIGTERM it prints its counters and exits with status 0.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "primitives/ordering/group_stamp.hpp"
#include "tmc/packet.hpp"
#include "tmc/wire.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

bool parse_endpoint(const std::string& s, sockaddr_in& out) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  const std::string host = s.substr(0, colon);
  const std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  const unsigned long p = std::stoul(port);
  if (p == 0 || p > 65535) return false;
  std::memset(&out, 0, sizeof out);
  out.sin_family = AF_INET;
  out.sin_port = htons(static_cast<std::uint16_t>(p));
  return inet_pton(AF_INET, host.c_str(), &out.sin_addr) == 1;
}

struct Counters {
  unsigned long long received = 0, malformed = 0, not_data = 0, no_seq = 0, stale = 0, foreign = 0, too_large = 0,
                     stamped = 0, sent = 0, send_errors = 0;
};

void print_counters(const Counters& c, std::uint32_t session) {
  std::printf("tmc-sequencer: session %u\n", session);
  std::printf("  received     %llu\n  malformed    %llu\n  not_data     %llu\n  no_seq       %llu\n", c.received,
              c.malformed, c.not_data, c.no_seq);
  std::printf("  stale        %llu\n  foreign      %llu\n  too_large    %llu\n  stamped      %llu\n", c.stale,
              c.foreign, c.too_large, c.stamped);
  std::printf("  sent         %llu\n  send_errors  %llu\n", c.sent, c.send_errors);
  std::fflush(stdout);
}

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
  app.add_option("--listen", listen, "IP:PORT to receive data on (the capabilities' sequencer address)")->required();
  app.add_option("--group", group, "multicast IP:PORT of the group to send stamped datagrams to")->required();
  app.add_option("--interface", interface, "interface name or IPv4 address to multicast from");
  app.add_option("--session", session, "session number (default: random, never 0)");
  app.add_option("--channel", channel, "only stamp this channel id's datagrams (default: any)");
  app.add_option("--ttl", ttl, "multicast TTL")->check(CLI::Range(1, 255));
  app.add_flag("--no-loop", no_loop, "do not loop multicast back to this host");
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

  std::vector<std::uint8_t> in(tmc::wire::kMaxDatagramBytes + 1);
  std::vector<std::uint8_t> out(tmc::wire::kMaxDatagramBytes);
  tmc::detail::SequencerAdmission admission;
  Counters c;
  std::uint64_t next = 1;
  std::printf("tmc-sequencer: listening on %s, multicasting to %s, session %u\n", listen.c_str(), group.c_str(),
              session);
  std::fflush(stdout);

  while (g_stop == 0) {
    pollfd pfd{fd, POLLIN, 0};
    const int r = poll(&pfd, 1, 200);
    if (r < 0 && errno != EINTR) {
      std::perror("tmc-sequencer: poll");
      break;
    }
    if (r <= 0) continue;
    const ssize_t n = recv(fd, in.data(), in.size(), MSG_DONTWAIT);
    if (n < 0) continue;
    ++c.received;
    tmc::Packet p;
    p.buf = in.data();
    p.cap = static_cast<std::uint32_t>(in.size());
    p.off = 0;
    p.len = static_cast<std::uint32_t>(n);
    if (static_cast<std::size_t>(n) > tmc::wire::kMaxDatagramBytes || tmc::wire::decode(p) != tmc::wire::DecodeError::none) {
      ++c.malformed;
      continue;
    }
    if (channel_hash != 0 && p.channel != channel_hash) {
      ++c.foreign;
      continue;
    }
    switch (admission.admit(p)) {
      case tmc::detail::SequencerAdmission::Verdict::stamp: break;
      case tmc::detail::SequencerAdmission::Verdict::stale: ++c.stale; continue;
      case tmc::detail::SequencerAdmission::Verdict::no_seq: ++c.no_seq; continue;
      case tmc::detail::SequencerAdmission::Verdict::not_data: ++c.not_data; continue;
    }
    const std::size_t len = tmc::detail::stamp_group_seq(p, next, session, out.data(), out.size());
    if (len == 0) {
      ++c.too_large;
      continue;
    }
    ++next;
    ++c.stamped;
    if (sendto(fd, out.data(), len, 0, reinterpret_cast<const sockaddr*>(&group_addr), sizeof group_addr) ==
        static_cast<ssize_t>(len)) {
      ++c.sent;
    } else {
      ++c.send_errors;
    }
  }
  print_counters(c, session);
  close(fd);
  return 0;
}
