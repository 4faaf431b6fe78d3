// reliability.arq: what its parts share — the counters (in registration order), the
// parameters as configure() resolved them, and the limits. The stage itself is arq.cpp (the
// shell); the sender window is arq_sender, the receive state arq_receiver, and the in-order
// hold arq_hold. Those classes are hidden from the shared library's symbol table: they
// are not API, and a hidden member function binds locally, so the compiler inlines the
// small ones into the per-packet paths (an exported one may be interposed at load time, so
// under -fPIC every call to it, even from its own file, goes through the PLT).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tmc/group.hpp"

namespace tmc::arq {

inline constexpr std::string_view kKind = "reliability.arq";

// Indexes into the stage's counters, in the order register_reliability_arq() lists them.
enum Counter : std::size_t {
  c_sent,
  c_retransmits,
  c_timeouts,
  c_acks_sent,
  c_acks_received,
  c_nacks_sent,
  c_nacks_received,
  c_nacks_suppressed,
  c_duplicates,
  c_delivered,
  c_met,
  c_failed,
  c_queued,
  c_rtt_samples,
  c_beyond_window,
  c_no_buffer,
  c_malformed,
  c_unknown_acker,
  c_senders_evicted,
  c_held_in_order,
  c_held_released_early,
};

// Reliable numbers an ack's SACK bitmap covers beyond cumulative + 1 (ack_format.hpp).
inline constexpr std::uint64_t kSackSpan = 64;
inline constexpr std::size_t kMaxRxSenders = kMaxGroupMembers;
inline constexpr std::uint32_t kMaxNackRanges = 4;  // NACK packets per sender per round
inline constexpr std::uint32_t kMaxRtoBurst = 64;    // retransmissions per timeout scan
inline constexpr std::uint64_t kSilenceRtoMax = 1;   // no ack progress for this many rto_max: a loss
inline constexpr std::uint64_t kUs = 1000;

enum class AckMode : std::uint8_t { all, named, count };

// The parameters, resolved and checked by the shell's configure(); times in nanoseconds.
struct Config {
  bool all_messages = true;
  AckMode mode = AckMode::all;
  double ack_fraction = 0.0;
  std::uint32_t ack_k = 0;
  std::uint32_t max_retries = 8;
  std::uint32_t window = 4096;
  std::uint64_t rto_initial_ns = 0;
  std::uint64_t rto_min_ns = 0;
  std::uint64_t rto_max_ns = 0;
  std::uint64_t ack_delay_ns = 0;
  std::uint32_t ack_every = 32;
  std::uint64_t nack_delay_ns = 0;
  bool in_order = false;
  // Acks and NACKs go by unicast to the sender they concern (when the shell routes unicast
  // to members and the view knows the sender's address); false: to the group.
  bool unicast_feedback = true;

  // Bits of each receive bitmap (and slots of each in-order ring): the window rounded up
  // to whole words, with room for the SACK bitmap beyond cum + 1.
  [[nodiscard]] std::uint64_t rx_bits() const noexcept {
    const std::uint64_t bits = (static_cast<std::uint64_t>(window) + 63) / 64 * 64;
    return bits < 128 ? 128 : bits;
  }
};

}  // namespace tmc::arq
