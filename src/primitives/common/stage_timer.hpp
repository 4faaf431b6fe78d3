// A stage's one timer as a stage sees it: several deadlines of its own (a retransmission,
// an ack delay, a hold), of which the earliest is armed with the shell, and the shell told
// only when that changes. 0 means "no deadline" throughout.
//
//   StageTimer timer_;
//   timer_.arm_earliest(io, {sender_.deadline(), receiver_.deadline()});  // after each input
//   timer_.arm_by(io, held_since + hold_ns);   // at the latest then; an earlier arm stays
//   void on_tick(StageIo& io) { timer_.fired(); ... }  // the shell disarmed it already
//   void on_stop(StageIo& io) { timer_.cancel(io); }
#pragma once

#include <cstdint>
#include <initializer_list>

#include "tmc/stage.hpp"

namespace tmc::detail {

/// The earliest non-zero deadline of `deadlines`; 0 when all are 0.
[[nodiscard]] constexpr std::uint64_t earliest_deadline(std::initializer_list<std::uint64_t> deadlines) noexcept {
  std::uint64_t d = 0;
  for (std::uint64_t t : deadlines) {
    if (t != 0 && (d == 0 || t < d)) d = t;
  }
  return d;
}

class StageTimer {
 public:
  /// Arm at `deadline` (0: disarm), unless the timer is armed there already.
  void set(StageIo& io, std::uint64_t deadline) noexcept {
    if (deadline == armed_) return;
    armed_ = deadline;
    if (deadline == 0) {
      io.cancel_timer();
    } else {
      io.arm_timer(deadline);
    }
  }
  /// Arm at the earliest of `deadlines` (disarm when none is set).
  void arm_earliest(StageIo& io, std::initializer_list<std::uint64_t> deadlines) noexcept {
    set(io, earliest_deadline(deadlines));
  }
  /// Arm at `deadline` unless the timer is armed earlier already.
  void arm_by(StageIo& io, std::uint64_t deadline) noexcept {
    if (armed_ == 0 || deadline < armed_) {
      armed_ = deadline;
      io.arm_timer(deadline);
    }
  }
  /// on_tick: the shell disarmed the timer before calling.
  void fired() noexcept { armed_ = 0; }
  /// Disarm (on_stop).
  void cancel(StageIo& io) noexcept {
    io.cancel_timer();
    armed_ = 0;
  }
  /// The armed deadline; 0 when disarmed.
  [[nodiscard]] std::uint64_t armed() const noexcept { return armed_; }

 private:
  std::uint64_t armed_ = 0;
};

}  // namespace tmc::detail
