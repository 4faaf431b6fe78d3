// The built-in congestion controllers: none, aimd (Reno-like) and cubic (RFC 8312).
//
// All three work in bytes of datagrams and take time only from their arguments. Before the
// first RTT sample they assume kDefaultRttNs, which only matters for "at most one window
// reduction per RTT" and for CUBIC's clock.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tmc/congestion.hpp"

namespace tmc {
namespace {

constexpr std::uint64_t kDefaultRttNs = 100'000'000;  // 100 ms: a guess until measured

// What the window algorithms share: the clamps, the smoothed RTT and the once-per-RTT rule.
class Base : public CongestionController {
 protected:
  explicit Base(const CongestionLimits& l) noexcept
      : mss_(std::max<std::uint64_t>(1, l.mss_bytes)),
        min_bytes_(mss_ * std::max<std::uint64_t>(1, l.min_window_packets)),
        max_bytes_(std::max(min_bytes_, mss_ * std::uint64_t{l.max_window_packets})) {}

  [[nodiscard]] std::uint64_t clamp(std::uint64_t w) const noexcept { return std::clamp(w, min_bytes_, max_bytes_); }

  void sample(std::uint64_t rtt_ns) noexcept {
    if (rtt_ns == 0) return;
    // RFC 6298's smoothing (alpha = 1/8); the variance is not needed here.
    srtt_ns_ = srtt_ns_ == 0 ? rtt_ns : (7 * srtt_ns_ + rtt_ns) / 8;
  }
  [[nodiscard]] std::uint64_t rtt_ns() const noexcept { return srtt_ns_ != 0 ? srtt_ns_ : kDefaultRttNs; }

  // True when a loss at now_ns starts a new congestion event (and opens its RTT).
  bool new_event(std::uint64_t now_ns) noexcept {
    if (had_loss_ && now_ns < recovery_until_ns_) return false;
    had_loss_ = true;
    recovery_until_ns_ = now_ns + rtt_ns();
    return true;
  }

  std::uint64_t mss_;
  std::uint64_t min_bytes_;
  std::uint64_t max_bytes_;
  std::uint64_t srtt_ns_ = 0;
  bool had_loss_ = false;
  std::uint64_t recovery_until_ns_ = 0;
};

class NoneController final : public CongestionController {
 public:
  void on_sent(std::uint64_t, std::uint64_t) noexcept override {}
  void on_acked(std::uint64_t, std::uint64_t, std::uint64_t) noexcept override {}
  void on_loss(std::uint64_t) noexcept override {}
  [[nodiscard]] std::uint64_t window_bytes() const noexcept override {
    return std::numeric_limits<std::uint64_t>::max();
  }
  [[nodiscard]] std::string_view name() const noexcept override { return "none"; }
};

// Reno: slow start doubles the window per RTT up to ssthresh, congestion avoidance adds one
// mss per window of acknowledged bytes, a loss halves the window (once per RTT), a timeout
// drops it to the minimum.
class AimdController final : public Base {
 public:
  explicit AimdController(const CongestionLimits& l) noexcept
      : Base(l), cwnd_(clamp(mss_ * std::uint64_t{l.initial_window_packets})), ssthresh_(max_bytes_) {}

  void on_sent(std::uint64_t, std::uint64_t) noexcept override {}

  void on_acked(std::uint64_t bytes, std::uint64_t rtt, std::uint64_t now_ns) noexcept override {
    (void)now_ns;
    sample(rtt);
    if (cwnd_ < ssthresh_) {
      cwnd_ = clamp(cwnd_ + bytes);
      return;
    }
    // One mss per cwnd of acknowledged bytes, with the remainder carried over so that
    // many small acks grow the window exactly as one large one.
    acc_ += bytes;
    while (acc_ >= cwnd_ && cwnd_ < max_bytes_) {
      acc_ -= cwnd_;
      cwnd_ = clamp(cwnd_ + mss_);
    }
    if (cwnd_ >= max_bytes_) acc_ = 0;
  }

  void on_loss(std::uint64_t now_ns) noexcept override {
    if (!new_event(now_ns)) return;
    ssthresh_ = clamp(cwnd_ / 2);
    cwnd_ = ssthresh_;
    acc_ = 0;
  }

  void on_timeout(std::uint64_t now_ns) noexcept override {
    (void)new_event(now_ns);
    ssthresh_ = clamp(cwnd_ / 2);
    cwnd_ = min_bytes_;
    acc_ = 0;
  }

  [[nodiscard]] std::uint64_t window_bytes() const noexcept override { return cwnd_; }
  [[nodiscard]] std::string_view name() const noexcept override { return "aimd"; }

 private:
  std::uint64_t cwnd_;
  std::uint64_t ssthresh_;
  std::uint64_t acc_ = 0;
};

// CUBIC (RFC 8312): after a reduction to beta * W_max the window follows
// W(t) = C (t - K)^3 + W_max, concave up to W_max (reached at t = K) and convex beyond it,
// in units of mss and seconds; never below the Reno-equivalent window W_est (the
// TCP-friendly region). Fast convergence lowers W_max when losses come before regaining it.
class CubicController final : public Base {
 public:
  static constexpr double kC = 0.4;
  static constexpr double kBeta = 0.7;

  explicit CubicController(const CongestionLimits& l) noexcept
      : Base(l),
        cwnd_(static_cast<double>(clamp(mss_ * std::uint64_t{l.initial_window_packets})) / static_cast<double>(mss_)),
        ssthresh_(static_cast<double>(max_bytes_) / static_cast<double>(mss_)) {}

  void on_sent(std::uint64_t, std::uint64_t) noexcept override {}

  void on_acked(std::uint64_t bytes, std::uint64_t rtt, std::uint64_t now_ns) noexcept override {
    sample(rtt);
    const double acked = static_cast<double>(bytes) / static_cast<double>(mss_);
    if (cwnd_ < ssthresh_) {
      set_cwnd(cwnd_ + acked);
      return;
    }
    if (!have_epoch_) {
      have_epoch_ = true;
      epoch_start_ns_ = now_ns;
      w_est_ = cwnd_;
      if (cwnd_ < w_max_) {
        k_ = std::cbrt((w_max_ - cwnd_) / kC);
        origin_ = w_max_;
      } else {
        k_ = 0.0;
        origin_ = cwnd_;
      }
    }
    const double rtt_s = static_cast<double>(rtt_ns()) / 1e9;
    const double t = static_cast<double>(now_ns - epoch_start_ns_) / 1e9 + rtt_s;
    double target = origin_ + kC * (t - k_) * (t - k_) * (t - k_);
    target = std::clamp(target, cwnd_, 1.5 * cwnd_);
    // Reno's growth over the same acks, with CUBIC's beta (RFC 8312 section 4.2).
    w_est_ += 3.0 * (1.0 - kBeta) / (1.0 + kBeta) * acked / cwnd_;
    if (w_est_ > target) {
      set_cwnd(w_est_);  // the TCP-friendly region: at least as fast as Reno
      return;
    }
    // Approach the curve: (target - cwnd) / cwnd per mss acknowledged, i.e. reach it in
    // one RTT.
    set_cwnd(std::min(target, cwnd_ + (target - cwnd_) * acked / cwnd_));
  }

  void on_loss(std::uint64_t now_ns) noexcept override {
    if (!new_event(now_ns)) return;
    reduce();
  }

  void on_timeout(std::uint64_t now_ns) noexcept override {
    (void)new_event(now_ns);
    reduce();
    set_cwnd(0.0);  // clamped to the minimum window
  }

  [[nodiscard]] std::uint64_t window_bytes() const noexcept override {
    return clamp(static_cast<std::uint64_t>(cwnd_ * static_cast<double>(mss_)));
  }
  [[nodiscard]] std::string_view name() const noexcept override { return "cubic"; }

 private:
  void reduce() noexcept {
    have_epoch_ = false;
    // Fast convergence: a loss before regaining the last maximum means the share shrank.
    w_max_ = cwnd_ < w_max_ ? cwnd_ * (1.0 + kBeta) / 2.0 : cwnd_;
    set_cwnd(cwnd_ * kBeta);
    ssthresh_ = cwnd_;
  }

  void set_cwnd(double w) noexcept {
    const double lo = static_cast<double>(min_bytes_) / static_cast<double>(mss_);
    const double hi = static_cast<double>(max_bytes_) / static_cast<double>(mss_);
    cwnd_ = std::clamp(w, lo, hi);
  }

  double cwnd_;      ///< in mss
  double ssthresh_;  ///< in mss
  double w_max_ = 0.0;
  double k_ = 0.0;
  double origin_ = 0.0;
  double w_est_ = 0.0;
  bool have_epoch_ = false;
  std::uint64_t epoch_start_ns_ = 0;
};

}  // namespace

std::unique_ptr<CongestionController> make_congestion_controller(std::string_view algorithm,
                                                                 const CongestionLimits& limits) {
  if (algorithm == "none") return std::make_unique<NoneController>();
  if (algorithm == "aimd") return std::make_unique<AimdController>(limits);
  if (algorithm == "cubic") return std::make_unique<CubicController>(limits);
  return nullptr;
}

}  // namespace tmc
