// Inline receive: a receive() blocked on an empty queue reads the socket itself while the
// loop stands aside (see "Inline receive" in src/runtime/channel/channel_core.hpp). These tests
// check that nothing the loop used to do is lost meanwhile: messages, stage timers,
// try_receive(), sends from other threads, update() and close() from other threads.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <doctest/doctest.h>
#include <optional>
#include <thread>
#include <vector>

#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"

using namespace std::chrono_literals;
using tmc::test::group_for;
using tmc::test::manifest_for;
using tmc::test::port_for;

namespace {

// Offsets 22 and 23 of this test process (test_channel.cpp uses 0-21).
constexpr int kA = 22;
constexpr int kB = 23;

/// A plain socket that joins group:port on loopback and captures what a channel sends.
class Tap {
 public:
  Tap(const std::string& group, std::int64_t port) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd_ >= 0);
    const int one = 1;
    (void)setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    (void)setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    timeval tv{3, 0};
    (void)setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, group.c_str(), &a.sin_addr);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    ip_mreq mreq{};
    mreq.imr_multiaddr = a.sin_addr;
    inet_pton(AF_INET, "127.0.0.1", &mreq.imr_interface);
    REQUIRE(setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) == 0);
  }
  ~Tap() { ::close(fd_); }
  Tap(const Tap&) = delete;
  Tap& operator=(const Tap&) = delete;

  /// The next datagram, or an empty vector after 3 s without one.
  std::vector<std::uint8_t> next() {
    std::vector<std::uint8_t> buf(65536);
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    buf.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return buf;
  }

 private:
  int fd_ = -1;
};

/// Send a captured datagram to group:port on loopback.
void inject(const std::string& group, std::int64_t port, const std::vector<std::uint8_t>& d) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  in_addr lo{};
  inet_pton(AF_INET, "127.0.0.1", &lo);
  (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, group.c_str(), &to.sin_addr);
  CHECK(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
        static_cast<ssize_t>(d.size()));
  ::close(fd);
}

}  // namespace

TEST_CASE("inline receive: a blocked receive() gets every message; sends and try_receive() keep working") {
  auto tx = tmc::Channel::open(manifest_for("inline-rx", kA, "tx"));
  auto rx = tmc::Channel::open(manifest_for("inline-rx", kA, "rx"));
  constexpr int kCount = 60;
  std::vector<std::string> got;
  std::thread receiver([&] {
    while (got.size() < static_cast<std::size_t>(kCount)) {
      auto m = rx.receive(3s);
      if (!m) break;
      got.emplace_back(m->text());
    }
  });
  // Spaced out, so the receiver is mostly asleep in receive() when a message arrives.
  // Meanwhile another thread sends on the receiving channel, the other way.
  std::thread back([&] {
    for (int i = 0; i < 20; ++i) {
      CHECK(rx.send("back" + std::to_string(i)));
      std::this_thread::sleep_for(1ms);
    }
  });
  for (int i = 0; i < kCount; ++i) {
    REQUIRE(tx.send("m" + std::to_string(i)));
    std::this_thread::sleep_for(500us);
  }
  receiver.join();
  back.join();
  REQUIRE(got.size() == static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) CHECK(got[static_cast<std::size_t>(i)] == "m" + std::to_string(i));
  const auto texts = tmc::test::receive_n(tx, 20);
  REQUIRE(texts.size() == 20);
  CHECK(texts.front() == "back0");
  CHECK(texts.back() == "back19");

  // Right after receive() returned the loop may still stand aside: try_receive() reads
  // the socket itself then, and the loop takes over again soon after either way.
  REQUIRE(tx.send("late"));
  std::optional<tmc::Message> late;
  for (int i = 0; i < 3000 && !late; ++i) {
    late = rx.try_receive();
    if (!late) std::this_thread::sleep_for(1ms);
  }
  REQUIRE(late.has_value());
  CHECK(late->text() == "late");

  const auto s = rx.stats();
  CHECK(s.counter("shell.inline_received") > 0);
  CHECK(s.messages_delivered == static_cast<std::uint64_t>(kCount + 1));
  std::uint64_t drops = 0;
  for (std::uint64_t d : s.drops) drops += d;
  CHECK(s.datagrams_received == s.messages_delivered + s.own_datagrams + drops);

  // Without inline receive the same exchange goes through the loop.
  tmc::OpenOptions off;
  off.inline_receive = false;
  auto rx2 = tmc::Channel::open(manifest_for("inline-rx", kA, "rx2"), off);
  REQUIRE(tx.send("via loop"));
  auto m = rx2.receive(3s);
  REQUIRE(m.has_value());
  CHECK(m->text() == "via loop");
  CHECK(rx2.stats().counter("shell.inline_received") == 0);
}

TEST_CASE("inline receive: stage timers fire while a receiver is blocked (strict ordering's hold timeout)") {
  // tx sends on group B (send-only: it binds nothing); a tap captures its datagrams, and
  // the test hands them to rx on group A with one missing, so rx's strict ordering holds
  // the next one until its hold timeout.
  tmc::Manifest m = manifest_for("inline-hold", kB, "tx");
  m.point_to_point_ordering = tmc::OrderingMode::strict;
  m.ordering_hold_us = 20'000;
  m.duplexity = tmc::Duplexity::send_only;
  Tap tap(group_for(kB), port_for(kB));
  auto tx = tmc::Channel::open(m);
  m.name = "rx";
  m.duplexity = tmc::Duplexity::full;
  m.group = group_for(kA);
  m.port = port_for(kA);
  auto rx = tmc::Channel::open(m);

  std::vector<std::vector<std::uint8_t>> d;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(tx.send("m" + std::to_string(i)));
    d.push_back(tap.next());
    REQUIRE_FALSE(d.back().empty());
  }
  inject(group_for(kA), port_for(kA), d[0]);
  auto first = rx.receive(3s);
  REQUIRE(first.has_value());
  CHECK(first->text() == "m0");

  std::optional<tmc::Message> held;
  std::thread receiver([&] { held = rx.receive(5s); });
  std::this_thread::sleep_for(20ms);   // let the receiver block (not asserted)
  inject(group_for(kA), port_for(kA), d[2]);  // m1 is missing: m2 is held
  receiver.join();
  REQUIRE(held.has_value());
  CHECK(held->text() == "m2");
  const auto s = rx.stats();
  CHECK(s.counter("ordering.held") == 1);
  CHECK(s.counter("ordering.timeout_skips") == 1);
}

TEST_CASE("inline receive: update() and close() from other threads reach a blocked receive()") {
  auto rx = tmc::Channel::open(manifest_for("inline-wake", kA, "rx"));
  auto tx = tmc::Channel::open(manifest_for("inline-wake", kB, "tx"));

  // update() moves the channel to another socket while a receiver sleeps on the old one.
  std::optional<tmc::Message> got;
  std::thread receiver([&] { got = rx.receive(5s); });
  std::this_thread::sleep_for(20ms);
  REQUIRE(rx.update(tmc::Value(tmc::Value::Map{{"group", group_for(kB)}, {"port", port_for(kB)}})));
  REQUIRE(tx.send("after update"));
  receiver.join();
  REQUIRE(got.has_value());
  CHECK(got->text() == "after update");

  // close() wakes a receiver that would otherwise wait 30 s.
  tmc::Status st = tmc::Status::ok();
  std::atomic<bool> returned{false};
  std::thread blocked([&] {
    tmc::Message msg;
    st = rx.receive(msg, 30s);
    returned.store(true);
  });
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(returned.load());
  rx.close();
  blocked.join();
  CHECK(st.code() == tmc::Code::CLOSED);
}

namespace {

/// CPU time (user + system) the calling thread has used so far, in milliseconds.
double thread_cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

}  // namespace

TEST_CASE("inline receive: an idle receive() sleeps; a handler set while it waits gets the messages") {
  auto rx = tmc::Channel::open(manifest_for("inline-idle", kA, "rx"));
  auto tx = tmc::Channel::open(manifest_for("inline-idle", kA, "tx"));

  // The receiving thread's CPU time while receive() waits 400 ms for nothing: a receiver
  // that polled the socket would spend most of it, one that sleeps almost none.
  double cpu_ms = -1;
  std::optional<tmc::Message> none;
  std::thread idle([&] {
    const double before = thread_cpu_ms();
    none = rx.receive(400ms);
    cpu_ms = thread_cpu_ms() - before;
  });
  idle.join();
  CHECK_FALSE(none.has_value());
  MESSAGE("CPU time of an idle receive(400ms): " << cpu_ms << " ms");
  CHECK(cpu_ms >= 0);
  CHECK(cpu_ms < 200);

  // A handler set while a receiver waits on the socket: the receiver steps back and the
  // loop reads for the handler (a message sent meanwhile may still reach the receiver,
  // so send until the handler has one).
  std::atomic<int> handled{0};
  std::optional<tmc::Message> waited;
  std::thread receiver([&] { waited = rx.receive(1500ms); });
  std::this_thread::sleep_for(5ms);  // let it block (not asserted)
  rx.on_message([&](tmc::Message&&) { handled.fetch_add(1); });
  for (int i = 0; i < 3000 && handled.load() == 0; ++i) {
    if (i % 50 == 0) REQUIRE(tx.send("to handler"));
    std::this_thread::sleep_for(1ms);
  }
  receiver.join();
  CHECK(handled.load() > 0);
  rx.on_message(nullptr);
  rx.close();
}

TEST_CASE("inline receive: update() and close() reach a receive() that is busy in blocking reads") {
  auto rx = tmc::Channel::open(manifest_for("inline-hot", kA, "rx"));
  auto tx = tmc::Channel::open(manifest_for("inline-hot", kB, "tx"));
  // rx's own datagrams come back to its socket and deliver nothing, so a receiver keeps
  // reading them in blocking reads (hot waits) instead of falling back to ppoll().
  std::atomic<bool> stop{false};
  std::thread chatter([&] {
    while (!stop.load()) {
      (void)rx.send("own");
      std::this_thread::sleep_for(300us);
    }
  });

  std::optional<tmc::Message> got;
  std::thread receiver([&] { got = rx.receive(5s); });
  std::this_thread::sleep_for(20ms);
  REQUIRE(rx.update(tmc::Value(tmc::Value::Map{{"group", group_for(kB)}, {"port", port_for(kB)}})));
  REQUIRE(tx.send("after update"));
  receiver.join();
  REQUIRE(got.has_value());
  CHECK(got->text() == "after update");

  tmc::Status st = tmc::Status::ok();
  std::thread blocked([&] {
    tmc::Message msg;
    st = rx.receive(msg, 30s);
  });
  std::this_thread::sleep_for(20ms);
  rx.close();
  blocked.join();
  CHECK(st.code() == tmc::Code::CLOSED);
  stop.store(true);
  chatter.join();
}
