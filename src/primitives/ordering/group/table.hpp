// ordering.group's message table: the one structure every part of the stage shares (see
// the dependency graph in group/stage.hpp). It holds
//   - the messages waiting for their place in the total order, keyed by (sender, epoch,
//     per-sender seq) in a preallocated slot array, found through an IndexTable,
//   - each sender's progress (delivered so far, and the sequencer's next to order),
//   - the current term's global order: a ring of window slots indexed by global number and
//     the delivery cursor (next global to deliver, highest known), and
//   - in network mode without reliability, a ring of the stamped packets themselves (they
//     carry their global number; nothing is keyed).
// Delivery by global number and the unreliable modes' gap skipping (a gap open for hold_us
// is skipped and reported) live here as well: both member and network sequencer terms use
// them. Everything is sized in configure(); nothing here allocates afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "primitives/common/index_table.hpp"
#include "primitives/ordering/group/wire.hpp"
#include "tmc/stage.hpp"

namespace tmc::detail::group_order {

namespace gw = ::tmc::detail::group_wire;

inline constexpr std::string_view kKind = "ordering.group";
inline constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

// The stage's counters, declared once: the Counter enum and kCounters
// ("ordering.group_<id>") come from this list, in this order.
#define TMC_GROUP_COUNTERS(X, P)                                                                        \
  X(P, delivered, "messages delivered in global order")                                               \
  X(P, own_delivered, "of those, this member's own messages")                                         \
  X(P, unordered, "data flagged unordered, delivered at once")                                        \
  X(P, assigned, "sequencer: global numbers assigned")                                                \
  X(P, announcements_sent, "sequencer: announcement packets sent")                                    \
  X(P, announcements_received, "announcement packets accepted")                                       \
  X(P, gaps_skipped, "gaps in the global order skipped (gap_skipped events)")                         \
  X(P, seqs_skipped, "global numbers skipped")                                                        \
  X(P, unannounced_dropped, "data never announced within 4 x hold_us, dropped")                       \
  X(P, duplicates, "duplicate data or stamps dropped")                                                \
  X(P, stale, "data already passed in the order, or of a retired session")                            \
  X(P, foreign_announcements, "announcements from a member that is not our sequencer")                \
  X(P, window_overflows, "numbers beyond the window forced a skip")                                   \
  X(P, full, "messages dropped: the hold table or pool was full")                                     \
  X(P, term_changes, "sequencer changes followed (sequencer_changed events)")                         \
  X(P, no_seq, "data without a per-sender number (ordering.seq missing below)")                       \
  X(P, no_stamp, "network mode: data without a valid group_seq stamp")                                \
  X(P, malformed, "order control packets refused (bad body, counts or lengths)")                      \
  X(P, resent, "reliable: own undelivered messages re-sent after a view change")                      \
  X(P, statuses_sent, "reliable: ordering status packets sent")                                       \
  X(P, statuses_received, "reliable: ordering status packets accepted")                               \
  X(P, term_starts, "reliable: term starts sent (sequencer) or adopted")                              \
  X(P, cut_missing,                                                                                   \
    "reliable: a cut disagreed with what this member held or delivered, or a sequencer ordered a "    \
    "message delivered here already (views disagreed: stays 0 without a split)")                      \
  X(P, failed_sender_dropped, "reliable: unordered messages of a failed or departed sender released") \
  X(P, own_restamp_requests,                                                                          \
    "network mode, reliable: own messages sent to the sequencer again because their stamped copy "    \
    "did not come back in time")                                                                      \
  X(P, own_restamp_gave_up,                                                                           \
    "network mode, reliable: own messages whose stamped copy never came back after every request "    \
    "(the sequencer is taken as gone)")                                                               \
  X(P, net_failovers,                                                                                 \
    "network mode, reliable: the network sequencer's term given up (it restarted, own messages "      \
    "stopped coming back, or a receiver failed); a member sequencer takes over")
TMC_STAGE_COUNTERS("ordering.group_", TMC_GROUP_COUNTERS);

struct Msg {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t g = 0;  ///< global number, 0 = not announced yet
  Packet* p = nullptr;  ///< the data, nullptr = announced but not arrived
  std::uint64_t since_ns = 0;
  std::uint64_t pend_g = 0;  ///< network term: a stamp beyond the window, placed once it fits
  bool used = false;
  bool unordered = false;  ///< sequencer: a number the sender spent on an unordered message
  bool skip = false;       ///< placed, but delivered here already (see entry_to_place)
};

struct SenderState {
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  bool used = false;
  std::uint64_t done_seq = 0;    ///< member: highest per-sender seq delivered or passed in the order
  std::uint64_t order_next = 0;  ///< sequencer: next per-sender seq to order (0 = not seen)
  std::uint64_t wait_since_ns = 0;  ///< sequencer: a later message waits for order_next since
  std::uint64_t max_seen = 0;       ///< sequencer: highest per-sender seq stored for ordering
  std::uint64_t last_use = 0;
};

class MsgTable {
 public:
  MsgTable() = default;
  MsgTable(const MsgTable&) = delete;
  MsgTable& operator=(const MsgTable&) = delete;
  ~MsgTable();

  /// `entries` keyed slots (0 in network mode without reliability, which keeps the stamped
  /// packets in the direct ring instead), a window of `window` globals.
  void configure(const StageEnv& env, std::size_t entries, std::uint32_t window, bool reliable, bool direct,
                 std::uint64_t hold_ns);

  // --- messages by (sender, epoch, seq) ----------------------------------------------

  [[nodiscard]] std::uint32_t lookup(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept;
  /// A new entry (no data, no global number), or kNone when the table is full.
  std::uint32_t insert(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t now) noexcept;
  void erase(std::uint32_t idx) noexcept;
  [[nodiscard]] bool full() const noexcept { return free_.empty(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return msgs_.size(); }
  [[nodiscard]] Msg& msg(std::uint32_t idx) noexcept { return msgs_[idx]; }
  [[nodiscard]] std::span<Msg> msgs() noexcept { return msgs_; }

  /// The state of (sender, epoch); the least recently used is replaced when all are taken.
  std::uint32_t find_sender(std::uint32_t id, std::uint32_t epoch) noexcept;
  [[nodiscard]] SenderState& sender(std::uint32_t s) noexcept { return senders_[s]; }
  [[nodiscard]] std::span<SenderState> senders() noexcept { return senders_; }
  [[nodiscard]] std::span<const SenderState> senders() const noexcept { return senders_; }
  /// Raise (sender, epoch)'s delivered point to a cut-off `last`; whether it moved.
  bool raise_done(std::uint32_t sender, std::uint32_t epoch, std::uint64_t last) noexcept;

  /// A message's data arrived (+1) or left (-1) the table.
  void note_held(const Msg& m, int delta) noexcept;
  [[nodiscard]] std::size_t held() const noexcept { return held_; }
  /// Of held(), copies of this member's own messages.
  [[nodiscard]] std::size_t own_held() const noexcept { return own_held_; }
  [[nodiscard]] bool own(std::uint32_t sender, std::uint32_t epoch) const noexcept {
    return sender == self_sender_ && epoch == self_epoch_;
  }

  /// The table entry an announced (sender, epoch, seq) is placed in: the message's own if
  /// it came already, a new one waiting for it if not. kNone when there is nothing to
  /// place: already placed, delivered before, or the table is full (counted).
  std::uint32_t entry_to_place(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, StageIo& io) noexcept;

  // --- the current term's global order -----------------------------------------------

  /// The term whose global numbers the ring holds: (term number, sequencer sender and
  /// epoch), or (0, 0, session) for a network sequencer's session without reliability.
  [[nodiscard]] const gw::TermId& term() const noexcept { return term_; }
  /// Number from 1 in term `t` (the old term's ring must have been cleared).
  void begin_term(const gw::TermId& t) noexcept;
  [[nodiscard]] std::uint64_t next_g() const noexcept { return next_g_; }
  [[nodiscard]] std::uint64_t max_known_g() const noexcept { return max_known_g_; }
  [[nodiscard]] std::uint32_t window() const noexcept { return window_; }
  /// The entry placed at global g, or kNone.
  [[nodiscard]] std::uint32_t at(std::uint64_t g) const noexcept { return ring_[g % window_]; }

  [[nodiscard]] bool deliverable(std::uint64_t g) const noexcept {
    if (direct_) return net_ring_[g % window_] != nullptr;
    const std::uint32_t idx = ring_[g % window_];
    return idx != kNone && msgs_[idx].g == g && (msgs_[idx].p != nullptr || msgs_[idx].skip);
  }
  /// Put entry `idx` at global g. Beyond the window (unreliable modes only: the reliable
  /// callers check) everything before the window is given up first.
  void place(std::uint32_t idx, std::uint64_t g, StageIo& io) noexcept;
  /// Deliver global next_g() (deliverable). `step_unordered`: see mark_done().
  void deliver_one(StageIo& io, bool step_unordered) noexcept;
  /// (sender, epoch) delivered or passed `seq`. `step_unordered` (reliable mode, when this
  /// member does not order): also step over the sender's unordered numbers that follow, so
  /// done_seq names the last number passed in its order (the cut-offs after a failover).
  void mark_done(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, bool step_unordered) noexcept;
  /// Deliver the term up to `end`, skipping (and reporting) what is not held: a cut.
  void deliver_through(std::uint64_t end, bool step_unordered, StageIo& io) noexcept;
  /// The term's numbers are void: entries lose their global number, and those without data
  /// go (unless `keep_unordered` and they record an unordered number); the ring is cleared.
  void void_numbers(bool keep_unordered) noexcept;

  // --- unreliable delivery: gaps are skipped after hold_us ----------------------------

  /// Deliver what is in order, and arm the gap timer when something later waits.
  void deliver_in_order(StageIo& io) noexcept;
  /// The gap at next_g() stayed open hold_us: skip to the next deliverable, deliver.
  void skip_gap(StageIo& io) noexcept;
  /// Skip the run of undeliverable numbers from next_g() (reported as one gap).
  void skip_run(StageIo& io) noexcept;
  void report_gap(std::uint64_t from, std::uint64_t count, StageIo& io) noexcept;
  /// A number beyond the window: give up on everything before `to`.
  void overflow_to(std::uint64_t to, StageIo& io) noexcept;
  /// Deliver what the term holds, in order, skipping its gaps; forget its numbers.
  void drain(StageIo& io) noexcept;
  /// Data never announced within 4 * hold_us is dropped and reported. `sequencing`: this
  /// member orders, so its waiting messages are the sequencer's to resolve.
  void expire_unannounced(bool sequencing, StageIo& io) noexcept;
  /// Start the expiry clock if it is not running.
  void arm_expiry(std::uint64_t now) noexcept {
    if (expire_at_ == 0) expire_at_ = now + 4 * hold_ns_;
  }
  [[nodiscard]] std::uint64_t gap_at() const noexcept { return gap_at_; }
  [[nodiscard]] std::uint64_t expire_at() const noexcept { return expire_at_; }

  // --- network mode without reliability: stamped packets held by global number --------

  /// A new session's first stamp g: a small number means we may have seen its start;
  /// otherwise what came before it is reported skipped.
  void first_stamp(std::uint64_t g, StageIo& io) noexcept;
  /// Hold stamped packet `p` at global g and deliver what is in order.
  void put_direct(std::uint64_t g, Packet* p, StageIo& io) noexcept;

 private:
  /// The key's salted hash: the index's slot (low bits) and tag (all 32).
  [[nodiscard]] std::uint32_t hash(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept;
  void note_gap_state(StageIo& io) noexcept;
  void deliver_direct(StageIo& io) noexcept;

  std::uint32_t self_sender_ = 0;
  std::uint32_t self_epoch_ = 0;
  std::uint32_t window_ = 4096;
  bool reliable_ = false;
  bool direct_ = false;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint64_t salt_ = 0x5bd1e9955bd1e995ull;

  std::vector<Msg> msgs_;
  std::vector<std::uint32_t> free_;
  IndexTable index_;  ///< (sender, epoch, seq) -> entry of msgs_
  std::vector<SenderState> senders_;
  std::uint64_t use_clock_ = 0;
  std::size_t held_ = 0;
  std::size_t own_held_ = 0;

  gw::TermId term_;
  std::uint64_t next_g_ = 1;
  std::uint64_t max_known_g_ = 0;
  std::vector<std::uint32_t> ring_;
  std::vector<Packet*> net_ring_;

  // Unreliable deadlines (0 = none).
  std::uint64_t gap_at_ = 0;
  std::uint64_t gap_g_ = 0;
  std::uint64_t expire_at_ = 0;
};

}  // namespace tmc::detail::group_order
