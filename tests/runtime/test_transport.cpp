// The UDP transport alone (no channel, no loop): batched sends with UDP GSO, and what it
// does when the kernel refuses a GSO send.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <set>

#include "runtime/transport/udp_transport.hpp"

namespace {

using tmc::detail::TransportSpec;
using tmc::detail::UdpTransport;

// A plain UDP socket on 127.0.0.1 (port chosen by the kernel) that reads with a timeout.
struct Sink {
  int fd = -1;
  std::uint16_t port = 0;
  Sink() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    timeval tv{2, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Sink() { ::close(fd); }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  // Datagrams read until a read times out: their first bytes, and every length seen.
  std::set<int> drain(std::set<std::size_t>& lengths) const {
    std::set<int> firsts;
    std::uint8_t buf[2048];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      lengths.insert(static_cast<std::size_t>(n));
      firsts.insert(buf[0]);
    }
    return firsts;
  }
};

// A unicast transport that sends to `port` on 127.0.0.1 (it does not bind or receive).
std::unique_ptr<UdpTransport> open_to(std::uint16_t port, bool gso) {
  TransportSpec spec;
  spec.plan.multicast = false;
  spec.plan.interface = "lo";
  spec.plan.gso = gso;
  spec.plan.port = 1;  // unused: nothing is bound
  spec.receive = false;
  spec.members = {"sink@127.0.0.1:" + std::to_string(port)};
  spec.self_name = "self";
  std::unique_ptr<UdpTransport> t;
  const tmc::Status s = UdpTransport::open(spec, t);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return t;
}

// Queue `n` datagrams of `bytes` bytes each, the first byte numbering them, to one
// destination (dst set), so that a GSO transport can put them in one send.
void queue(UdpTransport& t, tmc::PacketPool& pool, std::uint16_t port, int n, std::uint32_t bytes) {
  for (int i = 0; i < n; ++i) {
    tmc::Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->off = 0;
    p->len = bytes;
    std::memset(p->buf, 0xab, bytes);
    p->buf[0] = static_cast<std::uint8_t>(i);
    p->dst_ip = INADDR_LOOPBACK;
    p->dst_port = port;
    REQUIRE(t.enqueue(p));
  }
}

}  // namespace

TEST_CASE("transport: equal datagrams to one destination go out as GSO sends and arrive one by one") {
  Sink sink;
  tmc::PacketPool pool(2048, 64, 256);
  auto t = open_to(sink.port, true);
  REQUIRE(t->plan().gso);  // Linux 4.18 and later take UDP_SEGMENT on any UDP socket
  queue(*t, pool, sink.port, 40, 1000);
  REQUIRE(t->flush());
  CHECK(t->counters().gso_sends >= 1);
  CHECK(t->counters().gso_refused == 0);
  CHECK(t->counters().datagrams_sent == 40);
  std::set<std::size_t> lengths;
  const std::set<int> firsts = sink.drain(lengths);
  CHECK(firsts.size() == 40);
  CHECK(lengths == std::set<std::size_t>{1000});
}

TEST_CASE("transport: a GSO send the kernel refuses turns GSO off and loses nothing") {
  Sink sink;
  tmc::PacketPool pool(2048, 64, 256);
  auto t = open_to(sink.port, true);
  REQUIRE(t->plan().gso);
  // Without UDP checksums the kernel refuses every GSO send (EINVAL), as it would on a
  // path it cannot segment for; plain datagrams still go.
  const int one = 1;
  REQUIRE(::setsockopt(t->fd(), SOL_SOCKET, SO_NO_CHECK, &one, sizeof one) == 0);
  queue(*t, pool, sink.port, 40, 1000);
  REQUIRE(t->flush());
  CHECK(t->counters().gso_refused == 1);
  CHECK(t->counters().gso_sends == 0);
  CHECK(t->counters().send_errors == 0);
  CHECK(t->counters().datagrams_sent == 40);
  CHECK_FALSE(t->plan().gso);
  std::set<std::size_t> lengths;
  CHECK(sink.drain(lengths).size() == 40);
  // Off for good: later batches do not try again.
  queue(*t, pool, sink.port, 10, 1000);
  REQUIRE(t->flush());
  CHECK(t->counters().gso_refused == 1);
  CHECK(t->counters().datagrams_sent == 50);
}

TEST_CASE("transport: without GSO in the plan every datagram is its own send") {
  Sink sink;
  tmc::PacketPool pool(2048, 64, 256);
  auto t = open_to(sink.port, false);
  CHECK_FALSE(t->plan().gso);
  queue(*t, pool, sink.port, 20, 600);
  REQUIRE(t->flush());
  CHECK(t->counters().gso_sends == 0);
  std::set<std::size_t> lengths;
  CHECK(sink.drain(lengths).size() == 20);
}
