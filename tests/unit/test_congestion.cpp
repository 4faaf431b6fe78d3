// Congestion control: the built-in controllers (tmc/congestion.hpp) and the congestion.window
// stage driven through a pipeline with forged reliable packets and acks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "../support/recording_sink.hpp"
#include "primitives/congestion/window.hpp"
#include "primitives/reliability/ack_format.hpp"
#include "tmc/congestion.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kMss = 1000;

CongestionLimits limits(std::uint32_t initial = 10, std::uint32_t min_w = 2, std::uint32_t max_w = 100000) {
  CongestionLimits l;
  l.mss_bytes = kMss;
  l.initial_window_packets = initial;
  l.min_window_packets = min_w;
  l.max_window_packets = max_w;
  return l;
}

}  // namespace

TEST_CASE("congestion: make_congestion_controller knows none, aimd and cubic only") {
  CHECK(make_congestion_controller("none", limits())->name() == "none");
  CHECK(make_congestion_controller("aimd", limits())->name() == "aimd");
  CHECK(make_congestion_controller("cubic", limits())->name() == "cubic");
  CHECK(make_congestion_controller("bbr", limits()) == nullptr);
  auto none = make_congestion_controller("none", limits());
  none->on_loss(1);
  CHECK(none->window_bytes() == ~std::uint64_t{0});
}

TEST_CASE("congestion aimd: slow start doubles per window, a loss halves, avoidance adds one mss per window") {
  auto c = make_congestion_controller("aimd", limits());
  CHECK(c->window_bytes() == 10 * kMss);
  c->on_acked(10 * kMss, 10 * kMs, 10 * kMs);  // one window acknowledged
  CHECK(c->window_bytes() == 20 * kMss);
  c->on_acked(20 * kMss, 10 * kMs, 20 * kMs);
  CHECK(c->window_bytes() == 40 * kMss);
  c->on_loss(25 * kMs);
  CHECK(c->window_bytes() == 20 * kMss);
  // Congestion avoidance: a whole window of acks adds one mss, in any number of pieces.
  for (int i = 0; i < 20; ++i) c->on_acked(kMss, 10 * kMs, 40 * kMs + static_cast<std::uint64_t>(i));
  CHECK(c->window_bytes() == 21 * kMss);
  c->on_acked(21 * kMss, 10 * kMs, 50 * kMs);
  CHECK(c->window_bytes() == 22 * kMss);
}

TEST_CASE("congestion aimd: losses within one RTT halve the window once") {
  auto c = make_congestion_controller("aimd", limits(64));
  c->on_acked(kMss, 10 * kMs, 1 * kMs);  // an RTT sample of 10 ms
  const std::uint64_t w = c->window_bytes();
  c->on_loss(100 * kMs);
  CHECK(c->window_bytes() == w / 2);
  c->on_loss(105 * kMs);  // same RTT: same congestion event
  c->on_loss(109 * kMs);
  CHECK(c->window_bytes() == w / 2);
  c->on_loss(111 * kMs);  // the next RTT: a new event
  CHECK(c->window_bytes() == w / 4);
}

TEST_CASE("congestion aimd: the window stays within min and max; a timeout drops it to the minimum") {
  auto c = make_congestion_controller("aimd", limits(10, 4, 50));
  for (std::uint64_t i = 0; i < 100; ++i) c->on_acked(100 * kMss, 1 * kMs, i * kMs);
  CHECK(c->window_bytes() == 50 * kMss);
  for (std::uint64_t i = 0; i < 20; ++i) c->on_loss(1000 * kMs + i * 10 * kMs);
  CHECK(c->window_bytes() == 4 * kMss);
  auto d = make_congestion_controller("aimd", limits(30, 3, 50));
  d->on_timeout(5 * kMs);
  CHECK(d->window_bytes() == 3 * kMss);
  // Limits that contradict each other are clamped, never trusted: initial above max.
  auto e = make_congestion_controller("aimd", limits(500, 2, 40));
  CHECK(e->window_bytes() == 40 * kMss);
}

TEST_CASE("congestion cubic: after a loss the window is 0.7 W_max and follows a concave then convex curve") {
  auto c = make_congestion_controller("cubic", limits(100));
  // A long RTT keeps Reno's growth (the TCP-friendly region) below the cubic curve.
  const std::uint64_t rtt = 100 * kMs;
  c->on_acked(kMss, rtt, 1 * kMs);
  const double w_max = static_cast<double>(c->window_bytes()) / kMss;  // ~101 mss
  c->on_loss(10 * kMs);
  CHECK(static_cast<double>(c->window_bytes()) / kMss == doctest::Approx(0.7 * w_max).epsilon(0.02));
  // K = cbrt(W_max (1 - beta) / C) seconds: about 4.2 s for W_max = 101.
  const double k_s = std::cbrt(w_max * 0.3 / 0.4);
  // Feed a window of acks every RTT for 2K seconds and sample the window.
  std::vector<double> w;  // per RTT
  std::uint64_t now = 20 * kMs;
  const auto rtts = static_cast<std::size_t>(2.0 * k_s / 0.100);
  for (std::size_t i = 0; i < rtts; ++i) {
    c->on_acked(c->window_bytes(), rtt, now);
    w.push_back(static_cast<double>(c->window_bytes()) / kMss);
    now += rtt;
  }
  const auto at = [&](double s) { return w[std::min(w.size() - 1, static_cast<std::size_t>(s / 0.100))]; };
  // Near K the window plateaus around W_max ...
  CHECK(at(k_s) == doctest::Approx(w_max).epsilon(0.05));
  // ... growing fast before (concave), slowly around K, and fast again after (convex).
  const double early = at(0.3 * k_s) - at(0.1 * k_s);
  const double plateau = at(1.1 * k_s) - at(0.9 * k_s);
  const double late = at(1.9 * k_s) - at(1.7 * k_s);
  CHECK(early > 2 * plateau);
  CHECK(late > 2 * plateau);
  CHECK(at(1.9 * k_s) > w_max * 1.1);
}

TEST_CASE("congestion cubic: min and max clamps hold") {
  auto c = make_congestion_controller("cubic", limits(10, 5, 40));
  for (std::uint64_t i = 0; i < 50; ++i) c->on_loss(i * 200 * kMs);
  CHECK(c->window_bytes() == 5 * kMss);
  for (std::uint64_t i = 0; i < 2000; ++i) c->on_acked(50 * kMss, 10 * kMs, 20'000 * kMs + i * 10 * kMs);
  CHECK(c->window_bytes() == 40 * kMss);
  c->on_timeout(100'000 * kMs);
  CHECK(c->window_bytes() == 5 * kMss);
}

// --- the stage ---------------------------------------------------------------------------

namespace {

constexpr std::uint32_t kSelf = 100;
constexpr std::uint32_t kSelfEpoch = 1000;
constexpr std::uint32_t kPeer = 200;
constexpr std::uint32_t kPeerEpoch = 5;

struct Sender {
  PacketPool pool{4096, 64, 1 << 14};
  Endpoint ep;
  explicit Sender(std::initializer_list<std::pair<const std::string, std::string>> params)
      : ep(pool, make_plan({stage("congestion.window", params)}), make_env(kSelf, kSelfEpoch)) {
    ep->start(0);
  }
  detail::CongestionWindowStage& st() { return dynamic_cast<detail::CongestionWindowStage&>(ep->stage(0)); }
  // The window and what fills it, read as stats() and the stat file read them.
  std::uint64_t window() { return static_cast<std::uint64_t>(ep->gauges().get("congestion.window_bytes")); }
  std::uint64_t in_flight() { return static_cast<std::uint64_t>(ep->gauges().get("congestion.in_flight_bytes")); }

  // A reliable data message of `payload` bytes with reliable sequence number `rseq`.
  void send(std::uint64_t rseq, std::uint32_t payload, std::uint64_t now_ns,
            wire::Kind kind = wire::Kind::data) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(payload);
    std::memset(p->payload(), 'x', payload);
    p->kind = kind;
    p->flags = wire::kFlagReliable;
    detail::encode_rel(p->push_ext(wire::Ext::rel, 8), {.rseq = rseq, .trail = 1});
    ep->send(p, now_ns);
  }
  void ack(std::uint64_t cum, std::uint64_t sack, std::uint64_t now_ns, std::uint32_t from = kPeer,
           std::uint32_t epoch = kPeerEpoch) {
    ep->receive(control(wire::Kind::ack, from, epoch, cum, sack), now_ns);
  }
  void nack(std::uint64_t first, std::uint64_t now_ns) {
    ep->receive(control(wire::Kind::nack, kPeer, kPeerEpoch, first, 1), now_ns);
  }
  Packet* control(wire::Kind kind, std::uint32_t from, std::uint32_t epoch, std::uint64_t a, std::uint64_t b) {
    Packet* s = pool.alloc();
    REQUIRE(s != nullptr);
    s->reset_for_send(0);
    s->kind = kind;
    s->channel = wire::channel_hash("test", 4);
    s->sender = from;
    s->epoch = epoch;
    if (kind == wire::Kind::ack) {
      detail::encode_ack(s->push_ext(wire::Ext::ack, 24), {kSelf, kSelfEpoch, a, b});
    } else {
      detail::encode_nack(s->push_ext(wire::Ext::ack, 20), {kSelf, kSelfEpoch, a, static_cast<std::uint32_t>(b)});
    }
    s->seal();
    Packet* r = as_received(pool, *s);
    s->release();
    return r;
  }
  std::size_t out() const { return ep.sink.transmitted.size(); }
  std::uint64_t c(const char* name) { return ep->counters().get(name); }
};

}  // namespace

TEST_CASE("congestion.window: with nobody receiving the window is open") {
  Sender s({{"initial_window_packets", "2"}, {"mss_bytes", "1000"}});
  for (std::uint64_t r = 1; r <= 50; ++r) s.send(r, 900, 0);
  CHECK(s.out() == 50);
  CHECK(s.ep->held_packets() == 0);
}

TEST_CASE("congestion.window: reliable data waits when the window is full and leaves as the receiver acks") {
  Sender s({{"initial_window_packets", "4"}, {"mss_bytes", "1000"}, {"algorithm", "aimd"}});
  s.ep->group().heard("r1", kPeer, kPeerEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 10; ++r) s.send(r, 900, 1 * kMs);  // ~934-byte datagrams
  CHECK(s.out() == 4);
  CHECK(s.ep->held_packets() == 6);
  CHECK(s.c("congestion.window_waits") == 6);
  // Unreliable packets and other kinds are never held.
  Packet* p = s.pool.alloc();
  p->reset_for_send(10);
  s.ep->send(p, 1 * kMs);
  CHECK(s.out() == 5);
  // The receiver acks the first two: slow start grows the window by what was acked.
  s.ack(2, 0, 11 * kMs);
  CHECK(s.st().floor_rseq() == 2);
  CHECK(s.window() == 4000 + 2 * 934);
  CHECK(s.out() == 5 + 4);  // in flight: 3..8
  CHECK(s.c("congestion.acked_bytes") == 2 * 934);
  s.ack(8, 0, 21 * kMs);
  CHECK(s.ep->held_packets() == 0);
  CHECK(s.out() == 11);
  // A retransmission passes at once and gives no RTT sample.
  s.send(9, 900, 22 * kMs);
  CHECK(s.out() == 12);
  CHECK(s.c("congestion.retransmits_passed") == 1);
}

TEST_CASE("congestion.window: NACKs and SACK holes are losses, once per recovery") {
  Sender s({{"initial_window_packets", "40"}, {"mss_bytes", "1000"}});
  s.ep->group().heard("r1", kPeer, kPeerEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 20; ++r) s.send(r, 900, 0);
  s.ack(1, 0, 10 * kMs);
  const std::uint64_t w = s.window();
  s.nack(2, 11 * kMs);
  CHECK(s.c("congestion.losses") == 1);
  CHECK(s.window() == w / 2);
  s.nack(3, 12 * kMs);  // the same event (at or below the recovery point)
  CHECK(s.c("congestion.losses") == 1);
  // New data, and a hole above the recovery point with three received above it.
  for (std::uint64_t r = 21; r <= 30; ++r) s.send(r, 900, 500 * kMs);
  s.ack(20, 0, 510 * kMs);
  s.ack(20, 0b1110, 600 * kMs);  // 21 missing, 23..25 received
  CHECK(s.c("congestion.sack_holes") == 1);
  CHECK(s.c("congestion.losses") == 2);
  // Reordering (only one received above the hole) is not a loss.
  s.ack(22, 0b1, 700 * kMs);
  CHECK(s.c("congestion.sack_holes") == 1);
}

TEST_CASE("congestion.window: multicast follows the slowest acking receiver") {
  Sender s({{"initial_window_packets", "4"}, {"mss_bytes", "1000"}});
  s.ep->group().heard("r1", kPeer, kPeerEpoch, true, 0);
  s.ep->group().heard("r2", kPeer + 1, kPeerEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 12; ++r) s.send(r, 900, 0);
  CHECK(s.out() == 4);
  s.ack(1, 0, 10 * kMs, kPeer + 1);
  s.ack(4, 0, 10 * kMs, kPeer);
  CHECK(s.st().floor_rseq() == 1);  // r2 is behind
  s.ack(4, 0, 12 * kMs, kPeer + 1);
  CHECK(s.st().floor_rseq() == 4);
  CHECK(s.out() == 12);
  // A receiver that stops acking is left behind after the stall timeout.
  s.ack(6, 0, 20 * kMs, kPeer);
  for (std::uint64_t r = 13; r <= 20; ++r) s.send(r, 900, 20 * kMs);
  REQUIRE(s.ep->held_packets() > 0);
  const std::uint64_t before = s.st().floor_rseq();
  s.ep->tick(20 * kMs + 2'000 * kMs);
  CHECK(s.c("congestion.stalls") >= 1);
  CHECK(s.c("congestion.laggards") == 1);
  CHECK(s.st().floor_rseq() == 6);
  CHECK(before == 4);
}

TEST_CASE("congestion.window: parameters are checked") {
  PacketPool pool(2048, 4, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  // Each value outside its declared range or words: the registry names them all.
  const Status st = Pipeline::build(
      make_plan({stage("congestion.window", {{"algorithm", "vegas"}, {"mss_bytes", "10"}})}), Registry::builtin(),
      make_env(1), pool, sink, pl);
  CHECK(!st.is_ok());
  CHECK(st.to_string().find("parameter 'algorithm' must be one of none, aimd, cubic, got \"vegas\"") !=
        std::string::npos);
  CHECK(st.to_string().find("parameter 'mss_bytes' must be in 64..65507, got 10") != std::string::npos);
  // Values valid one by one that disagree with each other: the stage says so.
  const Status both = Pipeline::build(
      make_plan({stage("congestion.window", {{"min_window_packets", "10"}, {"max_window_packets", "5"}})}),
      Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(!both.is_ok());
  CHECK(both.to_string().find("'max_window_packets' (5) must not be below 'min_window_packets' (10)") !=
        std::string::npos);
}

TEST_CASE("congestion.window: a retransmission goes out at once, ahead of waiting data, and is not charged again") {
  Sender s({{"initial_window_packets", "2"}, {"min_window_packets", "2"}, {"mss_bytes", "1000"}});
  s.ep->group().heard("r1", kPeer, kPeerEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 6; ++r) s.send(r, 900, 1 * kMs);
  REQUIRE(s.out() == 2);  // rseq 1, 2 in flight; 3..6 wait
  const std::uint64_t in_flight = s.in_flight();
  s.send(1, 900, 5 * kMs);  // reliability repairs rseq 1
  CHECK(s.out() == 3);
  CHECK(s.in_flight() == in_flight);  // still counted once
  CHECK(s.ep->held_packets() == 4);
  CHECK(s.c("congestion.retransmits_passed") == 1);
  // A repair of a packet still waiting here is released: the original goes in order.
  s.send(5, 900, 6 * kMs);
  CHECK(s.out() == 3);
  CHECK(s.c("congestion.retransmits_absorbed") == 1);
  // Once acknowledged, a late repair of rseq 1 adds nothing in flight.
  s.ack(2, 0, 10 * kMs);
  const std::uint64_t after_ack = s.in_flight();
  s.send(1, 900, 11 * kMs);
  CHECK(s.in_flight() == after_ack);
  s.ack(6, 0, 20 * kMs);
  CHECK(s.ep->held_packets() == 0);
  CHECK(s.in_flight() == 0);
}
