// congestion: ledbat — see ledbat.hpp for the algorithm and its adaptation to RTT samples.
#include "ledbat/ledbat.hpp"

#include <algorithm>
#include <limits>

namespace tmc::modules {
namespace {

constexpr std::uint64_t kNoSample = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kDefaultRttNs = 100'000'000;  // before the first sample

}  // namespace

LedbatController::LedbatController(const CongestionLimits& limits, const LedbatParams& params) noexcept
    : p_(params),
      mss_(static_cast<double>(std::max<std::uint32_t>(1, limits.mss_bytes))),
      min_bytes_(mss_ * std::max<std::uint32_t>(1, limits.min_window_packets)),
      max_bytes_(std::max(min_bytes_, mss_ * limits.max_window_packets)),
      cwnd_(0.0) {
  p_.base_history = std::clamp<std::uint32_t>(p_.base_history, 1, kMaxHistory);
  p_.current_filter = std::clamp<std::uint32_t>(p_.current_filter, 1, kMaxFilter);
  if (p_.target_ns == 0) p_.target_ns = 1;
  if (p_.base_interval_ns == 0) p_.base_interval_ns = 1;
  set_cwnd(mss_ * limits.initial_window_packets);
}

void LedbatController::set_cwnd(double w) noexcept { cwnd_ = std::clamp(w, min_bytes_, max_bytes_); }

std::uint64_t LedbatController::window_bytes() const noexcept { return static_cast<std::uint64_t>(cwnd_); }

std::uint64_t LedbatController::base_delay_ns() const noexcept {
  if (base_used_ == 0) return 0;
  std::uint64_t m = kNoSample;
  for (std::uint32_t i = 0; i < base_used_; ++i) m = std::min(m, base_[i]);
  return m;
}

std::uint64_t LedbatController::current_delay_ns() const noexcept {
  if (recent_used_ == 0) return 0;
  std::uint64_t m = kNoSample;
  for (std::uint32_t i = 0; i < recent_used_; ++i) m = std::min(m, recent_[i]);
  return m;
}

void LedbatController::add_sample(std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept {
  last_rtt_ns_ = rtt_ns;
  // Base history (RFC 6817 update_base_delay): a new interval starts a new minimum and
  // forgets the oldest one.
  if (base_used_ == 0) {
    base_[0] = rtt_ns;
    base_pos_ = 0;
    base_used_ = 1;
    base_started_ns_ = now_ns;
  } else {
    if (now_ns - base_started_ns_ >= p_.base_interval_ns) {
      // Skip whole intervals without samples too: they end with no minimum of their own.
      const std::uint64_t passed = (now_ns - base_started_ns_) / p_.base_interval_ns;
      base_started_ns_ += passed * p_.base_interval_ns;
      const std::uint64_t steps = std::min<std::uint64_t>(passed, p_.base_history);
      for (std::uint64_t i = 0; i < steps; ++i) {
        base_pos_ = (base_pos_ + 1) % p_.base_history;
        base_[base_pos_] = kNoSample;
        base_used_ = std::min(base_used_ + 1, p_.base_history);
      }
    }
    base_[base_pos_] = std::min(base_[base_pos_], rtt_ns);
  }
  // Current filter (RFC 6817 update_current_delay).
  recent_[recent_pos_] = rtt_ns;
  recent_pos_ = (recent_pos_ + 1) % p_.current_filter;
  recent_used_ = std::min(recent_used_ + 1, p_.current_filter);
}

void LedbatController::on_sent(std::uint64_t bytes, std::uint64_t now_ns) noexcept {
  (void)bytes;
  (void)now_ns;
}

void LedbatController::on_acked(std::uint64_t bytes, std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept {
  if (rtt_ns != 0) add_sample(rtt_ns, now_ns);
  if (recent_used_ == 0) {
    // No delay measured yet: grow as at zero queuing delay (the target is not reached).
    set_cwnd(cwnd_ + p_.gain * static_cast<double>(bytes) * mss_ / cwnd_);
    return;
  }
  const double target = static_cast<double>(p_.target_ns);
  const double queuing = static_cast<double>(queuing_delay_ns());
  const double off_target = std::max((target - queuing) / target, -p_.max_decrease);
  set_cwnd(cwnd_ + p_.gain * off_target * static_cast<double>(bytes) * mss_ / cwnd_);
}

void LedbatController::on_loss(std::uint64_t now_ns) noexcept {
  // Losses of one window are one congestion event: react once per RTT.
  if (had_loss_ && now_ns < recovery_until_ns_) return;
  had_loss_ = true;
  recovery_until_ns_ = now_ns + (last_rtt_ns_ != 0 ? last_rtt_ns_ : kDefaultRttNs);
  set_cwnd(cwnd_ * p_.loss_factor);
}

void LedbatController::on_timeout(std::uint64_t now_ns) noexcept {
  had_loss_ = true;
  recovery_until_ns_ = now_ns + (last_rtt_ns_ != 0 ? last_rtt_ns_ : kDefaultRttNs);
  set_cwnd(min_bytes_);
}

std::unique_ptr<CongestionController> make_ledbat_controller(const CongestionLimits& limits,
                                                             const LedbatParams& params) {
  return std::make_unique<LedbatController>(limits, params);
}

}  // namespace tmc::modules
