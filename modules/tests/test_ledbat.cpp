// congestion: ledbat over synthetic sequences of on_sent / on_acked / on_loss: it grows
// while the measured delay stays at its base, backs off when the delay rises past the
// target, halves on a loss at most once per RTT, never leaves its window bounds, and
// relearns the base delay after the base history has passed.
#include <doctest/doctest.h>

#include "ledbat/ledbat.hpp"

namespace {

using tmc::CongestionLimits;
using tmc::modules::LedbatController;
using tmc::modules::LedbatParams;

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kMss = 1000;

CongestionLimits limits() {
  CongestionLimits l;
  l.mss_bytes = kMss;
  l.initial_window_packets = 10;
  l.min_window_packets = 2;
  l.max_window_packets = 1000;
  return l;
}

// One RTT of traffic: send a window's worth, then ack it all with the given RTT sample,
// one mss per ack. Returns the time after that RTT.
std::uint64_t round_trip(LedbatController& c, std::uint64_t now, std::uint64_t rtt) {
  const std::uint64_t packets = c.window_bytes() / kMss;
  for (std::uint64_t i = 0; i < packets; ++i) c.on_sent(kMss, now);
  now += rtt;
  for (std::uint64_t i = 0; i < packets; ++i) c.on_acked(kMss, rtt, now);
  return now;
}

}  // namespace

TEST_CASE("ledbat: grows by about gain mss per RTT while the delay stays at its base") {
  LedbatController c(limits(), LedbatParams{});
  CHECK(c.name() == "ledbat");
  CHECK(c.window_bytes() == 10 * kMss);
  std::uint64_t now = 0;
  for (int r = 0; r < 20; ++r) now = round_trip(c, now, 40 * kMs);
  CHECK(c.base_delay_ns() == 40 * kMs);
  CHECK(c.queuing_delay_ns() == 0);
  // 20 RTTs at zero queuing delay, gain 1: about 20 mss more (one per window acked).
  CHECK(c.window_bytes() >= 28 * kMss);
  CHECK(c.window_bytes() <= 31 * kMss);
}

TEST_CASE("ledbat: backs off when the delay rises past the target and holds near it") {
  LedbatParams p;
  p.target_ns = 25 * kMs;
  LedbatController c(limits(), p);
  std::uint64_t now = 0;
  for (int r = 0; r < 30; ++r) now = round_trip(c, now, 40 * kMs);
  const std::uint64_t grown = c.window_bytes();
  // Another flow fills the queue: RTT 40 ms + 75 ms queuing, three times the target.
  for (int r = 0; r < 5; ++r) now = round_trip(c, now, 115 * kMs);
  CHECK(c.queuing_delay_ns() == 75 * kMs);
  const std::uint64_t backed_off = c.window_bytes();
  CHECK(backed_off < grown);
  CHECK(backed_off <= grown - 4 * kMss);  // about one mss per RTT, capped by max_decrease
  // Queuing exactly at the target: the window stays where it is.
  for (int r = 0; r < 5; ++r) now = round_trip(c, now, 65 * kMs);
  CHECK(c.window_bytes() == backed_off);
  // Half the target: it grows again, at half the rate.
  for (int r = 0; r < 10; ++r) now = round_trip(c, now, 52 * kMs);
  CHECK(c.window_bytes() > backed_off);
  CHECK(c.window_bytes() <= backed_off + 6 * kMss);
}

TEST_CASE("ledbat: a loss halves the window once per RTT and a timeout drops it to the minimum") {
  LedbatController c(limits(), LedbatParams{});
  std::uint64_t now = 0;
  for (int r = 0; r < 30; ++r) now = round_trip(c, now, 40 * kMs);
  const std::uint64_t before = c.window_bytes();
  c.on_loss(now);
  CHECK(c.window_bytes() == before / 2);
  c.on_loss(now + 10 * kMs);  // same window's losses: one event
  CHECK(c.window_bytes() == before / 2);
  c.on_loss(now + 50 * kMs);  // a later RTT: a new event
  CHECK(c.window_bytes() == before / 4);
  c.on_timeout(now + 200 * kMs);
  CHECK(c.window_bytes() == 2 * kMss);
  // Never below the minimum, whatever the delay.
  for (int r = 0; r < 50; ++r) now = round_trip(c, now + 300 * kMs, 900 * kMs);
  CHECK(c.window_bytes() == 2 * kMss);
}

TEST_CASE("ledbat: never above the maximum window") {
  CongestionLimits l = limits();
  l.max_window_packets = 12;
  LedbatController c(l, LedbatParams{});
  std::uint64_t now = 0;
  for (int r = 0; r < 50; ++r) now = round_trip(c, now, 10 * kMs);
  CHECK(c.window_bytes() == 12 * kMss);
}

TEST_CASE("ledbat: the base delay is forgotten after the base history, so a longer path is relearnt") {
  LedbatParams p;
  p.base_history = 3;
  p.base_interval_ns = 1000 * kMs;
  LedbatController c(limits(), p);
  std::uint64_t now = 0;
  for (int r = 0; r < 10; ++r) now = round_trip(c, now, 20 * kMs);
  CHECK(c.base_delay_ns() == 20 * kMs);
  // The route changes: every RTT is now 60 ms. At first that reads as queuing delay ...
  now = round_trip(c, now, 60 * kMs);
  CHECK(c.queuing_delay_ns() == 40 * kMs);
  // ... until the intervals that saw 20 ms have left the history.
  for (int r = 0; r < 60; ++r) now = round_trip(c, now, 60 * kMs);
  CHECK(c.base_delay_ns() == 60 * kMs);
  CHECK(c.queuing_delay_ns() == 0);
}

TEST_CASE("ledbat: the current delay is the least of the last few samples") {
  LedbatParams p;
  p.current_filter = 4;
  LedbatController c(limits(), p);
  c.on_acked(kMss, 50 * kMs, 1 * kMs);
  c.on_acked(kMss, 90 * kMs, 2 * kMs);
  c.on_acked(kMss, 80 * kMs, 3 * kMs);
  CHECK(c.current_delay_ns() == 50 * kMs);
  c.on_acked(kMss, 70 * kMs, 4 * kMs);
  c.on_acked(kMss, 75 * kMs, 5 * kMs);  // the 50 ms sample leaves the filter
  CHECK(c.current_delay_ns() == 70 * kMs);
  CHECK(c.base_delay_ns() == 50 * kMs);
  // An ack without a sample (a retransmitted packet) changes neither.
  c.on_acked(kMss, 0, 6 * kMs);
  CHECK(c.current_delay_ns() == 70 * kMs);
}
