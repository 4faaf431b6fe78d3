// reliability.arq: what its parts share — the counters (declared once, below), the
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
#include "tmc/stage.hpp"

namespace tmc::arq {

inline constexpr std::string_view kKind = "reliability.arq";

// The stage's counters, declared once: ctr::Counter indexes and ctr::kCounters names
// ("reliability.<id>") come from this list, in this order.
#define TMC_ARQ_COUNTERS(X, P)                                                                        \
  X(P, sent, "reliable packets stamped and sent for the first time")                                  \
  X(P, retransmits, "reliable packets sent again (on timeout or NACK)")                               \
  X(P, timeouts, "retransmission timeouts")                                                           \
  X(P, acks_sent, "ack packets sent")                                                                 \
  X(P, acks_received, "ack packets for this sender received")                                         \
  X(P, nacks_sent, "NACK packets sent")                                                               \
  X(P, nacks_received, "NACK packets for this sender received")                                       \
  X(P, ack_requests, "sparse acks: a member whose ack was overdue asked for one by unicast")       \
  X(P, nacks_suppressed, "NACKs not sent because another member asked first")                         \
  X(P, duplicates, "reliable packets received again (dropped and re-acked)")                          \
  X(P, delivered, "reliable packets passed up (once each)")                                           \
  X(P, met, "reliable messages whose ack set acknowledged them")                                      \
  X(P, failed, "reliable messages given up (retries exhausted or member gone)")                       \
  X(P, queued, "reliable messages that waited for room in the window")                                \
  X(P, rtt_samples, "RTT samples taken (never from retransmitted packets)")                           \
  X(P, beyond_window, "reliable packets dropped: beyond the receive window")                          \
  X(P, no_buffer, "copies, acks or NACKs not made: the packet pool was exhausted")                    \
  X(P, malformed, "reliability extensions of the wrong length")                                       \
  X(P, unknown_acker, "acks from a sender that is not in the membership view")                        \
  X(P, senders_evicted, "receive state of a silent sender reused for a new one")                      \
  X(P, held_in_order, "deliver=in_order: packets held above a gap until it filled")                   \
  X(P, held_released_early,                                                                           \
    "deliver=in_order: held packets passed up before their gap filled (rto_max_us passed, the "       \
    "sender restarted or its state was evicted)")                                                     \
  X(P, tail_probes, "newest unsettled packets sent again because no ack came for a probe timeout")
namespace ctr {
TMC_STAGE_COUNTERS("reliability.", TMC_ARQ_COUNTERS);
}  // namespace ctr

// Reliable numbers an ack's SACK bitmap covers beyond cumulative + 1 (ack_format.hpp).
inline constexpr std::uint64_t kSackSpan = 64;
// Senders a receiver keeps reliable state for at once (each with its receive bitmap of
// window bits, 512 bytes at the default window); a new sender beyond them takes the state
// of the one silent the longest. A group whose members all send needs one per member:
// with fewer, states go round (a 100-member group that re-sent everything after a healed
// split evicted some 4,000 per member), an evicted state forgets what it received above
// its cumulative point and the acks it owed, and the senders' last messages stayed
// unsettled for seconds. 128 covers groups of up to 129 members sending at once.
inline constexpr std::size_t kMaxRxSenders = 128;
inline constexpr std::uint32_t kMaxNackRanges = 4;  // NACK packets per sender per round
inline constexpr std::uint32_t kMaxRtoBurst = 64;    // retransmissions per timeout scan
inline constexpr std::uint64_t kSilenceRtoMax = 1;   // no ack progress for this many rto_max: a loss
inline constexpr std::uint64_t kUs = 1000;

enum class AckMode : std::uint8_t { all, named, count };

// Sparse acks (large groups). With "acks from all", every receiver acking every datagram
// sends the sender receivers - 1 acks per datagram. Instead each receiver acks every
// `stride` new datagrams of a sender, at staggered points (its own sender id picks its
// offset), so the acks reaching the sender average receivers / stride per datagram: 1.5
// up to 16 receivers, 0.5 above, where the repair requests take the rest (at 1 % loss and
// hundreds of receivers nearly every datagram is lost by somebody, and one NACK stands for
// all of them). A receiver also acks when a sender has sent it nothing new for
// kSparseTailFactor * ack_delay_us (the tail), and when the sender asks (an edge
// announcement, sent by unicast to a member whose ack is overdue). The stride is at most
// half the window, so the window never waits on it. Fewer than eight receivers, acks other
// than "from all", acks=application or ack_delay_us 0: stride 1, the acks of small groups
// as they always were (every ack_every packets or ack_delay_us). (Small groups keep them
// because flow control's credits and congestion control's window ride on the acks: with
// four members and a stride of two, a credit window of a few messages waited for the tail
// ack at every turn, and partitions that heal took seconds longer to drain.)
inline constexpr std::uint64_t kSparseTailFactor = 16;
inline constexpr std::size_t kSparseAckMinReceivers = 8;

[[nodiscard]] constexpr std::uint32_t ack_stride(std::size_t receivers, std::uint32_t window) noexcept {
  if (receivers < kSparseAckMinReceivers) return 1;
  const std::size_t want = receivers <= 16 ? (2 * receivers + 2) / 3 : 2 * receivers;
  const std::size_t cap = window / 2 > 1 ? window / 2 : 1;
  return static_cast<std::uint32_t>(want < cap ? want : cap);
}

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
  // acks=application: receivers send no acks (NACKs for gaps still); the sending
  // application acknowledges each message on a member's behalf when that member's reply
  // arrives (Channel::acknowledge), and a receiver passes a reliable packet received again
  // up again, so that a request retransmitted because its reply was lost is answered again.
  bool app_acks = false;
  // The tail loss probe (ArqSender::probe_tail()).
  bool tail_probe = true;

  // Whether acks may be sparse (the stride then follows the view, see ack_stride()).
  [[nodiscard]] bool sparse_acks() const noexcept { return mode == AckMode::all && !app_acks && ack_delay_ns != 0; }
  [[nodiscard]] std::uint64_t tail_ack_ns() const noexcept { return kSparseTailFactor * ack_delay_ns; }

  // Bits of each receive bitmap (and slots of each in-order ring): the window rounded up
  // to whole words, with room for the SACK bitmap beyond cum + 1.
  [[nodiscard]] std::uint64_t rx_bits() const noexcept {
    const std::uint64_t bits = (static_cast<std::uint64_t>(window) + 63) / 64 * 64;
    return bits < 128 ? 128 : bits;
  }
};

}  // namespace tmc::arq
