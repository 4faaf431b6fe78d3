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
// State is O(window + members), however many views change while messages are in flight:
// each member's acks are one position (MemberAcks), and which messages a member must ack is
// one interval of reliable sequence numbers (from the first message sent after it joined
// the ack set to the first sent after it left it), so a view change costs O(1) per member
// that came or went, not a member set per view. A message is acked by all once the minimum
// over the members' positions (one MinTree for every message) reaches it, or every member
// below it acked it selectively. k-of-n candidates are the members that were receivers at
// some view since the message was sent: a view number per message and one per member.
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
  /// An ack for this sender from member `from` (its sender id); `packet` false: the
  /// position a NACK carried (not counted as an ack packet).
  void on_ack(const detail::AckBody& ack, std::uint32_t from, StageIo& io, bool packet = true) noexcept;
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
    std::uint64_t token_first = 0;  // a batch: its first message's token (else = token)
    MemberSet app_acked;          // members the application acknowledged it for (on_app_ack())
    std::uint32_t view = 0;       // count mode: view_ when it was sent (see required())
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

  static constexpr std::uint64_t kNever = ~std::uint64_t{0};

  Entry& entry(std::uint64_t rseq) noexcept { return entries_[static_cast<std::size_t>(rseq % cfg_.window)]; }
  const Entry& entry(std::uint64_t rseq) const noexcept {
    return entries_[static_cast<std::size_t>(rseq % cfg_.window)];
  }
  /// Whether member slot `s` is in the ack set of `e` (all/named: must ack it; count: a
  /// candidate).
  [[nodiscard]] bool required(const Entry& e, std::size_t s) const noexcept {
    if (s >= slots_fit_) return false;
    if (cfg_.mode == AckMode::count) return until_view_[s] >= e.view;
    return (join_[s] <= e.rseq && e.rseq < leave_[s]) || (owed_from_[s] <= e.rseq && e.rseq < owed_to_[s]);
  }
  /// The ack set of `e` into `out` (empty, sized to the view).
  void required_into(const Entry& e, MemberSet& out) const noexcept;
  /// Whether member slot `s` acknowledged `e`.
  [[nodiscard]] bool acked(const Entry& e, std::size_t s) const noexcept {
    return (s < pos_.size() && pos_[s].has(e.rseq)) || (e.has_app && e.app_acked.contains(static_cast<int>(s)));
  }
  void open_set(const Group& g, std::uint64_t join_at);
  [[nodiscard]] std::uint64_t leaf(std::size_t s) const noexcept;
  void check_left(std::size_t s) noexcept;
  void unlinger(std::size_t s) noexcept;
  void release_lingering() noexcept;
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
  // Whether forgetting `target` (with `scope`) releases a datagram carrying the messages
  // first..last (a coalesced batch; first == last for one message): only when it releases
  // every one of them, so a batch is never dropped for one of its messages.
  static bool forgets(std::uint64_t first, std::uint64_t last, std::uint64_t target, ForgetScope scope) noexcept {
    return scope == ForgetScope::message ? first == target && last == target : last <= target;
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
  std::vector<MemberAcks> pos_;       // per member (slot): what its acks reported

  // --- ack sets: who must ack which message (sized to the view in fit_view(), cold) ---
  // The ack set of messages sent from now on, its size, and the first rseq since it last
  // changed (every message from there has exactly this set).
  MemberSet members_;
  std::uint32_t members_count_ = 0;
  std::uint64_t members_from_ = 1;
  bool opened_ = false;     // open_set() ran once
  bool unresolved_ = false;  // named mode: some ack_from name has no slot yet (nothing is met)
  MemberSet ever_;           // every slot that was ever in an ack set
  // All/named: slot s must ack rseqs [join_[s], leave_[s]) (kNever: never joined / not
  // left). A slot that left while some unsettled message of its interval still waits for
  // it "lingers" (lingering_; see check_left()); if it comes back meanwhile, that interval
  // is still owed: [owed_from_[s], owed_to_[s]).
  std::vector<std::uint64_t> join_;
  std::vector<std::uint64_t> leave_;
  std::vector<std::uint64_t> owed_from_;
  std::vector<std::uint64_t> owed_to_;
  std::vector<std::uint8_t> lingers_;
  std::vector<int> lingering_;
  std::vector<int> left_now_;  // slots that left the ack set in this view change
  // Per slot the lowest rseq it may still be missing that it must ack, less one (leaf()):
  // every rseq up to the minimum is acked by every member that must ack it.
  MinTree edge_;
  std::uint64_t swept_ = 0;  // every rseq up to here is met (or settled)
  // Count mode: view_ counts the view changes; until_view_[s] is the last view at which s
  // was a receiver (kForeverView while it is one; 0: never).
  static constexpr std::uint32_t kForeverView = ~std::uint32_t{0};
  std::uint32_t view_ = 0;
  std::vector<std::uint32_t> until_view_;
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
