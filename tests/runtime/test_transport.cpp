// The UDP transport alone (no channel, no loop): batched sends with UDP GSO, what it does
// when the kernel refuses a GSO send, and receives with UDP GRO cut back into datagrams.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

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

namespace {

// A port on 127.0.0.1 nobody holds right now (the kernel's choice, released again).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A unicast transport bound to 127.0.0.1:`port` that receives, with GRO as asked.
std::unique_ptr<UdpTransport> open_receiver(std::uint16_t port, bool gro) {
  TransportSpec spec;
  spec.plan.multicast = false;
  spec.plan.interface = "lo";
  spec.plan.gro = gro;
  spec.plan.port = port;
  spec.receive = true;
  spec.members = {"self@127.0.0.1:" + std::to_string(port)};
  spec.self_name = "self";
  std::unique_ptr<UdpTransport> t;
  const tmc::Status s = UdpTransport::open(spec, t);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return t;
}

// Receive `want` datagrams, at most `max` per call (fewer tries than a second's worth).
std::vector<tmc::Packet*> receive_all(UdpTransport& t, tmc::PacketPool& pool, std::size_t want, int max) {
  std::vector<tmc::Packet*> got;
  std::vector<tmc::Packet*> batch(static_cast<std::size_t>(max));
  for (int tries = 0; got.size() < want && tries < 1000; ++tries) {
    const int n = t.receive(pool, batch.data(), max);
    if (n == 0) {
      pollfd pfd{t.fd(), POLLIN, 0};
      (void)::poll(&pfd, 1, 10);
    }
    for (int i = 0; i < n; ++i) got.push_back(batch[static_cast<std::size_t>(i)]);
  }
  return got;
}

}  // namespace

TEST_CASE("transport: with GRO a coalesced receive is cut back into the datagrams sent") {
  const std::uint16_t port = free_port();
  auto rx = open_receiver(port, true);
  REQUIRE(rx->plan().gro);  // Linux 5.0 and later take UDP_GRO
  REQUIRE(rx->gro());
  CHECK_FALSE(rx->enable_blocking_wait(1000));  // the hot wait cannot cut buffers apart
  tmc::PacketPool tx_pool(2048, 64, 256);
  tmc::PacketPool rx_pool(2048, 64, 256);
  auto tx = open_to(port, true);
  REQUIRE(tx->plan().gso);
  // Two GSO runs of 20 (the second ends with a short datagram), then one alone.
  queue(*tx, tx_pool, port, 20, 1000);
  REQUIRE(tx->flush());
  queue(*tx, tx_pool, port, 19, 700);
  tmc::Packet* last = tx_pool.alloc();
  REQUIRE(last != nullptr);
  last->off = 0;
  last->len = 300;
  std::memset(last->buf, 0xcd, last->len);
  last->buf[0] = 200;
  last->dst_ip = INADDR_LOOPBACK;
  last->dst_port = port;
  REQUIRE(tx->enqueue(last));
  REQUIRE(tx->flush());
  queue(*tx, tx_pool, port, 1, 90);
  REQUIRE(tx->flush());
  // At most 8 per call: a coalesced buffer of 20 is handed out over several calls.
  const std::vector<tmc::Packet*> got = receive_all(*rx, rx_pool, 41, 8);
  REQUIRE(got.size() == 41);
  CHECK(rx->counters().gro_reads >= 1);  // the kernel did coalesce: the split was exercised
  CHECK(rx->counters().datagrams_received == 41);
  CHECK(rx->counters().truncated == 0);
  for (std::size_t i = 0; i < got.size(); ++i) {
    const tmc::Packet* p = got[i];
    const std::uint32_t want_len = i < 20 ? 1000 : i < 39 ? 700 : i == 39 ? 300 : 90;
    const int want_first = i < 20 ? static_cast<int>(i) : i < 39 ? static_cast<int>(i - 20) : i == 39 ? 200 : 0;
    CHECK(p->len == want_len);
    CHECK(p->data()[0] == want_first);
    CHECK(p->data()[p->len - 1] == (i == 39 ? 0xcd : 0xab));
    CHECK(p->src_ip == INADDR_LOOPBACK);
  }
  for (tmc::Packet* p : got) p->release();
  CHECK_FALSE(rx->rx_buffered());
}

TEST_CASE("transport: without GRO in the plan the kernel hands every datagram alone") {
  const std::uint16_t port = free_port();
  auto rx = open_receiver(port, false);
  CHECK_FALSE(rx->gro());
  tmc::PacketPool tx_pool(2048, 64, 256);
  tmc::PacketPool rx_pool(2048, 64, 256);
  auto tx = open_to(port, true);
  queue(*tx, tx_pool, port, 20, 1000);
  REQUIRE(tx->flush());
  const std::vector<tmc::Packet*> got = receive_all(*rx, rx_pool, 20, 32);
  CHECK(got.size() == 20);
  CHECK(rx->counters().gro_reads == 0);
  for (tmc::Packet* p : got) {
    CHECK(p->len == 1000);
    p->release();
  }
}

TEST_CASE("transport: datagrams read with GRO are handed out without reading the socket again") {
  const std::uint16_t port = free_port();
  auto rx = open_receiver(port, true);
  REQUIRE(rx->gro());
  tmc::PacketPool tx_pool(2048, 64, 256);
  tmc::PacketPool rx_pool(2048, 64, 256);
  auto tx = open_to(port, true);
  queue(*tx, tx_pool, port, 30, 500);
  REQUIRE(tx->flush());
  std::vector<tmc::Packet*> got;
  std::vector<tmc::Packet*> batch(4);
  for (int tries = 0; got.empty() && tries < 100; ++tries) {
    const int n = rx->receive(rx_pool, batch.data(), 4);
    for (int i = 0; i < n; ++i) got.push_back(batch[static_cast<std::size_t>(i)]);
    if (n == 0) {
      pollfd pfd{rx->fd(), POLLIN, 0};
      (void)::poll(&pfd, 1, 10);
    }
  }
  REQUIRE(got.size() == 4);
  REQUIRE(rx->counters().gro_reads >= 1);
  // The socket is empty (one coalesced buffer held all 30), yet 26 are still to come.
  CHECK(rx->rx_buffered());
  while (rx->rx_buffered()) {
    const int n = rx->take_buffered(rx_pool, batch.data(), 4);
    REQUIRE(n > 0);
    for (int i = 0; i < n; ++i) got.push_back(batch[static_cast<std::size_t>(i)]);
  }
  CHECK(got.size() == 30);
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i]->data()[0] == static_cast<int>(i));
    got[i]->release();
  }
}

namespace {

// A unicast transport for member `self` of the members `names` (name@127.0.0.1:port each).
std::unique_ptr<UdpTransport> open_member(const std::string& self,
                                          const std::vector<std::pair<std::string, std::uint16_t>>& names) {
  TransportSpec spec;
  spec.plan.multicast = false;
  spec.plan.interface = "lo";
  spec.receive = true;
  for (const auto& [name, port] : names) {
    spec.members.push_back(name + "@127.0.0.1:" + std::to_string(port));
    if (name == self) spec.plan.port = port;
  }
  spec.self_name = self;
  std::unique_ptr<UdpTransport> t;
  const tmc::Status s = UdpTransport::open(spec, t);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  return t;
}

// One datagram to the transport's fan-out (every peer), its first byte `tag`.
void send_tag(UdpTransport& t, tmc::PacketPool& pool, std::uint8_t tag) {
  tmc::Packet* p = pool.alloc();
  REQUIRE(p != nullptr);
  p->off = 0;
  p->len = 100;
  std::memset(p->buf, 0, 100);
  p->buf[0] = tag;
  p->dst_ip = 0;
  REQUIRE(t.enqueue(p));
  REQUIRE(t.flush());
}

// The first bytes of what `t` receives until it has been quiet for 200 ms.
std::vector<int> receive_tags(UdpTransport& t, tmc::PacketPool& pool) {
  std::vector<int> tags;
  std::vector<tmc::Packet*> batch(8);
  for (;;) {
    const int n = t.receive(pool, batch.data(), 8);
    for (int i = 0; i < n; ++i) {
      tags.push_back(batch[static_cast<std::size_t>(i)]->data()[0]);
      batch[static_cast<std::size_t>(i)]->release();
    }
    if (n > 0) continue;
    pollfd pfd{t.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 200) <= 0) break;
  }
  return tags;
}

}  // namespace

TEST_CASE("transport: a unicast socket with one peer is connected to it and hears only it") {
  const std::uint16_t pa = free_port();
  const std::uint16_t pb = free_port();
  const std::uint16_t pc = free_port();
  auto a = open_member("a", {{"a", pa}, {"b", pb}});
  auto b = open_member("b", {{"a", pa}, {"b", pb}});
  CHECK(a->connected());
  CHECK(b->connected());
  {
    // Two peers: the socket sends with an address, to each.
    auto c = open_member("c", {{"a", pa}, {"b", pb}, {"c", pc}});
    CHECK_FALSE(c->connected());
  }
  tmc::PacketPool pool(2048, 64, 256);
  send_tag(*a, pool, 1);
  send_tag(*b, pool, 2);
  CHECK(receive_tags(*b, pool) == std::vector<int>{1});
  CHECK(receive_tags(*a, pool) == std::vector<int>{2});
  // A datagram from anyone but the peer is not handed to a connected socket.
  Sink stranger;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(pb);
  const std::uint8_t junk[4] = {9, 9, 9, 9};
  REQUIRE(::sendto(stranger.fd, junk, sizeof junk, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 4);
  send_tag(*a, pool, 3);
  CHECK(receive_tags(*b, pool) == std::vector<int>{3});
  CHECK(a->counters().send_errors == 0);
  CHECK(b->counters().receive_errors == 0);
}

TEST_CASE("transport: a connected socket whose peer is not running yet keeps working once it is") {
  const std::uint16_t pa = free_port();
  const std::uint16_t pb = free_port();
  auto a = open_member("a", {{"a", pa}, {"b", pb}});
  REQUIRE(a->connected());
  tmc::PacketPool pool(2048, 64, 256);
  // Nobody on b's port: the kernel answers "port unreachable", which a connected socket
  // reports on its next call, once.
  for (std::uint8_t i = 0; i < 3; ++i) send_tag(*a, pool, i);
  CHECK(receive_tags(*a, pool).empty());
  CHECK(a->counters().refused >= 1);
  CHECK(a->counters().receive_errors == 0);
  CHECK(a->counters().send_errors == 0);
  CHECK(a->counters().datagrams_sent == 3);
  auto b = open_member("b", {{"a", pa}, {"b", pb}});
  send_tag(*b, pool, 7);
  send_tag(*a, pool, 8);
  CHECK(receive_tags(*a, pool) == std::vector<int>{7});
  CHECK(receive_tags(*b, pool) == std::vector<int>{8});
}
