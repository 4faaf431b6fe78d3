// ordering.fifo — point-to-point ordering of each sender's messages (paper §3.2).
//
// Synopsis
//   Delivers each sender's data packets in sequence order, per (sender, epoch), using the
//   number ordering.seq put in Packet::seq.
// Params
//   mode (string, "drop-stale")  "drop-stale": the paper's rule, deliver if seq is newer than
//                                the last delivered, else drop. "strict": deliver in exact
//                                order, holding early packets in a bounded reorder buffer.
//   window (int, 64)             strict: packets held per sender at most
//   hold_us (int, 50000)         strict: longest a held packet waits for a gap to fill
//   max_senders (int, 1024)      senders tracked at once; the least recently active is
//                                evicted beyond it
// Counters
//   ordering.stale_dropped, ordering.duplicates_dropped, ordering.stale_epoch_dropped,
//   ordering.held, ordering.released, ordering.gaps_skipped, ordering.seqs_skipped,
//   ordering.window_skips, ordering.timeout_skips, ordering.epoch_changes,
//   ordering.senders_evicted, ordering.unordered, ordering.no_seq, ordering.join_skipped,
//   ordering.join_seqs_skipped (see register below)
// Wire
//   None of its own; reads the `seq` extension through Packet::seq (ordering.seq must sit
//   below this stage) and the epoch of the base header.
// Notes
//   State per sender: its current epoch, a few retired epochs, the next sequence number to
//   deliver, a 64-bit bitmap of which of the last 64 numbers were delivered (to tell a
//   duplicate from a late packet whose gap was skipped), and in strict mode a ring of
//   `window` slots indexed by seq % window, allocated the first time the sender's slot is
//   used and reused after eviction, never per message.
//
//   Strict mode holds seq in (next, next + window]. A packet beyond that, or a held packet
//   that has waited hold_us, makes the stage give up on the first gap: it is skipped (one
//   gap_skipped event), and the held run after it is delivered in order.
//
//   First sight of a (sender, epoch) in strict mode: seq <= window + 1 means we may have
//   seen the sender's start, so we wait for seq 1 under the rules above (a lost start is
//   then skipped by window or timeout like any gap, and reported). A larger seq means we
//   joined late *or* lost more than the window of the sender's first messages; the stage
//   cannot tell the two apart, so it never starts silently: it reports [1, seq) as one
//   gap_skipped event (seq 1, count seq - 1), counted under ordering.join_skipped rather
//   than ordering.gaps_skipped so an application can tell a join from in-stream loss, and
//   delivery starts at seq. Every number of the incarnation is therefore either delivered
//   or inside a reported gap (exactly-once accounting). The skipped range costs no state:
//   `next` simply starts at seq, and stragglers below it are dropped as stale.
//
//   An evicted sender that returns is first seen again, so the stage may report numbers it
//   delivered before the eviction; eviction is the overload escape hatch and does not keep
//   the accounting exact. It takes the least recently active sender outside the membership
//   view, so unknown sender ids (however many) never evict a member's state.
//
//   Drop-stale mode never reports gaps (the paper's rule skips silently by design), so its
//   first sight simply accepts any number; nothing changes there.
//
//   A new epoch from a known sender id means the sender restarted: what is held of the old
//   incarnation is delivered in order (gaps skipped), its state is reset and epoch_changed
//   is raised. Packets from the last kRetiredEpochs replaced epochs are dropped
//   (stale_epoch). Time comes only from io.now_ns(); the stage arms one timer for the
//   earliest hold deadline across senders.
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "primitives/common/index_list.hpp"
#include "primitives/common/index_table.hpp"
#include "primitives/common/stage_timer.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_FIFO_COUNTERS(X, P)                                                                                     \
  X(P, stale_dropped, "packets dropped: number older than the last delivered")                                      \
  X(P, duplicates_dropped, "packets dropped: already delivered or already held")                                    \
  X(P, stale_epoch_dropped, "packets dropped: from a replaced epoch of their sender")                               \
  X(P, held, "strict: packets put in the reorder buffer")                                                           \
  X(P, released, "strict: held packets delivered in order")                                                         \
  X(P, gaps_skipped,                                                                                                \
    "strict: gaps given up on within the stream (one gap_skipped event "                                            \
    "each; the gap before a late join counts under ordering.join_skipped)")                                         \
  X(P, seqs_skipped, "strict: sequence numbers given up on")                                                        \
  X(P, window_skips, "strict: gaps skipped because a packet landed beyond the window")                              \
  X(P, timeout_skips, "strict: gaps skipped because a held packet waited hold_us")                                  \
  X(P, epoch_changes, "senders seen restarting with a new epoch")                                                   \
  X(P, senders_evicted, "senders forgotten to make room (max_senders)")                                             \
  X(P, unordered, "data packets flagged unordered, passed straight through")                                        \
  X(P, no_seq, "data packets dropped: no sequence number (ordering.seq missing below)")                             \
  X(P, join_skipped,                                                                                                \
    "strict: senders first seen beyond window + 1 (late join or lost "                                              \
    "start); one gap_skipped event each, for [1, first number)")                                                    \
  X(P, join_seqs_skipped, "strict: sequence numbers before a sender's first seen one")
TMC_STAGE_COUNTERS("ordering.", TMC_FIFO_COUNTERS);

// Gauges, declared once likewise (read_gauges() fills them in this order).
#define TMC_FIFO_GAUGES(X, P) X(P, held_packets, "packets held behind a gap, all senders")
TMC_STAGE_GAUGES("ordering.", TMC_FIFO_GAUGES);

constexpr std::string_view kKind = "ordering.fifo";
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t kRetiredEpochs = 4;

struct Sender {
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  bool in_use = false;
  std::uint64_t next = 1;            ///< next sequence number to deliver
  std::uint64_t delivered_bits = 0;  ///< bit i: seq (next - 1 - i) was delivered
  std::uint32_t retired[kRetiredEpochs] = {};
  std::uint8_t n_retired = 0;
  std::uint8_t retired_pos = 0;
  detail::IndexLinks lru;  ///< recency list (most recent at head), for eviction
  // Strict mode: the reorder ring and the list of senders that hold packets.
  std::unique_ptr<Packet*[]> ring;
  std::unique_ptr<std::uint64_t[]> ring_rx_ns;  ///< when each held packet arrived
  std::uint32_t held = 0;
  std::uint64_t oldest_ns = 0;  ///< arrival of the oldest held packet (a lower bound)
  bool oldest_dirty = false;    ///< oldest_ns may be too low; recompute before trusting it
  std::uint32_t hold_prev = kNone;  ///< the list of senders that hold packets (if `holding`)
  std::uint32_t hold_next = kNone;
  bool holding = false;
};

class FifoStage final : public Stage {
 public:
  ~FifoStage() override {
    // Packets still held are owned by this stage; give them back to their pool.
    for (Sender& s : senders_) {
      if (!s.ring) continue;
      for (std::uint32_t i = 0; i < window_; ++i) {
        if (s.ring[i] != nullptr) s.ring[i]->release();
      }
    }
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)errors;  // the registry checked every range
    strict_ = params.text("mode") == "strict";
    window_ = static_cast<std::uint32_t>(params.integer("window"));
    hold_ns_ = static_cast<std::uint64_t>(params.integer("hold_us")) * 1000;
    max_senders_ = static_cast<std::uint32_t>(params.integer("max_senders"));

    // Everything sized by max_senders is allocated here, so the hot path never grows it.
    senders_.resize(max_senders_);
    std::uint32_t cap = 1;
    while (cap < 2 * max_senders_) cap <<= 1;
    table_.reset(cap);
    // The endpoint's seed salts the hash so that a hostile sender cannot choose ids that
    // collide (the table stays O(1) under a flood).
    hash_salt_ = env.seed ^ 0x9E3779B97F4A7C15ull;
    return true;
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (p->kind == wire::Kind::control && p->gap_cause != 0 && p->rseq != 0 && p->payload_len == 0) {
      on_edge_marker(p, io);
      return;
    }
    if (p->kind != wire::Kind::data || (p->flags & wire::kFlagUnordered) != 0) {
      if (p->kind == wire::Kind::data) io.count(unordered);
      io.up(p);
      return;
    }
    if (p->seq == 0) {
      // Without ordering.seq below us there is nothing to order by.
      io.count(no_seq);
      io.drop(p, DropReason::malformed);
      return;
    }
    const std::uint32_t idx = find_or_add(p->sender, p->epoch, io);
    Sender& s = senders_[idx];
    touch(idx);
    if (p->epoch != s.epoch) {
      for (std::uint8_t i = 0; i < s.n_retired; ++i) {
        if (s.retired[i] == p->epoch) {
          io.count(stale_epoch_dropped);
          io.drop(p, DropReason::stale_epoch);
          return;
        }
      }
      change_epoch(idx, p->epoch, io);
    }
    if (s.next == 0) first_sight(s, p->seq, io);
    if (strict_) {
      receive_strict(idx, p, io);
    } else {
      receive_drop_stale(s, p, io);
    }
  }

  void on_tick(StageIo& io) noexcept override {
    timer_.fired();
    const std::uint64_t now = io.now_ns();
    std::uint64_t earliest = 0;
    std::uint32_t i = holders_head_;
    while (i != kNone) {
      const std::uint32_t after = senders_[i].hold_next;  // i may leave the list below
      Sender& s = senders_[i];
      if (s.oldest_dirty) recompute_oldest(s);
      while (s.held > 0 && s.oldest_ns + hold_ns_ <= now) {
        io.count(timeout_skips);
        skip_first_gap(i, io, EventCause::timeout);
        recompute_oldest(s);
      }
      if (s.held > 0 && (earliest == 0 || s.oldest_ns + hold_ns_ < earliest)) earliest = s.oldest_ns + hold_ns_;
      i = after;
    }
    if (earliest != 0) arm(earliest, io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return total_held_; }
  void read_gauges(std::span<double> out) const noexcept override {
    out[Gauge::held_packets] = static_cast<double>(total_held_);
  }
  // Sized for a few senders' full windows at once; beyond that the pool may run dry and a
  // packet is dropped (buffer_full) and, with reliability, repaired later.
  [[nodiscard]] std::size_t max_held_packets() const noexcept override { return std::size_t{window_} * 4; }

 private:
  // --- the two delivery rules --------------------------------------------------------

  // Did we deliver `seq` already? Only the last 64 numbers are remembered; older ones are
  // reported as stale rather than duplicate.
  static bool was_delivered(const Sender& s, std::uint64_t seq) noexcept {
    const std::uint64_t back = s.next - 1 - seq;  // seq < s.next
    return back < 64 && ((s.delivered_bits >> back) & 1u) != 0;
  }

  // Move `next` forward to `to`; the numbers passed over were not delivered.
  static void advance_to(Sender& s, std::uint64_t to) noexcept {
    const std::uint64_t k = to - s.next;
    s.delivered_bits = k >= 64 ? 0 : s.delivered_bits << k;
    s.next = to;
  }

  static void mark_delivered(Sender& s) noexcept {
    s.delivered_bits = (s.delivered_bits << 1) | 1u;
    ++s.next;
  }

  void drop_old(const Sender& s, Packet* p, StageIo& io) noexcept {
    if (was_delivered(s, p->seq)) {
      io.count(duplicates_dropped);
      io.drop(p, DropReason::duplicate);
    } else {
      io.count(stale_dropped);
      io.drop(p, DropReason::stale);
    }
  }

  void receive_drop_stale(Sender& s, Packet* p, StageIo& io) noexcept {
    if (p->seq < s.next) {
      drop_old(s, p, io);
      return;
    }
    advance_to(s, p->seq);
    mark_delivered(s);
    io.up(p);
  }

  void receive_strict(std::uint32_t idx, Packet* p, StageIo& io) noexcept {
    Sender& s = senders_[idx];
    const std::uint64_t seq = p->seq;
    if (seq < s.next) {
      drop_old(s, p, io);
      return;
    }
    if (seq == s.next) {
      mark_delivered(s);
      io.up(p);
      if (s.held > 0) release_run(idx, io);
      return;
    }
    if (p->gap_cause != 0) {
      // The stage below says the sender settled every number missing before this one (it
      // forgot them, they expired, or it gave up): waiting for them is no use. Held runs
      // below it go up first, each gap before them skipped.
      const auto cause = static_cast<EventCause>(p->gap_cause);
      while (s.held > 0 && first_held(s) < seq) skip_first_gap(idx, io, cause);
      if (seq > s.next) {
        note_gap(s, s.next, seq - s.next, io, cause);
        advance_to(s, seq);
      }
      if (seq != s.next) {
        drop_old(s, p, io);
        return;
      }
      mark_delivered(s);
      io.up(p);
      if (s.held > 0) release_run(idx, io);
      return;
    }
    if (!ensure_ring(s)) {
      // No memory for a reorder buffer: degrade to the paper's rule for this sender
      // rather than fail (order is kept; the gap is skipped at once).
      note_gap(s, s.next, seq - s.next, io);
      advance_to(s, seq);
      mark_delivered(s);
      io.up(p);
      return;
    }
    // seq is ahead of next: it must fit in (next, next + window] to be held.
    while (seq - s.next > window_ && s.held > 0) {
      io.count(window_skips);
      skip_first_gap(idx, io);
    }
    if (seq < s.next) {  // skipping delivered past it (cannot happen: seq is not held)
      drop_old(s, p, io);
      return;
    }
    if (seq == s.next) {
      mark_delivered(s);
      io.up(p);
      if (s.held > 0) release_run(idx, io);
      return;
    }
    if (seq - s.next > window_) {
      // Nothing held and seq is beyond the window: give up on what the window cannot
      // cover, and hold seq at its far end.
      io.count(window_skips);
      note_gap(s, s.next, seq - window_ - s.next, io);
      advance_to(s, seq - window_);
    }
    const std::uint32_t slot = static_cast<std::uint32_t>(seq % window_);
    if (s.ring[slot] != nullptr) {
      io.count(duplicates_dropped);
      io.drop(p, DropReason::duplicate);
      return;
    }
    const std::uint64_t now = io.now_ns();
    s.ring[slot] = p;
    s.ring_rx_ns[slot] = now;
    if (s.held++ == 0) {
      s.oldest_ns = now;
      s.oldest_dirty = false;
      holders_push(idx);
    }
    ++total_held_;
    io.count(held);
    arm(s.oldest_ns + hold_ns_, io);
  }

  // Reliability below passed over a hole its sender settled, after packets above that hole
  // had gone up unordered (Packet::rseq): every packet of the sender at or below the marker's
  // number has reached us already or never will, so a gap below a held packet at or below
  // it waits for nothing. Skip those gaps now. The marker is never delivered.
  void on_edge_marker(Packet* m, StageIo& io) noexcept {
    if (strict_) {
      const std::uint32_t idx = table_.find(hash(m->sender), m->sender);
      if (idx != kNone && senders_[idx].in_use && senders_[idx].epoch == m->epoch) {
        Sender& s = senders_[idx];
        const auto cause = static_cast<EventCause>(m->gap_cause);
        while (s.held > 0) {
          const std::uint64_t first = first_held(s);
          const std::uint64_t r = s.ring[first % window_]->rseq;
          if (r == 0 || r > m->rseq) break;
          skip_first_gap(idx, io, cause);
        }
      }
    }
    m->release();
  }

  // --- strict-mode helpers ------------------------------------------------------------

  bool ensure_ring(Sender& s) noexcept {
    if (s.ring) return true;
    s.ring.reset(new (std::nothrow) Packet*[window_]);
    s.ring_rx_ns.reset(new (std::nothrow) std::uint64_t[window_]);
    if (!s.ring || !s.ring_rx_ns) {
      s.ring.reset();
      s.ring_rx_ns.reset();
      return false;
    }
    for (std::uint32_t i = 0; i < window_; ++i) s.ring[i] = nullptr;
    return true;
  }

  Packet* take(Sender& s, std::uint32_t slot) noexcept {
    Packet* p = s.ring[slot];
    s.ring[slot] = nullptr;
    --s.held;
    --total_held_;
    return p;
  }

  // Deliver the held packets that now follow `next` without a gap.
  void release_run(std::uint32_t idx, StageIo& io) noexcept {
    Sender& s = senders_[idx];
    while (s.held > 0) {
      const auto slot = static_cast<std::uint32_t>(s.next % window_);
      Packet* p = s.ring[slot];
      if (p == nullptr || p->seq != s.next) break;
      take(s, slot);
      mark_delivered(s);
      io.count(released);
      io.up(p);
    }
    // The oldest held packet may just have left; recompute lazily (tick trusts only a
    // recomputed value, and a too-early deadline merely costs a spurious tick).
    if (s.held == 0) {
      holders_remove(idx);
    } else {
      s.oldest_dirty = true;
    }
  }

  // The number of the first held packet (held numbers lie in (next, next + window]).
  [[nodiscard]] std::uint64_t first_held(const Sender& s) const noexcept {
    for (std::uint64_t q = s.next + 1; q <= s.next + window_; ++q) {
      const Packet* h = s.ring[q % window_];
      if (h != nullptr && h->seq == q) return q;
    }
    return std::numeric_limits<std::uint64_t>::max();
  }

  // Give up on the gap at `next`: jump to the first held packet and deliver the run.
  void skip_first_gap(std::uint32_t idx, StageIo& io, EventCause cause = EventCause::none) noexcept {
    Sender& s = senders_[idx];
    if (s.held == 0) return;
    // Held numbers lie in (next, next + window], so the scan ends within the window.
    std::uint64_t first = s.next + 1;
    const std::uint64_t last = s.next + window_;
    while (first < last && (s.ring[first % window_] == nullptr || s.ring[first % window_]->seq != first)) ++first;
    note_gap(s, s.next, first - s.next, io, cause);
    advance_to(s, first);
    release_run(idx, io);
  }

  static void note_gap(const Sender& s, std::uint64_t from, std::uint64_t count, StageIo& io,
                       EventCause cause = EventCause::none) noexcept {
    if (count == 0) return;
    io.count(gaps_skipped);
    io.count(seqs_skipped, count);
    notify_gap(s, from, count, io, cause);
  }

  static void notify_gap(const Sender& s, std::uint64_t from, std::uint64_t count, StageIo& io,
                         EventCause cause = EventCause::none) noexcept {
    io.notify(Event{.type = EventType::gap_skipped,
                    .sender = s.id,
                    .epoch = s.epoch,
                    .seq = from,
                    .count = count,
                    .stage = kKind,
                    .cause = cause});
  }

  // Deliver everything held, in order, skipping every gap (epoch change, eviction).
  void flush(std::uint32_t idx, StageIo& io) noexcept {
    while (senders_[idx].held > 0) skip_first_gap(idx, io);
  }

  void recompute_oldest(Sender& s) const noexcept {
    s.oldest_dirty = false;
    if (s.held == 0) return;
    std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t n = s.held;  // visit held slots only: they lie in (next, next + window]
    std::uint64_t seen = 0;
    for (std::uint64_t q = s.next + 1; seen < n && q <= s.next + window_; ++q) {
      const auto slot = static_cast<std::uint32_t>(q % window_);
      const Packet* p = s.ring[slot];
      if (p != nullptr && p->seq == q) {
        ++seen;
        if (s.ring_rx_ns[slot] < oldest) oldest = s.ring_rx_ns[slot];
      }
    }
    s.oldest_ns = oldest;
  }

  void arm(std::uint64_t deadline_ns, StageIo& io) noexcept { timer_.arm_by(io, deadline_ns); }

  // --- senders: lookup, recency, epochs, eviction --------------------------------------

  void first_sight(Sender& s, std::uint64_t seq, StageIo& io) const noexcept {
    // See Notes: a small number means we may have seen the sender's start, so wait for
    // seq 1; a larger one is a late join (or a lost start), reported as one gap.
    s.next = 1;
    s.delivered_bits = 0;
    if (strict_ && seq > std::uint64_t{window_} + 1) {
      io.count(join_skipped);
      io.count(join_seqs_skipped, seq - 1);
      notify_gap(s, 1, seq - 1, io);
      s.next = seq;
    }
  }

  void change_epoch(std::uint32_t idx, std::uint32_t epoch, StageIo& io) noexcept {
    Sender& s = senders_[idx];
    flush(idx, io);
    s.retired[s.retired_pos] = s.epoch;
    s.retired_pos = static_cast<std::uint8_t>((s.retired_pos + 1) % kRetiredEpochs);
    if (s.n_retired < kRetiredEpochs) ++s.n_retired;
    s.epoch = epoch;
    s.next = 0;  // first_sight() decides where delivery starts
    io.count(epoch_changes);
    io.notify(Event{.type = EventType::epoch_changed, .sender = s.id, .epoch = epoch, .stage = kKind});
  }

  [[nodiscard]] std::uint32_t hash(std::uint32_t id) const noexcept {
    // A full 64-bit mix (murmur3's finaliser) of the salted id.
    std::uint64_t x = id + hash_salt_;
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return static_cast<std::uint32_t>(x);
  }

  // The sender's slot; a sender seen for the first time starts in `epoch` (no event).
  std::uint32_t find_or_add(std::uint32_t id, std::uint32_t epoch, StageIo& io) noexcept {
    if (const std::uint32_t found = table_.find(hash(id), id); found != kNone) return found;
    std::uint32_t idx;
    if (n_senders_ < max_senders_) {
      idx = n_senders_++;
    } else {
      idx = eviction_victim(io.group());
      evict(idx, io);
    }
    table_.insert(hash(id), id, idx);
    Sender& s = senders_[idx];
    s.id = id;
    s.in_use = true;
    s.n_retired = 0;
    s.retired_pos = 0;
    s.epoch = epoch;
    s.next = 0;  // first_sight() decides where delivery starts
    lru_.push_front(senders_.data(), idx);
    return idx;
  }

  // The least recently active sender outside the view: a flood of unknown sender ids
  // never evicts a member. A member goes only when every tracked sender is one (the view
  // holds more members than max_senders).
  [[nodiscard]] std::uint32_t eviction_victim(const Group& g) const noexcept {
    for (std::uint32_t i = lru_.back(); i != detail::kNoIndex; i = senders_[i].lru.prev) {
      if (g.slot_of_sender(senders_[i].id) == kNoSlot) return i;
    }
    return lru_.back();
  }

  void evict(std::uint32_t idx, StageIo& io) noexcept {
    Sender& s = senders_[idx];
    io.count(senders_evicted);
    flush(idx, io);
    lru_.remove(senders_.data(), idx);
    table_.erase(hash(s.id), idx, [this](std::uint32_t id, std::uint32_t) { return hash(id); });
    s.in_use = false;
  }

  void touch(std::uint32_t idx) noexcept { lru_.move_to_front(senders_.data(), idx); }

  // The holders list needs no tail and sits on the hold-and-release path of every
  // out-of-order packet, so it is written out here: through IndexList (which keeps a tail)
  // BM_fifo_strict_receive_swapped_pairs measured about 3 ns slower per pair.
  void holders_push(std::uint32_t idx) noexcept {
    Sender& s = senders_[idx];
    if (s.holding) return;
    s.holding = true;
    s.hold_prev = kNone;
    s.hold_next = holders_head_;
    if (holders_head_ != kNone) senders_[holders_head_].hold_prev = idx;
    holders_head_ = idx;
  }

  void holders_remove(std::uint32_t idx) noexcept {
    Sender& s = senders_[idx];
    if (!s.holding) return;
    s.holding = false;
    if (s.hold_prev != kNone) senders_[s.hold_prev].hold_next = s.hold_next;
    else holders_head_ = s.hold_next;
    if (s.hold_next != kNone) senders_[s.hold_next].hold_prev = s.hold_prev;
    s.hold_prev = s.hold_next = kNone;
  }

  bool strict_ = false;
  std::uint32_t window_ = 64;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint32_t max_senders_ = 1024;
  std::vector<Sender> senders_;
  std::uint32_t n_senders_ = 0;
  detail::IndexList<Sender, &Sender::lru> lru_;
  std::uint32_t holders_head_ = kNone;
  detail::IndexTable table_;  ///< sender id -> index into senders_
  std::uint64_t hash_salt_ = 0;
  std::size_t total_held_ = 0;
  detail::StageTimer timer_;
};

constexpr std::string_view kModes[] = {"drop-stale", "strict"};

}  // namespace

void register_ordering_fifo(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Point-to-point ordering: each sender's messages are delivered in the order they were sent.",
      .notes =
          "Orders by the number ordering.seq stamps (that stage must sit below this one), per (sender, epoch). "
          "`drop-stale` is the paper's rule: deliver a packet if its number is newer than the last delivered, "
          "else drop it. `strict` delivers in exact order: early packets wait in a per-sender ring of `window` "
          "slots (allocated when the sender is first seen, reused after eviction, never per message); when a "
          "packet lands beyond the window, or a held packet has waited `hold_us`, the first gap is skipped, "
          "the run after it delivered, and a `gap_skipped` event raised. On first sight of a (sender, epoch), "
          "strict mode waits for 1 if the number is at most window + 1 (a lost start is then skipped and "
          "reported like any gap); a larger number means a late join or a start lost beyond the window, which "
          "the stage cannot tell apart, so it reports [1, number) as one `gap_skipped` event (counted under "
          "`ordering.join_skipped`, not `ordering.gaps_skipped`) and starts there: every number is either "
          "delivered or inside a reported gap. Drop-stale mode reports no gaps and accepts any first number. "
          "A new epoch from a known sender means it restarted: what is held is delivered, the "
          "state reset, and `epoch_changed` raised; packets of its last 4 replaced epochs are dropped "
          "(`drops.stale_epoch`). Duplicates of the last 64 delivered numbers or of held packets count as "
          "`drops.duplicate`, other old numbers as `drops.stale`. Packets flagged unordered, and control "
          "kinds, pass straight through. Beyond `max_senders` the least recently active sender is evicted "
          "(its held packets delivered first), which bounds memory under a flood of sender ids. No wire "
          "bytes of its own.",
      .params = {{.name = "mode",
                  .type = ParamType::string,
                  .default_value = "drop-stale",
                  .doc = "\"drop-stale\" (deliver if newer than the last delivered, else drop) or \"strict\" "
                         "(exact order through a bounded reorder buffer).",
                  .one_of = kModes},
                 {.name = "window",
                  .type = ParamType::integer,
                  .default_value = "64",
                  .doc = "strict: packets held per sender at most (1..65536).",
                  .min = 1,
                  .max = 65536},
                 {.name = "hold_us",
                  .type = ParamType::integer,
                  .default_value = "50000",
                  .doc = "strict: longest a held packet waits for a gap to fill, in microseconds.",
                  .min = 1,
                  .max = 3'600'000'000},
                 {.name = "max_senders",
                  .type = ParamType::integer,
                  .default_value = "1024",
                  .doc = "Senders tracked at once; beyond it the least recently active is evicted.",
                  .min = 1,
                  .max = 1 << 20}},
      .counters = counter_list(kCounters),
      .gauges = gauge_list(kGauges),
      .factory = [] { return std::make_unique<FifoStage>(); },
      .serves = "point_to_point_ordering",
      .requires_below = {"ordering.seq"},
      .per_message = true,
  });
}

}  // namespace tmc
