// Congestion control: the interface every algorithm implements.
//
// A CongestionController is a pure state machine over bytes and time: the congestion.window
// stage tells it what was sent, what the slowest acknowledging receiver acknowledged (with an
// RTT sample), and when a loss was detected; it answers with the congestion window, the
// number of bytes that may be unacknowledged at once. Like a stage, a controller never reads
// a clock or a random source: time arrives as `now_ns` on every call, so a controller is
// deterministic and the simulator replays it exactly.
//
// For multicast the stage follows the worst acknowledging receiver (as PGMCC and TFMCC do):
// on_acked() reports bytes as they become acknowledged by *every* receiver it follows, and
// a loss seen by any receiver is a loss. A controller therefore needs no notion of
// receivers; the same algorithm serves unicast and multicast.
//
// Built-ins (make_congestion_controller): "none" (no limit), "aimd" (Reno-like: slow start,
// congestion avoidance, halve on loss at most once per RTT), "cubic" (RFC 8312 window
// curve with its TCP-friendly region). A new algorithm derives from CongestionController,
// is constructed from the same CongestionLimits, and is added to make_congestion_controller().
//
// Calls are hot (once per packet or ack): implementations must be noexcept and must not
// allocate after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

namespace tmc {

/// The bounds and units a controller works in (the stage's parameters).
struct CongestionLimits {
  std::uint32_t mss_bytes = 1400;              ///< bytes of one full-sized datagram
  std::uint32_t initial_window_packets = 10;   ///< window before any feedback, in mss
  std::uint32_t min_window_packets = 2;        ///< the window never goes below this, in mss
  std::uint32_t max_window_packets = 100000;   ///< nor above this, in mss
};

class CongestionController {
 public:
  virtual ~CongestionController() = default;

  /// `bytes` (datagram bytes of one new packet) left for the network at now_ns.
  virtual void on_sent(std::uint64_t bytes, std::uint64_t now_ns) noexcept = 0;
  /// `bytes` became acknowledged (by the slowest followed receiver). `rtt_ns` is an RTT
  /// sample taken from a packet that was not retransmitted, or 0 when there is none.
  virtual void on_acked(std::uint64_t bytes, std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept = 0;
  /// A loss was detected (a NACK, or a SACK hole). Implementations react at most once per
  /// RTT: losses of one window are one congestion event.
  virtual void on_loss(std::uint64_t now_ns) noexcept = 0;
  /// No acknowledgment progress for a long time (the equivalent of TCP's retransmission
  /// timeout): start over from a small window. Default: treat it as a loss.
  virtual void on_timeout(std::uint64_t now_ns) noexcept { on_loss(now_ns); }
  /// Bytes that may be unacknowledged at once.
  [[nodiscard]] virtual std::uint64_t window_bytes() const noexcept = 0;
  /// The algorithm's name ("aimd", "cubic", ...), for counters and diagnostics.
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

/// A built-in controller by name ("none", "aimd", "cubic"), or nullptr for another name.
/// Cold (allocates once).
std::unique_ptr<CongestionController> make_congestion_controller(std::string_view algorithm,
                                                                 const CongestionLimits& limits);

}  // namespace tmc
