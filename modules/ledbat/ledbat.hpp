// congestion: ledbat — a delay-based congestion controller that yields to other traffic
// (LEDBAT, RFC 6817, adapted to the round-trip samples congestion.window reports).
//
// LEDBAT aims for a fixed amount of queuing delay it adds itself (`target_ns`), far below
// what a loss-based controller fills a bottleneck queue with: as soon as another flow
// builds a queue, the measured delay rises above the target and LEDBAT shrinks its window,
// leaving the bottleneck to that flow. With no competing traffic it grows until its own
// queue reaches the target.
//
// Adaptation to libTMC: RFC 6817 measures one-way delay from timestamps in every packet;
// a CongestionController sees only the RTT samples of acknowledged packets (on_acked's
// rtt_ns, never taken from a retransmission). An RTT holds the one-way delay of both
// directions, and the acknowledgment direction carries little traffic, so its variation
// is the sender's queue: the controller runs RFC 6817's algorithm on RTT samples.
//
//   base delay     the least RTT seen over the last `base_history` intervals of
//                  `base_interval_ns` virtual time each (RFC 6817: 10 one-minute buckets), so
//                  a route change that lengthens the path is learnt within that time;
//   current delay  the least of the last `current_filter` samples (filters noise);
//   queuing delay  current - base;
//   on_acked       cwnd += gain * (target - queuing) / target * bytes * mss / cwnd: growth of
//                  at most `gain` mss per RTT while below the target, proportional decrease
//                  above it, bounded by `max_decrease` mss per RTT worth of acked bytes;
//   on_loss        cwnd *= loss_factor (0.5), at most once per RTT;
//   on_timeout     cwnd = the minimum window;
//   always         min window <= cwnd <= max window (CongestionLimits).
//
// Like every controller: no clock (time is the now_ns argument), no randomness, noexcept
// and no allocation after construction.
#pragma once

#include <cstdint>
#include <memory>

#include "tmc/congestion.hpp"

namespace tmc::modules {

/// LEDBAT's own tunables (RFC 6817 section 3.3 names in brackets).
struct LedbatParams {
  std::uint64_t target_ns = 25'000'000;        ///< queuing delay aimed for [TARGET] (RFC: <= 100 ms)
  double gain = 1.0;                           ///< mss per RTT of growth at zero delay [GAIN]
  double max_decrease = 1.0;                   ///< per-ack decrease cap, as a multiple of `gain`'s step
  double loss_factor = 0.5;                    ///< window multiplier on a loss
  std::uint32_t base_history = 10;             ///< intervals the base delay is the minimum over [BASE_HISTORY]
  std::uint64_t base_interval_ns = 60'000'000'000;  ///< one interval: a minute of virtual time
  std::uint32_t current_filter = 4;            ///< samples the current delay is the minimum of [CURRENT_FILTER]
};

class LedbatController final : public CongestionController {
 public:
  static constexpr std::uint32_t kMaxHistory = 32;
  static constexpr std::uint32_t kMaxFilter = 16;

  LedbatController(const CongestionLimits& limits, const LedbatParams& params) noexcept;

  void on_sent(std::uint64_t bytes, std::uint64_t now_ns) noexcept override;
  void on_acked(std::uint64_t bytes, std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept override;
  void on_loss(std::uint64_t now_ns) noexcept override;
  void on_timeout(std::uint64_t now_ns) noexcept override;
  [[nodiscard]] std::uint64_t window_bytes() const noexcept override;
  [[nodiscard]] std::string_view name() const noexcept override { return "ledbat"; }

  /// The least RTT over the base history (0 before the first sample).
  [[nodiscard]] std::uint64_t base_delay_ns() const noexcept;
  /// The least of the last current_filter samples (0 before the first sample).
  [[nodiscard]] std::uint64_t current_delay_ns() const noexcept;
  /// current - base (0 before the first sample).
  [[nodiscard]] std::uint64_t queuing_delay_ns() const noexcept { return current_delay_ns() - base_delay_ns(); }

 private:
  void add_sample(std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept;
  void set_cwnd(double w) noexcept;

  LedbatParams p_;
  double mss_;
  double min_bytes_;
  double max_bytes_;
  double cwnd_;
  // Base history: one minimum per interval, a ring of base_history entries; the newest
  // interval is base_[base_pos_] and started at base_started_ns_.
  std::uint64_t base_[kMaxHistory] = {};
  std::uint32_t base_pos_ = 0;
  std::uint32_t base_used_ = 0;
  std::uint64_t base_started_ns_ = 0;
  // Current filter: the last current_filter samples.
  std::uint64_t recent_[kMaxFilter] = {};
  std::uint32_t recent_pos_ = 0;
  std::uint32_t recent_used_ = 0;
  std::uint64_t last_rtt_ns_ = 0;  ///< the latest sample (for the once-per-RTT loss rule)
  bool had_loss_ = false;
  std::uint64_t recovery_until_ns_ = 0;
};

/// A LEDBAT controller with the given limits and tunables. Cold (allocates once).
std::unique_ptr<CongestionController> make_ledbat_controller(const CongestionLimits& limits,
                                                             const LedbatParams& params = {});

}  // namespace tmc::modules
