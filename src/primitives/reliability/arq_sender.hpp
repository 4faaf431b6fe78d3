// reliability.arq: the sender window.
//
// Stamps each reliable packet with a reliable sequence number (Ext::rel), keeps a copy
// until the packet's ack set has acknowledged it, retransmits on timeout (RTO from measured
// RTT, Jacobson/Karels, Karn's rule, exponential backoff) and on NACK, and reports each
// message's outcome exactly once: delivery_met (who acked) or delivery_failed (who never
// did) after max_retries timeouts that show a loss, or at once when the view says a
// required member failed or left. At most `window` messages are unsettled; more wait in a
// FIFO queue. The ack set is fixed when a message is sent, from the Group view
// (tmc/group.hpp). The window is allocated in configure(); nothing per message.
// State is O(window + members): an entry names its ack set (one per view, shared by every
// message sent in it) and each member's acks are one position (MemberAcks); a message is
// acked by all once the minimum position of its ack set (MinTree) reaches it, or every
// member below it acked it selectively.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "primitives/reliability/ack_format.hpp"
#include "primitives/reliability/ack_positions.hpp"
#include "primitives/reliability/arq_config.hpp"
#include "tmc/stage.hpp"

namespace tmc::arq {

class [[gnu::visibility("hidden")]] ArqSender {
 public:
  ArqSender() = default;
  ArqSender(const ArqSender&) = delete;
  ArqSender& operator=(const ArqSender&) = delete;
  ~ArqSender();

  /// Cold: the whole window, once. `ack_from`: the names of a named ack set.
  void configure(const Config& cfg, const StageEnv& env, std::vector<std::string> ack_from);

  /// Whether `p` is sent reliably (messages=all and data, or flagged reliable).
  [[nodiscard]] bool is_reliable(const Packet& p) const noexcept {
    if (p.kind == wire::Kind::data && cfg_.all_messages) return true;
    return (p.flags & wire::kFlagReliable) != 0 && (p.kind == wire::Kind::data || p.kind == wire::Kind::control);
  }
  /// Whether a new reliable message must wait in the queue (FIFO behind others, or the
  /// window is full).
  [[nodiscard]] bool must_wait() const noexcept {
    return !queue_.empty() || next_rseq_ - trail_ >= cfg_.window;
  }
  /// Queue `p` behind what waits already.
  void enqueue(Packet* p) noexcept { queue_.push(p); }

  /// Stamp and send one reliable packet (the window has room). False when the pool had no
  /// buffer for the copy: the packet goes back to the head of the queue for a later try.
  bool transmit_new(Packet* p, StageIo& io) noexcept;
  /// Send what waits in the queue while the window has room.
  void pump(StageIo& io) noexcept {
    if (!queue_.empty()) pump_queue(io);
    if (edge_due_) announce_edge(io);
  }

  /// A new view: fail messages waiting for a member that is gone, resolve ack_from names
  /// heard for the first time, and widen k-of-n candidates.
  void on_view(const Group& g, StageIo& io) noexcept;
  /// An ack for this sender from member `from` (its sender id).
  void on_ack(const detail::AckBody& ack, std::uint32_t from, StageIo& io) noexcept;
  /// A NACK for this sender: repair what it names.
  void on_nack(const detail::NackBody& nack, StageIo& io) noexcept;
  /// The application acknowledged, on behalf of member `slot`, the message it sent with
  /// `token` (it learned from that member's own reply that the member has it): counts as
  /// that member's ack of it, RTT sample included. False when no unsettled message has
  /// that token (settled already, never reliable, or unknown).
  bool on_app_ack(std::uint64_t token, int slot, StageIo& io) noexcept;
  /// Timeouts and the retry of a queue that found no buffer.
  void on_tick(std::uint64_t now, StageIo& io) noexcept {
    if (deadline_ns_ != 0 && now >= deadline_ns_) scan(io);
    if (retry_queue_ns_ != 0 && now >= retry_queue_ns_) retry_queue_ns_ = 0;
    if (edge_again_ns_ != 0 && now >= edge_again_ns_) announce_edge(io, /*again=*/true);
    if (probe_ns_ != 0 && now >= probe_ns_) probe_tail(io);
  }
  /// The pipeline is retiring: report every message still unsettled or queued as failed.
  void fail_all(StageIo& io) noexcept;
  /// The application forgot the message with `token` (or it and every earlier one): its
  /// copy is let go unrepaired and its outcome is delivery_forgotten; receivers hear the
  /// new trailing edge (announce_edge()).
  void forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept;

  /// The earliest timeout, lifetime or queue retry; 0 when none.
  [[nodiscard]] std::uint64_t deadline() const noexcept {
    return earliest(earliest(earliest(deadline_ns_, retry_queue_ns_), edge_again_ns_), probe_ns_);
  }
  /// Copies kept for unsettled messages.
  [[nodiscard]] std::size_t held() const noexcept { return held_; }
  /// Messages waiting in the queue.
  [[nodiscard]] std::size_t queued() const noexcept { return queue_.size(); }
  /// Smoothed RTT (0 before the first sample) and the RTO before any backoff.
  [[nodiscard]] std::int64_t srtt_ns() const noexcept { return srtt_ns_; }
  [[nodiscard]] std::uint64_t rto_ns() const noexcept { return rto_ns_; }
  /// Heap bytes kept to know who must ack what and who did: the window's entries, the ack
  /// sets, application acks and the per-member tables (capacities, not allocator overhead).
  [[nodiscard]] std::size_t state_bytes() const noexcept;

 private:
  // One unsettled reliable message.
  struct Entry {
    Packet* copy = nullptr;       // unsealed copy, cloned for each retransmission
    std::uint64_t rseq = 0;       // 0: slot free (settled)
    std::uint64_t token = 0;
    MemberSet app_acked;          // members the application acknowledged it for (on_app_ack())
    std::uint32_t set = 0;        // its ack set (sets_)
    std::uint32_t acks = 0;       // count mode: members that acked it
    std::uint64_t first_sent_ns = 0;
    std::uint64_t last_sent_ns = 0;
    std::uint64_t deadline_ns = 0;  // next RTO expiry
    std::uint64_t expires_ns = 0;   // end of its lifetime (Packet::expires_ns); 0 = none
    std::uint64_t out_ns = 0;       // when it was known to have left the stages below (if `out`)
    std::uint32_t need = 0;         // count mode: acks needed
    std::uint16_t retries = 0;       // timeouts with evidence of loss (the retry budget)
    std::uint16_t timeouts = 0;      // every timeout (the backoff)
    bool retransmitted = false;     // Karn: no RTT samples from it
    bool has_app = false;           // app_acked is not empty
    bool out = false;               // known to have left the stages below (see mark_out())
  };

  // The members a message must hear from, shared by every message sent under one view.
  struct AckSet {
    MemberSet members;          // all/named: who must ack; count: candidates
    MinTree edge;               // all/named: each member's base position (MemberAcks)
    std::uint64_t from = 0;     // the rseqs sent with it: [from, to)
    std::uint64_t to = 0;
    std::uint64_t swept = 0;    // every rseq of it up to here is met (or settled)
    std::uint32_t count = 0;    // members.count()
    bool unresolved = false;    // named mode: some ack_from name had no slot yet
    bool live = false;
  };
  static constexpr std::uint32_t kNoSet = ~std::uint32_t{0};

  Entry& entry(std::uint64_t rseq) noexcept { return entries_[static_cast<std::size_t>(rseq % cfg_.window)]; }
  const Entry& entry(std::uint64_t rseq) const noexcept {
    return entries_[static_cast<std::size_t>(rseq % cfg_.window)];
  }
  [[nodiscard]] const AckSet& set_of(const Entry& e) const noexcept { return sets_[e.set]; }
  /// Whether member slot `s` acknowledged `e`.
  [[nodiscard]] bool acked(const Entry& e, std::size_t s) const noexcept {
    return (s < pos_.size() && pos_[s].has(e.rseq)) || (e.has_app && e.app_acked.contains(static_cast<int>(s)));
  }
  void open_set(const Group& g);
  void build_edge(AckSet& a);
  void settle_acked(std::size_t s, const MemberAcks& before, StageIo& io) noexcept;
  void collect_acked(const Entry& e, bool all_required, MemberSet& out) const noexcept;
  void pump_queue(StageIo& io) noexcept;
  void resolve_named(const Group& g) noexcept;
  const MemberSet& required_now(const Group& g) const noexcept;
  void fit_view(const Group& g);
  bool met(const Entry& e) const noexcept;
  bool retransmit(Entry& e, StageIo& io) noexcept;
  void settle(Entry& e, EventType outcome, StageIo& io) noexcept;
  void notify_outcome(EventType type, std::uint64_t token, StageIo& io) noexcept;
  bool forgets(std::uint64_t token, std::uint64_t target, ForgetScope scope) const noexcept {
    return scope == ForgetScope::message ? token == target : token <= target;
  }
  void announce_edge(StageIo& io, bool again = false) noexcept;
  [[nodiscard]] Packet* edge_packet(StageIo& io) noexcept;
  [[nodiscard]] static std::uint64_t earliest(std::uint64_t a, std::uint64_t b) noexcept {
    return a == 0 ? b : (b == 0 || a < b ? a : b);
  }
  void scan(StageIo& io) noexcept;
  bool lost_evidence(const Entry& e, std::uint64_t now) const noexcept;
  void mark_out(std::uint64_t upto, std::uint64_t now) noexcept;
  bool members_quiet(const Entry& e, std::uint64_t now) const noexcept;
  bool blocked_below(std::size_t s, std::uint64_t rseq, std::uint64_t now) const noexcept;
  void rtt_sample(std::uint64_t sample_ns, StageIo& io) noexcept;
  // Sparse acks (stride_ > 1, see ack_stride()): which members' acks are overdue.
  [[nodiscard]] std::uint64_t ack_due_ns(std::size_t s) const noexcept;
  void find_quiet(StageIo& io) noexcept;
  void ask_ack(int slot, const Group& g, StageIo& io) noexcept;
  [[nodiscard]] bool quiet_lacks(const Entry& e, std::uint64_t now, bool& evidence) const noexcept;
  void arm_probe(std::uint64_t now) noexcept;
  void probe_tail(StageIo& io) noexcept;
  Event& outcome_event(EventType type, std::uint64_t rseq, std::uint64_t token) noexcept;
  void notify_failed(std::uint64_t token, const MemberSet& members, StageIo& io) noexcept;

  Config cfg_;
  std::uint32_t channel_ = 0;
  std::uint32_t self_sender_ = 0;
  std::uint32_t self_epoch_ = 0;
  std::vector<std::string> ack_from_;

  // --- view ---
  MemberSet named_mask_;
  std::size_t slots_fit_ = 0;
  Event outcome_{};  // reused for every delivery_met / delivery_failed (see outcome_event())  // the view size every per-member table and set is sized for
  bool named_unknown_ = false;

  // --- window ---
  std::vector<Entry> entries_;
  std::vector<AckSet> sets_;          // grown on a view change (cold)
  std::vector<std::uint32_t> order_;  // live sets, oldest first
  std::uint32_t cur_ = kNoSet;        // the set new messages are sent with
  std::vector<MemberAcks> pos_;       // per member (slot): what its acks reported
  std::size_t app_entries_ = 0;       // unsettled entries with application acks
  std::uint64_t next_rseq_ = 1;
  std::uint64_t trail_ = 1;  // lowest unsettled rseq (== next_rseq_ when none)
  // Per acker (by slot; sized to the view in fit_view(), a cold path): its cumulative ack,
  // the highest rseq it reported and when its acks last made progress (evidence of loss,
  // see lost_evidence() and members_quiet()).
  std::vector<std::uint64_t> slot_cum_;
  std::vector<std::uint64_t> slot_high_;
  std::vector<std::uint64_t> slot_ack_ns_;
  std::vector<std::uint64_t> slot_heard_ns_;  // when its last ack (any) arrived
  // Sparse acks: the receivers' stride for this view (1: every member acks as small groups
  // do), when the last datagram went out, when each member's cumulative ack last moved and
  // when it was last asked for an ack, and the members whose acks are overdue at this scan.
  struct Quiet {
    int slot = 0;
    bool evidence = false;  // silent for rto_max, or its cumulative point stuck that long
  };
  std::uint32_t stride_ = 1;
  std::uint64_t last_send_ns_ = 0;
  std::vector<std::uint64_t> slot_cum_ns_;
  std::vector<std::uint64_t> slot_asked_ns_;  // the first ask since its acks last moved
  std::vector<std::uint64_t> slot_reask_ns_;  // when to ask it again (see find_quiet())
  std::vector<Quiet> quiet_;
  // Every rseq up to this one is known to have left the stages below (see mark_out()).
  std::uint64_t out_rseq_ = 0;
  std::size_t held_ = 0;
  PacketFifo queue_;  // reliable messages waiting for room in the window, oldest first
  std::uint64_t deadline_ns_ = 0;
  std::uint64_t retry_queue_ns_ = 0;
  // Trailing edge last announced on its own (announce_edge()), and when: a NACK for
  // something below the edge gets the announcement again, at most once per rto_min.
  std::uint64_t edge_announced_ns_ = 0;
  bool released_ = false;
  bool edge_due_ = false;
  // The announcement may be lost, and the datagrams that would carry the edge may never
  // come (the stream ended): it goes again kEdgeRepeats times, an RTO apart.
  std::uint64_t edge_again_ns_ = 0;
  std::uint32_t edge_repeats_ = 0;
  static constexpr std::uint32_t kEdgeRepeats = 3;

  // --- tail loss probe (see probe_tail()) ---
  std::uint64_t probe_ns_ = 0;  // when the probe is due; 0 = none armed
  bool probed_ = false;         // sent since the last new message: no second one until then

  // --- round-trip time ---
  std::uint64_t rto_ns_ = 0;
  bool have_rtt_ = false;
  std::int64_t srtt_ns_ = 0;
  std::int64_t rttvar_ns_ = 0;
};

}  // namespace tmc::arq
