// reliability.arq: the receiver — per-sender receive state, duplicate detection, acks and
// NACKs.
//
// Feedback goes by unicast to the sender it concerns, at the address its heartbeats come
// from (Group's MemberInfo ip/port), when the shell routes unicast to members
// (StageEnv::unicast_reachable) and feedback=unicast: no member reads another member's acks,
// so a receiver's cost per message does not grow with the group. Without a known address
// (a sender not in the view, or not heard yet) it goes to the group, as with
// feedback=multicast.
//
// Delivers each reliable packet once (dedupe per sender incarnation in a bitmap window),
// acknowledges with cumulative + 64-bit SACK acks coalesced by time (ack_delay_us) and
// count (ack_every), re-acks duplicates (the earlier ack was lost), and repairs gaps with
// NACKs delayed by a random time and suppressed when another member already asked for the
// same range (NORM/SRM-style). With deliver=in_order it passes each sender's reliable
// packets up in sequence order through the InOrderHold (arq_hold.hpp).
//
// Each Ext::rel carries the sender's trailing edge (lowest unsettled rseq): a receiver that
// joins mid-stream starts there instead of at 1, and stops waiting for (and NACKing)
// anything the sender has already settled, so a partition that heals never leaves it
// asking for history forever (as long as the edge moves by less than a window at a time: a
// jump beyond it is dropped and counted, so one forged datagram cannot settle what the
// real sender has not sent). State for kMaxRxSenders senders (bitmaps included) is made in
// configure(); a new sender beyond them takes the slot silent the longest among senders
// outside the view (members are never evicted for strangers), and an evicted incarnation's
// settled edge is remembered (kEvictedEdges of them) so a replay after it is no fresh news.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "primitives/reliability/ack_format.hpp"
#include "primitives/reliability/arq_config.hpp"
#include "primitives/reliability/arq_hold.hpp"
#include "tmc/rng.hpp"
#include "tmc/stage.hpp"

namespace tmc::arq {

class [[gnu::visibility("hidden")]] ArqReceiver {
 public:
  /// Cold: every receive bitmap and the in-order hold's slots, once.
  void configure(const Config& cfg, const StageEnv& env);

  /// Whether this member receives (from the view): a send-only member never acks or NACKs.
  void set_self_receives(bool receives) noexcept { self_receives_ = receives; }

  /// A reliable data or control packet (it carries Ext::rel): dedupe, ack, NACK gaps, and
  /// pass it up (last: a stage above may send from inside io.up()), or hold it for order.
  void on_reliable(Packet* p, StageIo& io) noexcept;

  /// Another receiver's NACK for a sender we receive: if it covers the range we were about
  /// to ask for, stay quiet (the repair is multicast to us too).
  void overheard_nack(const detail::NackBody& nack) noexcept;

  /// Sender `sender` (incarnation `epoch`) announced its trailing edge on its own (an ack
  /// it addressed to itself, sent when it forgot messages or let them expire): everything
  /// up to `settled` is settled there, so stop waiting for it, and what was held behind it
  /// goes up, the first packet after each hole marked for ordering above.
  void on_edge(std::uint32_t sender, std::uint32_t epoch, std::uint64_t settled, StageIo& io) noexcept;

  /// The same announcement asks for an ack: with sparse acks (a large group, see
  /// ack_stride()) acknowledge that sender's position at once; small groups ignore it.
  void on_ack_request(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept;

  /// On stop: acknowledge every sender's current position once more, to the group. The
  /// goodbye that follows goes to the group too, and a sender reads its unicast and its
  /// group socket in no fixed order: a last ack sent by unicast could reach it after the
  /// goodbye, which fails every message still waiting for this member.
  void ack_all_to_group(StageIo& io) noexcept;

  /// Send the acks and NACKs that are due, and give up holds that waited too long.
  void on_tick(std::uint64_t now, StageIo& io) noexcept {
    if (deadline_ != 0 && now >= deadline_) scan(io);
  }

  /// The earliest ack, NACK or hold deadline; 0 when none.
  [[nodiscard]] std::uint64_t deadline() const noexcept { return deadline_; }
  /// Packets held for order, all senders together.
  [[nodiscard]] std::size_t held() const noexcept { return hold_.total(); }

 private:
  // What a receiver knows about one sender incarnation.
  struct RxState {
    bool used = false;
    std::uint32_t sender = 0;
    std::uint32_t epoch = 0;
    std::uint64_t cum = 0;         // every rseq <= cum was delivered or is settled at the sender
    std::uint64_t highest = 0;     // highest rseq seen
    std::uint64_t nack_floor = 0;  // never NACK below the first rseq seen (late join)
    std::uint64_t ack_due_ns = 0;  // 0: no ack pending
    std::uint64_t nack_due_ns = 0;
    std::uint64_t last_used_ns = 0;
    std::uint32_t unacked = 0;     // new packets since the last ack
    std::uint64_t next_ack_at = 0;  // sparse acks: ack once highest reaches this
    // Where its reliable packets come from: feedback goes there while the view has no
    // address for it (its heartbeats were lost, or are rare in a large group).
    std::uint32_t src_ip = 0;
    std::uint16_t src_port = 0;
    std::uint32_t nack_round = 0;
    bool nack_suppressed = false;
    // A hole that opens while the next round waits out its backoff is asked for at once (a
    // "fresh" round, from fresh_from up, which spends no round); the backed-off round
    // resumes at resume_due_ns after it.
    bool fresh = false;
    std::uint64_t fresh_from = 0;
    std::uint64_t resume_due_ns = 0;
    std::uint64_t* bits = nullptr;  // ring bitmap for (cum, cum + window_bits]
    // The cumulative point passed over numbers the sender settled without us: the next
    // packet passed up for this sender carries EventCause::released (Packet::gap_cause), so
    // ordering above skips the hole at once instead of waiting for it.
    bool gap_mark = false;
    // Highest number passed up above a gap still open (the hold's budget was spent, or its
    // wait ran out): ordering above may hold those. When the cumulative point passes
    // over a settled hole below them and nothing follows to carry the mark, a marker goes
    // up instead (see up_edge_marker).
    std::uint64_t early_through = 0;
  };

  // The settled edge of an evicted sender incarnation (cum 0: an empty entry).
  struct EvictedEdge {
    std::uint32_t sender = 0;
    std::uint32_t epoch = 0;
    std::uint64_t cum = 0;
  };
  static constexpr std::size_t kEvictedEdges = 64;

  [[nodiscard]] std::size_t slot_of(const RxState& s) const noexcept {
    return static_cast<std::size_t>(&s - rx_.data());
  }

  bool test(const RxState& s, std::uint64_t r) const noexcept;
  void set(RxState& s, std::uint64_t r) noexcept;
  void clear(RxState& s, std::uint64_t r) noexcept;
  void clear_all(RxState& s) noexcept;
  bool have(const RxState& s, std::uint64_t r) const noexcept;
  void advance_contiguous(RxState& s) noexcept;
  /// True when it passed over a number never received (the sender settled it without us).
  bool advance_to(RxState& s, std::uint64_t to) noexcept;
  bool first_gap(const RxState& s, std::uint64_t& first, std::uint64_t& count) const noexcept;
  bool has_gap(const RxState& s) const noexcept;
  RxState* find_rx(std::uint32_t sender) noexcept;
  RxState* rx_for(const Packet& p, StageIo& io) noexcept;
  void reset_rx(RxState& s, const Packet& p, const detail::RelBody& rel) noexcept;
  void remember_edge(const RxState& s) noexcept;
  std::uint64_t forget_edge(std::uint32_t sender, std::uint32_t epoch) noexcept;
  std::uint64_t nack_spread_ns(const Group& g) const noexcept;
  std::uint32_t nack_rounds() const noexcept;
  void schedule_ack(RxState& s, std::uint64_t now, bool fresh, StageIo& io) noexcept;
  std::uint32_t stride(const Group& g) noexcept;
  [[nodiscard]] std::uint64_t next_boundary(std::uint64_t highest) const noexcept;
  Packet* control_packet(wire::Kind kind, std::uint8_t body_len, std::uint8_t*& body, StageIo& io) noexcept;
  void address(Packet& a, const RxState& s, StageIo& io) const noexcept;
  [[nodiscard]] detail::AckBody position(const RxState& s) const noexcept;
  void send_ack(RxState& s, StageIo& io, bool to_group = false) noexcept;
  void up_edge_marker(RxState& s, std::uint64_t cum_before, StageIo& io) noexcept;
  void send_nacks(RxState& s, StageIo& io, std::uint64_t from = 0) noexcept;
  void note_deadline(std::uint64_t t) noexcept {
    if (deadline_ == 0 || t < deadline_) deadline_ = t;
  }
  void scan(StageIo& io) noexcept;

  Config cfg_;
  StageEnv env_;
  Rng rng_;
  bool self_receives_ = true;
  bool unicast_ = false;  // cfg_.unicast_feedback and the shell routes unicast to members
  std::uint64_t rx_bits_ = 0;
  std::vector<std::uint64_t> bitmap_;
  std::vector<RxState> rx_;
  std::uint64_t deadline_ = 0;
  // Sparse acks: the stride for the current view (1: every ack as in small groups).
  std::uint32_t stride_ = 1;
  std::uint64_t stride_view_ = ~std::uint64_t{0};
  InOrderHold hold_;
  std::array<EvictedEdge, kEvictedEdges> evicted_{};
  std::size_t next_evicted_ = 0;
};

}  // namespace tmc::arq
