// ordering.group's agreed terms (reliable mode): what members tell each other about a term
// and what follows from it. Each member reports, in unreliable status packets, the term it
// is at, how far it holds the term without a hole (held_through), how far it delivered, and,
// once frozen, the per-sender cut-offs of what it delivered. From the statuses of every
// receiver of the view this part computes
//   - stability: global g is stable when every receiver holds every global <= g; a member
//     delivers only stable globals (update_stable),
//   - the sequencer's window: it may not number beyond any member's window (assign_limit),
//   - the cut of a frozen term: the view's sequencer, once every receiver reported frozen,
//     cuts each term the survivors are at (choose_cuts) and merges their cut-offs
//     (merge_cutoffs) into the term start it sends.
// A term is (term number, sequencer sender, sequencer epoch); numbers grow across
// failovers. Depends on the message table and the wire helpers only: when to freeze, adopt
// or run a term is the stage's (group/failover.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "primitives/ordering/group/table.hpp"

namespace tmc::detail::group_order {

/// The status period while something is unstable or a failover is pending.
inline constexpr std::uint64_t kStatusPeriodNs = 10'000'000;
/// From this many receivers on, statuses are sparse (see Agreement::note_progress).
inline constexpr std::uint32_t kSparseStatusReceivers = 8;
/// Sparse statuses: how long holdings must stand still before a status reports them.
inline constexpr std::uint64_t kStatusTailNs = 8'000'000;
/// How long our oldest undelivered message may stay undelivered before we send our
/// undelivered messages again (doubling while nothing moves, up to kOwnStallMaxNs).
inline constexpr std::uint64_t kOwnStallNs = 200'000'000;
inline constexpr std::uint64_t kOwnStallMaxNs = 1'600'000'000;

struct PeerStatus {
  bool have = false;
  bool repeat = false;  ///< its last status told nothing new (a stalled member repeats it)
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  gw::Status st;
  /// From its last frozen status (st.n_cutoffs of them); grows on the cold path only
  /// (frozen statuses), as far as one datagram holds.
  std::vector<gw::Cutoff> cutoffs;
};

/// Whether the view counts (sender, epoch) as alive (`self` is this member's incarnation).
/// A sender the view does not know (no heartbeat heard from it) counts as `unknown`: the
/// sequencer orders only known senders (another member may already have dropped a dead
/// stranger's messages), while a view change keeps a stranger's messages (a newcomer is often
/// heard before its heartbeat).
[[nodiscard]] bool sender_alive(const Group& g, const StageEnv& self, std::uint32_t sender, std::uint32_t epoch,
                                bool unknown = false) noexcept;

class Agreement {
 public:
  void configure(const StageEnv& env, std::uint32_t window);

  // --- this member's own state ------------------------------------------------------

  /// How far this member holds the current term without a hole.
  std::uint64_t held_through(const MsgTable& t) noexcept;
  /// What statuses report as held: frozen, the point it froze at.
  std::uint64_t reported_held(const MsgTable& t) noexcept { return frozen_ ? frozen_h_ : held_through(t); }
  /// Term 0 (none yet) counts as frozen: nothing to deliver.
  [[nodiscard]] bool frozen() const noexcept { return frozen_; }
  /// Stop delivering the term; from now on report the point held now.
  void freeze(const MsgTable& t) noexcept {
    frozen_h_ = held_through(t);
    frozen_ = true;
  }
  /// Adopted term `nt` (its cut records `recs`, reported in every status of the term).
  void begin_term(const gw::TermId& nt, const gw::CutRecord* recs, std::uint32_t nrec) noexcept;
  void note_term_seen(std::uint32_t no) noexcept { term_no_seen_ = std::max(term_no_seen_, no); }

  // --- the view's statuses ----------------------------------------------------------

  /// The status of the member in `slot`, if it came from its current incarnation.
  [[nodiscard]] const PeerStatus* peer(const Group& g, int slot) const noexcept;
  /// Forget statuses of incarnations the view no longer names.
  void forget_stale_peers(const Group& g) noexcept;
  /// Forget the status of the member in `slot` (it came back into the view).
  void forget_peer(int slot) noexcept {
    if (slot >= 0 && static_cast<std::size_t>(slot) < peers_.size()) peers_[static_cast<std::size_t>(slot)].have = false;
  }
  /// Record a status packet (released here). The sender's record, or nullptr when it is not
  /// (yet) in the view (counted stale).
  const PeerStatus* on_status(Packet* p, const gw::Status& s, StageIo& io) noexcept;
  /// The term's sequencer numbers only messages it holds, and in order: an announcement up
  /// to `top` says it holds every global <= top, as a status would.
  void note_sequencer_holds(const Group& g, std::uint32_t sender, std::uint32_t epoch, std::uint64_t top,
                            const gw::TermId& term) noexcept;
  /// Every receiver's status of the current term: the stable point (0 when one is missing).
  std::uint64_t update_stable(const MsgTable& t, const Group& g) noexcept;
  /// Sequencer: the first global it may not assign yet, so that no member receives an entry
  /// beyond its window.
  [[nodiscard]] std::uint64_t assign_limit(const MsgTable& t, const Group& g) const noexcept;

  // --- our statuses -------------------------------------------------------------------

  /// The view has `receivers` receivers: from kSparseStatusReceivers on, statuses are
  /// sparse (a stride of global numbers, the tail, stalls; see note_progress).
  void fit_receivers(std::uint32_t receivers) noexcept;
  /// Statuses per stride of global numbers (1: every change, the small-group rule).
  [[nodiscard]] std::uint32_t stride() const noexcept { return stride_; }
  /// Something a peer waits for changed: send a status from the tick due now.
  void note_status_change(StageIo& io) noexcept;
  /// Delivery or holdings moved past what our last status said (`told`: held_through
  /// as peers know it): send a status (sparse statuses: at a stride point, or once the
  /// holdings stood still for kStatusTailNs).
  void note_progress(const MsgTable& t, std::uint64_t told, StageIo& io) noexcept;
  /// The next periodic status (with `failover`: one is pending, so every member repeats
  /// its status every kStatusPeriodNs, every ⌈R / 32⌉ × kStatusPeriodNs with sparse
  /// statuses; otherwise, with sparse statuses, a stall repair spaced as much).
  [[nodiscard]] std::uint64_t periodic_at(bool failover) const noexcept;
  /// The periodic tick is due: whether to send a status. Sparse statuses, no failover: only
  /// when neither delivery nor holdings moved for a whole period (a lost status stalls
  /// everybody; while data comes, the stride's statuses and the tail carry the news).
  bool periodic_status(const MsgTable& t, bool failover, std::uint64_t now) noexcept;
  [[nodiscard]] std::uint64_t tail_due() const noexcept { return tail_due_; }
  /// How long our oldest undelivered message may wait before we call it stalled
  /// (GroupStage::check_own_progress): kOwnStallNs, times ⌈R / 32⌉ with sparse statuses,
  /// whose stride delays delivery by up to R data datagrams.
  [[nodiscard]] std::uint64_t own_stall_ns() const noexcept {
    return kOwnStallNs * (stall_period_ns_ / kStatusPeriodNs);
  }
  /// A peer at term `term` (ours when its status came) reports less stable than we hold:
  /// it may have lost our last status.
  void repair_if_behind(const PeerStatus& ps, const gw::TermId& term, const MsgTable& t, StageIo& io) noexcept;
  /// An announcement we sent said we hold through `top`.
  void note_announced(std::uint64_t top) noexcept { sent_held_ = std::max(sent_held_, top); }
  void send_status(const MsgTable& t, StageIo& io) noexcept;
  [[nodiscard]] std::uint64_t status_due() const noexcept { return status_due_; }
  [[nodiscard]] std::uint64_t last_status_ns() const noexcept { return last_status_ns_; }
  [[nodiscard]] std::uint64_t sent_held() const noexcept { return sent_held_; }

  // --- the cut (the view's sequencer) ---------------------------------------------------

  /// Once every receiver reported a frozen status: the cut of each term the survivors are
  /// at (`out`, `nout`) and the highest term number anyone knows (`max_no`). False while a
  /// receiver's frozen status is missing.
  bool choose_cuts(const MsgTable& t, const Group& g, gw::CutRecord* out, std::uint32_t& nout,
                   std::uint32_t& max_no) noexcept;
  /// Per-sender cut-offs for a term start: the largest each alive sender's number any
  /// receiver (and this member) reports, into `merged` (cleared first; cold: it grows to
  /// the group's senders once).
  void merge_cutoffs(const MsgTable& t, const Group& g, std::vector<gw::Cutoff>& merged) const;
  /// How many cut-offs one term start packet with `nrec` cut records holds (at least 1).
  [[nodiscard]] std::uint32_t start_cutoff_room(std::uint32_t nrec) const noexcept;
  /// Make `p` one of this stage's control packets with an Ext::order body of `body_len`
  /// bytes; the body to fill, or nullptr (p released) when there was no room.
  std::uint8_t* as_order_control(Packet* p, bool reliable, std::uint8_t body_len) const noexcept;

 private:
  StageEnv env_;
  std::uint32_t window_ = 4096;

  std::uint32_t term_no_seen_ = 0;
  bool frozen_ = true;
  std::uint64_t frozen_h_ = 0;
  std::uint64_t held_h_ = 0;
  std::uint64_t last_stable_ = 0;
  std::uint32_t n_adopted_ = 0;
  gw::CutRecord adopted_[gw::kMaxRecords];
  /// Cold: a status record (and a cut part) for every slot of the view.
  void fit_view(const Group& g);
  struct Part {  // one member's side of a cut (choose_cuts())
    gw::TermId t;
    std::uint64_t h;
    std::uint64_t d;
    const gw::CutRecord* recs;
    std::uint32_t nrec;
  };
  std::vector<PeerStatus> peers_;  ///< by Group slot; grows with the view
  std::vector<Part> parts_;        ///< scratch of choose_cuts(): self and every receiver
  std::uint64_t status_due_ = 0;
  std::uint64_t last_status_ns_ = 0;
  std::uint64_t sent_held_ = 0;       ///< held_through in our last status
  std::uint64_t sent_delivered_ = 0;  ///< delivered_through in our last status
  // Sparse statuses (a view of kSparseStatusReceivers receivers or more).
  std::uint32_t stride_ = 1;
  std::uint64_t stall_period_ns_ = kStatusPeriodNs;
  std::uint64_t tail_due_ = 0;         ///< a status for holdings not reported yet (0 = none)
  std::uint64_t tail_held_ = 0;        ///< the holdings tail_due_ was armed for
  std::uint64_t periodic_from_ = 0;    ///< a periodic tick that found delivery moving
  std::uint64_t periodic_next_g_ = 0;  ///< next_g() at that tick
  std::uint64_t periodic_held_ = 0;    ///< held_through() at that tick
};

}  // namespace tmc::detail::group_order
