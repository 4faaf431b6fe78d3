// reliability.arq — acknowledged multicast with retransmission (paper §3.2, issue 4).
//
// Synopsis
//   Sender: stamps each reliable packet with a reliable sequence number (Ext::rel), keeps a
//   copy until the packet's ack set has acknowledged it, retransmits on timeout (RTO from
//   measured RTT, Jacobson/Karels, Karn's rule, exponential backoff) and on NACK, and
//   reports each message's outcome exactly once: delivery_met (who acked) or
//   delivery_failed (who never did) after max_retries, or at once when the view says a
//   required member failed or left.
//   Receiver: delivers each reliable packet once (dedupe per sender incarnation in a
//   bitmap window), acknowledges with cumulative + 64-bit SACK acks coalesced by time
//   (ack_delay_us) and count (ack_every), re-acks duplicates (the earlier ack was lost),
//   and repairs gaps with NACKs delayed by a random time and suppressed when another
//   member already asked for the same range (NORM/SRM-style). With deliver=in_order it
//   passes each sender's reliable packets up in sequence order, holding those behind a
//   gap (see Notes).
// Params
//   messages (all|flagged), ack_from, ack_fraction, ack_k, max_retries, window,
//   rto_initial_us, rto_min_us, rto_max_us, ack_delay_us, ack_every, nack_delay_us,
//   deliver (arrival|in_order).
// Wire
//   Ext::rel on reliable data/control packets, Kind::ack and Kind::nack with Ext::ack
//   bodies; layouts in ack_format.hpp. Unreliable packets carry nothing extra.
// Notes
//   The ack set is fixed when a message is sent, from the Group view (tmc/group.hpp).
//   Each Ext::rel also carries the sender's trailing edge (lowest unsettled rseq): a
//   receiver that joins mid-stream starts there instead of at 1, and a receiver stops
//   waiting for (and NACKing) anything the sender has already settled, so a partition
//   that heals never leaves a receiver asking for history forever.
//   Hot paths do not allocate: the sender's window and the receivers' bitmaps (64 senders)
//   are allocated in configure().
//
//   deliver=in_order (the compiler asks for it when point-to-point ordering sits above):
//   a reliable packet that arrives above a gap is held here, in a ring indexed by its
//   reliable number, and passed up when the gap fills, so the ordering stage above sees
//   each sender's packets in order and holds nothing. The point is cost: with coalescing
//   above, one held datagram carries a whole batch, where the ordering stage would hold
//   every message of it separately. Holding here is an optimisation only; ordering above
//   stays the authority. Held packets go up early, in order, when the sender's trailing
//   edge passes them (it gave up on the gap), when its incarnation changes or its state is
//   evicted, after rto_max_us without the gap filling, and a packet arriving when `window`
//   packets are held (all senders together) is not held at all. Acks do not wait for
//   delivery: a held packet is acknowledged like any other.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "primitives/reliability/ack_format.hpp"
#include "tmc/rng.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Reliable numbers an ack's SACK bitmap covers beyond cumulative + 1 (ack_format.hpp).
constexpr std::uint64_t kSackSpan = 64;

using detail::AckBody;
using detail::NackBody;
using detail::RelBody;

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

constexpr std::size_t kMaxRxSenders = kMaxGroupMembers;
constexpr std::uint32_t kMaxNackRanges = 4;  // NACK packets per sender per round
constexpr std::uint32_t kMaxRtoBurst = 64;    // retransmissions per timeout scan
constexpr std::uint64_t kSilenceRtoMax = 1;   // no ack progress for this many rto_max: a loss
constexpr std::uint64_t kUs = 1000;

enum class AckMode : std::uint8_t { all, named, count };

// One unsettled reliable message at the sender.
struct Entry {
  Packet* copy = nullptr;       // unsealed copy, cloned for each retransmission
  std::uint64_t rseq = 0;       // 0: slot free (settled)
  std::uint64_t token = 0;
  MemberMask required = 0;      // all/named: who must ack; count: candidates
  MemberMask acked = 0;
  std::uint64_t first_sent_ns = 0;
  std::uint64_t last_sent_ns = 0;
  std::uint64_t deadline_ns = 0;  // next RTO expiry
  std::uint64_t out_ns = 0;       // when it was known to have left the stages below (if `out`)
  std::uint32_t need = 0;         // count mode: acks needed
  std::uint16_t retries = 0;       // timeouts with evidence of loss (the retry budget)
  std::uint16_t timeouts = 0;      // every timeout (the backoff)
  bool retransmitted = false;     // Karn: no RTT samples from it
  bool unresolved = false;        // named mode: some ack_from name had no slot yet
  bool out = false;               // known to have left the stages below (see mark_out())
};

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
  std::uint32_t nack_round = 0;
  bool nack_suppressed = false;
  // A hole that opens while the next round waits out its backoff is asked for at once (a
  // "fresh" round, from fresh_from up, which spends no round); the backed-off round
  // resumes at resume_due_ns after it.
  bool fresh = false;
  std::uint64_t fresh_from = 0;
  std::uint64_t resume_due_ns = 0;
  std::uint64_t* bits = nullptr;  // ring bitmap for (cum, cum + window_bits]
  // deliver=in_order: packets held above a gap, by rseq % rx_bits_; every held rseq lies
  // in (released, released + rx_bits_]. Allocated the first time this slot holds one.
  Packet** held = nullptr;
  std::uint32_t n_held = 0;
  std::uint64_t released = 0;       // every held packet at or below this has gone up
  std::uint64_t held_since_ns = 0;  // when the current wait behind a gap began
};

std::uint8_t* rel_body_mut(Packet& p) noexcept {
  for (std::uint8_t i = 0; i < p.n_ext; ++i) {
    if (p.ext_type[i] == static_cast<std::uint8_t>(wire::Ext::rel) && p.ext_len[i] == detail::kRelBodyBytes) {
      return p.buf + p.ext_body[i];
    }
  }
  return nullptr;
}

class ArqStage final : public Stage {
 public:
  ~ArqStage() override {
    out_.release_all();
    for (Entry& e : entries_) {
      if (e.copy != nullptr) e.copy->release();
    }
    for (RxState& s : rx_) {
      for (std::uint64_t i = 0; s.held != nullptr && s.n_held > 0 && i < rx_bits_; ++i) {
        if (s.held[i] != nullptr) {
          s.held[i]->release();
          s.held[i] = nullptr;
          --s.n_held;
        }
      }
    }
    while (queue_head_ != nullptr) {
      Packet* p = queue_head_;
      queue_head_ = p->next;
      p->next = nullptr;
      p->release();
    }
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    env_ = env;
    const std::string messages = params.get_string("messages", "all");
    if (messages == "all") {
      all_messages_ = true;
    } else if (messages == "flagged") {
      all_messages_ = false;
    } else {
      errors.push_back("parameter 'messages' must be 'all' or 'flagged', got '" + messages + "'");
    }
    const std::string from = params.get_string("ack_from", "");
    for (std::size_t pos = 0; pos <= from.size();) {
      std::size_t comma = from.find(',', pos);
      if (comma == std::string::npos) comma = from.size();
      std::string name = from.substr(pos, comma - pos);
      const auto b = name.find_first_not_of(" \t");
      const auto e = name.find_last_not_of(" \t");
      name = b == std::string::npos ? std::string() : name.substr(b, e - b + 1);
      if (!name.empty()) ack_from_.push_back(std::move(name));
      pos = comma + 1;
    }
    if (ack_from_.size() > kMaxGroupMembers) {
      errors.push_back("parameter 'ack_from' names " + std::to_string(ack_from_.size()) + " members; at most " +
                       std::to_string(kMaxGroupMembers) + " are possible");
    }
    ack_fraction_ = params.get_real("ack_fraction", 0.0);
    if (!(ack_fraction_ >= 0.0 && ack_fraction_ <= 1.0)) {
      errors.push_back("parameter 'ack_fraction' must lie in [0, 1], got " + std::to_string(ack_fraction_));
    }
    const std::int64_t k = params.get_int("ack_k", 0);
    if (k < 0 || k > static_cast<std::int64_t>(kMaxGroupMembers)) {
      errors.push_back("parameter 'ack_k' must lie in [0, 64], got " + std::to_string(k));
    }
    ack_k_ = static_cast<std::uint32_t>(std::clamp<std::int64_t>(k, 0, 64));
    const int ways = (ack_from_.empty() ? 0 : 1) + (ack_fraction_ > 0.0 ? 1 : 0) + (ack_k_ > 0 ? 1 : 0);
    if (ways > 1) errors.push_back("give at most one of the parameters 'ack_from', 'ack_fraction' and 'ack_k'");
    mode_ = !ack_from_.empty() ? AckMode::named : (ack_fraction_ > 0.0 || ack_k_ > 0) ? AckMode::count : AckMode::all;

    auto int_param = [&](const char* name, std::int64_t def, std::int64_t lo, std::int64_t hi) {
      const std::int64_t v = params.get_int(name, def);
      if (v < lo || v > hi) {
        errors.push_back("parameter '" + std::string(name) + "' must lie in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "], got " + std::to_string(v));
        return std::clamp(v, lo, hi);
      }
      return v;
    };
    max_retries_ = static_cast<std::uint32_t>(int_param("max_retries", 8, 0, 1000));
    window_ = static_cast<std::uint32_t>(
        int_param("window", 4096, 1, static_cast<std::int64_t>(detail::kMaxRelTrailDistance)));
    const std::int64_t day_us = 86'400'000'000;
    rto_initial_ns_ = static_cast<std::uint64_t>(int_param("rto_initial_us", 50'000, 1, day_us)) * kUs;
    rto_min_ns_ = static_cast<std::uint64_t>(int_param("rto_min_us", 2'000, 1, day_us)) * kUs;
    rto_max_ns_ = static_cast<std::uint64_t>(int_param("rto_max_us", 1'000'000, 1, day_us)) * kUs;
    ack_delay_ns_ = static_cast<std::uint64_t>(int_param("ack_delay_us", 500, 0, day_us)) * kUs;
    ack_every_ = static_cast<std::uint32_t>(int_param("ack_every", 32, 1, 1'000'000));
    nack_delay_ns_ = static_cast<std::uint64_t>(int_param("nack_delay_us", 1'000, 0, day_us)) * kUs;
    const std::string deliver = params.get_string("deliver", "arrival");
    if (deliver == "in_order") {
      in_order_ = true;
    } else if (deliver != "arrival") {
      errors.push_back("parameter 'deliver' must be 'arrival' or 'in_order', got '" + deliver + "'");
    }
    if (rto_min_ns_ > rto_max_ns_) {
      errors.push_back("parameter 'rto_min_us' (" + std::to_string(rto_min_ns_ / kUs) +
                       ") must not exceed 'rto_max_us' (" + std::to_string(rto_max_ns_ / kUs) + ")");
    }
    if (!errors.empty()) return false;
    rto_ns_ = std::clamp(rto_initial_ns_, rto_min_ns_, rto_max_ns_);
    rng_.reseed(derive(env.seed, 0x52454C /* "REL" */));

    // Cold: the whole window and every receive bitmap, once.
    entries_.assign(window_, Entry{});
    rx_bits_ = (static_cast<std::uint64_t>(window_) + 63) / 64 * 64;
    if (rx_bits_ < 128) rx_bits_ = 128;  // room for the SACK bitmap beyond cum + 1
    bitmap_.assign(kMaxRxSenders * (rx_bits_ / 64), 0);
    rx_.assign(kMaxRxSenders, RxState{});
    for (std::size_t i = 0; i < kMaxRxSenders; ++i) rx_[i].bits = bitmap_.data() + i * (rx_bits_ / 64);
    if (in_order_) rings_.resize(kMaxRxSenders);
    return true;
  }

  void on_start(StageIo& io) noexcept override { check_view(io); }

  void on_stop(StageIo& io) noexcept override {
    // Acknowledge what we received and have not acked yet (an ack waiting for its delay):
    // membership's goodbye goes out after this (it is lower in the pipeline), and a sender
    // that hears the goodbye first fails every message it still waits for us on.
    for (RxState& s : rx_) {
      if (s.used && s.ack_due_ns != 0) send_ack(s, io);
    }
    // The pipeline is retiring: report every message still waiting as failed, so the
    // application never waits on silence.
    ++depth_;
    for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
      Entry& e = entry(r);
      if (e.rseq == r) settle(e, false, io);
    }
    while (queue_head_ != nullptr) {
      Packet* p = pop_queue();
      Event ev{};
      ev.type = EventType::delivery_failed;
      ev.sender = env_.sender;
      ev.epoch = env_.epoch;
      ev.stage = kKind;
      ev.token = p->token;
      ev.members = required_now(io.group());
      io.count(c_failed);
      io.notify(ev);
      p->release();
    }
    --depth_;
    io.cancel_timer();
    armed_ns_ = 0;
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return held_ + queued_ + rx_held_; }
  // One copy per unsettled message in the window (the queue is bounded by the shell's send queue).
  // One copy per unsettled message in the window (the queue is bounded by the shell's send
  // queue), and with deliver=in_order as many received packets held for order.
  [[nodiscard]] std::size_t max_held_packets() const noexcept override {
    return std::size_t{window_} * (in_order_ ? 2 : 1);
  }
  [[nodiscard]] std::size_t send_backlog() const noexcept override { return queued_; }

  // ------------------------------------------------------------------------------------
  // Send path
  // ------------------------------------------------------------------------------------

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (!is_reliable(*p)) {
      io.down(p);
      return;
    }
    // While this stage is busy (a stage above sends from inside a delivery), or messages
    // are already waiting, keep FIFO order through the queue.
    if (depth_ > 0 || queue_head_ != nullptr || next_rseq_ - trail_ >= window_) {
      push_queue(p);
      io.count(c_queued);
      if (depth_ == 0) update_timer(io);
      return;
    }
    ++depth_;
    check_view(io);
    transmit_new(p, io);
    pump(io);
    --depth_;
    update_timer(io);
  }

  // ------------------------------------------------------------------------------------
  // Receive path
  // ------------------------------------------------------------------------------------

  void on_receive(Packet* p, StageIo& io) noexcept override {
    ++depth_;
    check_view(io);
    if (p->kind == wire::Kind::ack) {
      on_ack(p, io);
    } else if (p->kind == wire::Kind::nack) {
      on_nack(p, io);
    } else if ((p->kind == wire::Kind::data || p->kind == wire::Kind::control) &&
               (p->flags & wire::kFlagReliable) != 0 && p->ext(wire::Ext::rel) != nullptr) {
      on_reliable(p, io);  // passes p up last
      p = nullptr;
    } else {
      io.up(p);
    }
    pump(io);
    --depth_;
    update_timer(io);
  }

  void on_tick(StageIo& io) noexcept override {
    armed_ns_ = 0;
    ++depth_;
    check_view(io);
    const std::uint64_t now = io.now_ns();
    if (sender_deadline_ != 0 && now >= sender_deadline_) scan_sender(io);
    if (retry_queue_ns_ != 0 && now >= retry_queue_ns_) retry_queue_ns_ = 0;
    if (rx_deadline_ != 0 && now >= rx_deadline_) scan_receivers(io);
    pump(io);
    --depth_;
    update_timer(io);
  }

 private:
  static constexpr std::string_view kKind = "reliability.arq";

  // --- helpers: sender -------------------------------------------------------------------

  bool is_reliable(const Packet& p) const noexcept {
    if (p.kind == wire::Kind::data && all_messages_) return true;
    return (p.flags & wire::kFlagReliable) != 0 && (p.kind == wire::Kind::data || p.kind == wire::Kind::control);
  }

  Entry& entry(std::uint64_t rseq) noexcept { return entries_[static_cast<std::size_t>(rseq % window_)]; }

  void push_queue(Packet* p) noexcept {
    p->next = nullptr;
    if (queue_tail_ != nullptr) {
      queue_tail_->next = p;
    } else {
      queue_head_ = p;
    }
    queue_tail_ = p;
    ++queued_;
  }
  void push_queue_front(Packet* p) noexcept {
    p->next = queue_head_;
    queue_head_ = p;
    if (queue_tail_ == nullptr) queue_tail_ = p;
    ++queued_;
  }
  Packet* pop_queue() noexcept {
    Packet* p = queue_head_;
    queue_head_ = p->next;
    if (queue_head_ == nullptr) queue_tail_ = nullptr;
    p->next = nullptr;
    --queued_;
    return p;
  }

  // Send what waits in the queue while the window has room.
  void pump(StageIo& io) noexcept {
    while (queue_head_ != nullptr && next_rseq_ - trail_ < window_ && retry_queue_ns_ == 0) {
      Packet* p = pop_queue();
      if (!transmit_new(p, io)) break;
    }
  }

  // Resolve ack_from names against the view (cached per view).
  void resolve_named(const Group& g) noexcept {
    named_mask_ = 0;
    named_unknown_ = false;
    for (const std::string& n : ack_from_) {
      const int slot = g.slot_of_name(n);
      if (slot == kNoSlot) {
        named_unknown_ = true;
      } else if (slot != g.self_slot() && g.member(slot).receives) {
        named_mask_ |= slot_bit(slot);
      }
    }
  }

  static MemberMask gone(const Group& g) noexcept {
    MemberMask m = 0;
    for (std::size_t i = 1; i < g.slots(); ++i) {
      const MemberState s = g.member(static_cast<int>(i)).state;
      if (s == MemberState::failed || s == MemberState::left) m |= slot_bit(static_cast<int>(i));
    }
    return m;
  }

  MemberMask required_now(const Group& g) const noexcept {
    return mode_ == AckMode::named ? named_mask_ : g.receivers();
  }

  // Called on every input: a new view may fail messages waiting for a member that is gone,
  // resolve ack_from names heard for the first time, and widen k-of-n candidates.
  void check_view(StageIo& io) noexcept {
    const Group& g = io.group();
    if (g.view_id() == view_seen_) return;
    view_seen_ = g.view_id();
    self_receives_ = g.member(g.self_slot()).receives;
    if (mode_ == AckMode::named) resolve_named(g);
    const MemberMask dead = gone(g);
    for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
      Entry& e = entry(r);
      if (e.rseq != r) continue;
      if (mode_ == AckMode::count) {
        e.required |= g.receivers();
        const int possible = mask_count(e.acked) + mask_count(e.required & ~e.acked & ~dead);
        if (static_cast<std::uint32_t>(possible) < e.need) settle(e, false, io);
        continue;
      }
      if (e.unresolved) {
        e.required |= named_mask_;
        e.unresolved = named_unknown_;
      }
      if ((e.required & ~e.acked & dead) != 0) {
        settle(e, false, io);
      } else if (met(e)) {
        settle(e, true, io);
      }
    }
  }

  bool met(const Entry& e) const noexcept {
    if (mode_ == AckMode::count) return static_cast<std::uint32_t>(mask_count(e.acked)) >= e.need;
    return !e.unresolved && (e.required & ~e.acked) == 0;
  }

  // Stamp and send one reliable packet (the window has room). False when the pool had no
  // buffer for the copy: the packet goes back to the head of the queue for a later try.
  bool transmit_new(Packet* p, StageIo& io) noexcept {
    const Group& g = io.group();
    const std::uint64_t now = io.now_ns();
    MemberMask required = 0;
    std::uint32_t need = 0;
    bool unresolved = false;
    switch (mode_) {
      case AckMode::all:
        required = g.receivers();
        break;
      case AckMode::named:
        required = named_mask_;
        unresolved = named_unknown_;
        break;
      case AckMode::count: {
        required = g.receivers();
        const auto n = static_cast<std::uint32_t>(mask_count(required));
        need = ack_k_ > 0 ? ack_k_ : static_cast<std::uint32_t>(std::ceil(ack_fraction_ * n - 1e-9));
        break;
      }
    }
    const bool trivially_met = mode_ == AckMode::count ? need == 0 : (required == 0 && !unresolved);

    Packet* copy = nullptr;
    if (!trivially_met) {
      copy = io.clone(*p);
      if (copy == nullptr) {
        // No buffer to keep a copy: wait (in order) and try again shortly.
        io.count(c_no_buffer);
        push_queue_front(p);
        retry_queue_ns_ = now + rto_min_ns_;
        return false;
      }
    }
    const std::uint64_t rseq = next_rseq_;
    std::uint8_t* body = p->push_ext(wire::Ext::rel, detail::kRelBodyBytes);
    std::uint8_t* copy_body = copy != nullptr ? copy->push_ext(wire::Ext::rel, detail::kRelBodyBytes) : nullptr;
    if (body == nullptr || (copy != nullptr && copy_body == nullptr)) {
      // No headroom (or sealed by a stage above): it cannot be made reliable.
      if (copy != nullptr) copy->release();
      io.count(c_no_buffer);
      Event ev{};
      ev.type = EventType::delivery_failed;
      ev.sender = env_.sender;
      ev.epoch = env_.epoch;
      ev.stage = kKind;
      ev.token = p->token;
      ev.members = required;
      io.count(c_failed);
      io.notify(ev);
      io.drop(p, DropReason::buffer_full);
      return true;
    }
    ++next_rseq_;
    p->flags |= wire::kFlagReliable;
    const RelBody rel{rseq, trail_};
    detail::encode_rel(body, rel);
    io.count(c_sent);
    if (trivially_met) {
      if (trail_ == rseq) trail_ = next_rseq_;
      Event ev{};
      ev.type = EventType::delivery_met;
      ev.sender = env_.sender;
      ev.epoch = env_.epoch;
      ev.seq = rseq;
      ev.stage = kKind;
      ev.token = p->token;
      io.count(c_met);
      io.notify(ev);
      io.down(p);
      return true;
    }
    copy->flags |= wire::kFlagReliable;
    detail::encode_rel(copy_body, rel);
    Entry& e = entry(rseq);
    e = Entry{};
    e.copy = copy;
    e.rseq = rseq;
    e.token = p->token;
    e.required = required;
    e.need = need;
    e.unresolved = unresolved;
    e.first_sent_ns = e.last_sent_ns = now;
    e.deadline_ns = now + rto_ns_;
    ++held_;
    if (sender_deadline_ == 0 || e.deadline_ns < sender_deadline_) sender_deadline_ = e.deadline_ns;
    if (trail_ == rseq) mark_out(rseq, now);  // nothing older unsettled: nothing below holds it
    io.down(p);
    return true;
  }

  bool retransmit(Entry& e, StageIo& io) noexcept {
    // Refresh the trailing edge the copy advertises, then send a clone of it.
    if (std::uint8_t* body = rel_body_mut(*e.copy); body != nullptr) detail::encode_rel(body, RelBody{e.rseq, trail_});
    Packet* r = io.clone(*e.copy);
    if (r == nullptr) {
      io.count(c_no_buffer);
      return false;
    }
    e.last_sent_ns = io.now_ns();
    e.retransmitted = true;
    // The repair needs a round trip before its acks can show up: its timer starts again
    // now (a timeout sets its own backoff after this). Without this a NACK repair sent
    // shortly before the original's timer ran out was followed at once by a second,
    // useless copy (the lossy member's acks of later messages are the "evidence" of the
    // loss being repaired), which every member then received as a duplicate.
    e.deadline_ns = std::max(e.deadline_ns, e.last_sent_ns + rto_ns_);
    io.count(c_retransmits);
    io.down(r);
    return true;
  }

  // Report the outcome (exactly once: the entry is freed here) and move the trailing edge.
  void settle(Entry& e, bool ok, StageIo& io) noexcept {
    Event ev{};
    ev.type = ok ? EventType::delivery_met : EventType::delivery_failed;
    ev.sender = env_.sender;
    ev.epoch = env_.epoch;
    ev.seq = e.rseq;
    ev.stage = kKind;
    ev.token = e.token;
    ev.members = ok ? e.acked : (e.required & ~e.acked);
    if (e.copy != nullptr) {
      e.copy->release();
      e.copy = nullptr;
      --held_;
    }
    e.rseq = 0;
    io.count(ok ? c_met : c_failed);
    while (trail_ < next_rseq_ && entry(trail_).rseq != trail_) ++trail_;
    // The new oldest unsettled message has nothing older ahead of it any more: a window or
    // credit below that held it opens (see lost_evidence()). After a failure we stop
    // assuming anything below holds the rest: a member that cannot hear us fails them all
    // within about one more budget instead of one message after the other.
    if (trail_ < next_rseq_) mark_out(ok ? trail_ : next_rseq_ - 1, io.now_ns());
    io.notify(ev);
  }

  void scan_sender(StageIo& io) noexcept {
    const std::uint64_t now = io.now_ns();
    std::uint64_t next = 0;
    // A timeout is the backup for lost NACKs and tail losses (gaps are repaired by NACK), and
    // on a busy host it is often spurious: a receiver that was not scheduled for a few ms
    // acks nothing, and every message of a full window expires at once. So one scan
    // retransmits at most kMaxRtoBurst messages (the oldest first; the rest wait another
    // RTO). Each message's own timer backs off exponentially. (Backing off the shared RTO
    // as well, as TCP does, starved repairs under heavy loss in the simulator: with Karn's
    // rule the RTT samples that would undo it become rare.)
    std::uint32_t burst = 0;
    for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
      Entry& e = entry(r);
      if (e.rseq != r) continue;
      if (e.deadline_ns <= now && (burst >= kMaxRtoBurst || !(lost_evidence(e, now) || members_quiet(e, now)))) {
        // The ack clock is running (the members it waits for are acking, nothing later
        // than it arrived without it): it is most likely still on its way, or waiting
        // below for credit; a gap would show in their acks or NACKs. Look again later.
        e.deadline_ns = now + rto_ns_;
      } else if (e.deadline_ns <= now) {
        // The retry budget is spent only on timeouts that show a loss: a message that waits
        // in a flow-control or congestion queue below this stage (its timer started when it
        // left here) is not lost, and failing it would report a delivered message as failed.
        const bool counts = lost_evidence(e, now);
        if (counts && e.retries >= max_retries_) {
          settle(e, false, io);
          continue;
        }
        io.count(c_timeouts);
        if (retransmit(e, io)) {
          ++burst;
          if (counts) ++e.retries;
          if (e.timeouts < 0xFFFF) ++e.timeouts;
          const unsigned shift = std::min<unsigned>(e.timeouts, 40);
          const std::uint64_t backoff = rto_ns_ > (rto_max_ns_ >> shift) ? rto_max_ns_ : rto_ns_ << shift;
          e.deadline_ns = now + std::min(backoff, rto_max_ns_);
        } else {
          e.deadline_ns = now + rto_min_ns_;  // no buffer: try again soon, same retry count
        }
      }
      if (next == 0 || e.deadline_ns < next) next = e.deadline_ns;
    }
    sender_deadline_ = next;
  }

  // Whether a timeout of `e` shows that it was lost: some member it still waits for has
  // acknowledged a later message (so this one went missing), or its acks have made no
  // progress for rto_max while `e` was out (so it cannot hear us, or this was the last
  // message). Neither holds while `e` waits below us for credit or a congestion window and
  // the members keep acking what reached them.
  // "Out" is not "handed down": the timer of `e` starts when it leaves this stage, but a
  // flow.credit or congestion.window below may hold it for seconds. While it waits there,
  // the members' acks stall for reasons that have nothing to do with `e`: congestion.window
  // follows the slowest member's cumulative ack, so one lost datagram (or the lost acks of
  // its repairs, which go at rto_max once backed off) holds the whole window, and every
  // member, the ones that have everything included, acks nothing new for a second or more.
  // Measured from when `e` left here, that silence spent one retry of every message queued
  // below per stall, and the last of a long burst arrived on the wire with its budget nearly
  // gone (a lost ack then failed it). So the silence is measured from e.out_ns, when `e` is
  // known to have left the stages below (mark_out()): some member acked it or a later
  // message (data leaves the stages below in rseq order), or nothing older is unsettled
  // (nothing below can hold it for an older message's sake then).
  bool lost_evidence(const Entry& e, std::uint64_t now) const noexcept {
    MemberMask waiting = e.required & ~e.acked;
    while (waiting != 0) {
      const auto s = static_cast<std::size_t>(__builtin_ctzll(waiting));
      waiting &= waiting - 1;
      if (slot_high_[s] > e.rseq) return true;
      if (!e.out) continue;
      const std::uint64_t since = std::max(slot_ack_ns_[s], e.out_ns);
      if (now >= since + kSilenceRtoMax * rto_max_ns_) return true;
    }
    return false;
  }

  // Every unsettled message up to `upto` is known to have left the stages below (now, if
  // not known before). The watermark only rises, so each entry is visited once.
  void mark_out(std::uint64_t upto, std::uint64_t now) noexcept {
    upto = std::min(upto, next_rseq_ - 1);
    for (std::uint64_t r = std::max(out_rseq_ + 1, trail_); r <= upto; ++r) {
      Entry& e = entry(r);
      if (e.rseq == r && !e.out) {
        e.out = true;
        e.out_ns = now;
      }
    }
    out_rseq_ = std::max(out_rseq_, upto);
  }

  // Whether the acks of some member `e` waits for have made no progress for an RTO since
  // `e` last left: the stream stopped (a tail loss) or that member cannot hear us.
  // A member that keeps acking while its cumulative ack stays below `e`'s predecessor is
  // not quiet on `e`'s account: it lacks an older message, which that message's own timer
  // and the member's NACKs repair, and until then its acks cannot reach `e` (the SACK
  // bitmap covers only the 64 after the cumulative point). Counting it as quiet sent up
  // to kMaxRtoBurst useless copies per scan at 1 % loss (the member had them all), and
  // every member received them as duplicates.
  // (Only while a repair of that older message is on its way: when it was settled
  // without the member, or its own retransmission waits out a backoff, the old rule
  // stands, and the later messages go again as before.)
  bool members_quiet(const Entry& e, std::uint64_t now) const noexcept {
    MemberMask waiting = e.required & ~e.acked;
    while (waiting != 0) {
      const auto s = static_cast<std::size_t>(__builtin_ctzll(waiting));
      waiting &= waiting - 1;
      if (blocked_below(s, e.rseq, now)) continue;
      // A member that is acking but whose cumulative point is too far behind for its SACK
      // bitmap (64 after cumulative + 1) to reach `e` cannot tell us about `e` at all: the
      // message that holds its cumulative point back has its own timer, and `e` goes again
      // only once the member's acks could show it missing. (At 1 % loss and about 90k
      // datagrams/s, every repair left more than 64 datagrams in that blind spot, and their
      // timeouts re-sent thousands of datagrams the lossy member already had.)
      if (e.rseq > slot_cum_[s] + 1 + kSackSpan && now < slot_heard_ns_[s] + rto_ns_) continue;
      if (now >= std::max(slot_ack_ns_[s], e.last_sent_ns) + rto_ns_) return true;
    }
    return false;
  }

  // Whether member slot `s` is acking (heard within an RTO) but lacks an older message
  // than `rseq` that is still unsettled, waits for it, and was retransmitted within the
  // last RTO (see members_quiet()).
  bool blocked_below(std::size_t s, std::uint64_t rseq, std::uint64_t now) const noexcept {
    const std::uint64_t missing = slot_cum_[s] + 1;
    if (missing >= rseq || missing < trail_ || now >= slot_heard_ns_[s] + rto_ns_) return false;
    const Entry& g = entries_[static_cast<std::size_t>(missing % window_)];
    // ... and a repair of it is on its way (sent within the last RTO).
    return g.rseq == missing && (g.required & ~g.acked & slot_bit(static_cast<int>(s))) != 0 && g.retransmitted &&
           now < g.last_sent_ns + rto_ns_;
  }

  // How far a receiver spreads its first NACK of a gap: nack_delay_us with eight or more
  // other receiving members, proportionally less with fewer. The random spread lets one
  // NACK stand for every receiver that missed the same datagram (the others hear it and
  // stay quiet); with one or two others a duplicate NACK costs one extra retransmission,
  // while the wait holds every message behind the gap at this receiver. (At 1 % loss and
  // ~90k datagrams/s with two receivers, cutting it to an eighth cut the repairs that
  // came by timeout by half and raised the lossy receiver's rate by about 10 %.)
  [[nodiscard]] std::uint64_t nack_spread_ns(const Group& g) const noexcept {
    const auto others = static_cast<std::uint64_t>(mask_count(g.receivers()));
    return nack_delay_ns_ * std::clamp<std::uint64_t>(others, 1, 8) / 8;
  }

  void rtt_sample(std::uint64_t sample_ns, StageIo& io) noexcept {
    // Jacobson/Karels (RFC 6298) with alpha = 1/8, beta = 1/4.
    const auto r = static_cast<std::int64_t>(sample_ns);
    if (!have_rtt_) {
      srtt_ns_ = r;
      rttvar_ns_ = r / 2;
      have_rtt_ = true;
    } else {
      const std::int64_t err = srtt_ns_ > r ? srtt_ns_ - r : r - srtt_ns_;
      rttvar_ns_ = rttvar_ns_ + (err - rttvar_ns_) / 4;
      srtt_ns_ = srtt_ns_ + (r - srtt_ns_) / 8;
    }
    const auto rto = static_cast<std::uint64_t>(srtt_ns_ + std::max<std::int64_t>(4 * rttvar_ns_, 1000));
    rto_ns_ = std::clamp(rto, rto_min_ns_, rto_max_ns_);
    io.count(c_rtt_samples);
  }

  void on_ack(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    const auto ack = detail::decode_ack(b, len);
    if (!ack) {
      io.count(c_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    // Acks for other senders are not ours; either way nothing above wants them.
    if (ack->target_sender != env_.sender || ack->target_epoch != env_.epoch) {
      p->release();
      return;
    }
    io.count(c_acks_received);
    const Group& g = io.group();
    const int slot = g.slot_of_sender(p->sender);
    if (slot == kNoSlot || slot == g.self_slot()) {
      io.count(c_unknown_acker);
      p->release();
      return;
    }
    const MemberMask bit = slot_bit(slot);
    const std::uint64_t now = io.now_ns();
    auto& seen = slot_cum_[static_cast<std::size_t>(slot)];
    const std::uint64_t from = std::max(trail_, seen + 1);
    const std::uint64_t to = std::min(ack->highest(), next_rseq_ - 1);
    const auto s = static_cast<std::size_t>(slot);
    slot_heard_ns_[s] = now;
    // Only progress counts as the ack clock running: a re-ack of what we already knew (for
    // a duplicate retransmission) says nothing about messages sent since.
    if (ack->cumulative > seen && ack->cumulative < next_rseq_) {
      seen = ack->cumulative;
      slot_ack_ns_[s] = now;
    }
    if (ack->highest() < next_rseq_ && ack->highest() > slot_high_[s]) {
      slot_high_[s] = ack->highest();
      slot_ack_ns_[s] = now;
    }
    // What this member received, and everything before it, has left the stages below.
    if (ack->highest() < next_rseq_) mark_out(ack->highest(), now);
    std::uint64_t sample_sent_ns = 0;
    bool sample = false;
    for (std::uint64_t r = from; r <= to; ++r) {
      Entry& e = entry(r);
      if (e.rseq != r || (e.acked & bit) != 0 || !ack->covers(r)) continue;
      e.acked |= bit;
      if (!e.retransmitted) {
        // Karn's rule: only never-retransmitted packets give unambiguous samples.
        sample_sent_ns = e.first_sent_ns;
        sample = true;
      }
      if (met(e)) settle(e, true, io);
    }
    if (sample && now >= sample_sent_ns) rtt_sample(now - sample_sent_ns, io);
    p->release();
  }

  void on_nack(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    const auto nack = detail::decode_nack(b, len);
    if (!nack || nack->count == 0) {
      io.count(c_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (nack->target_sender == env_.sender && nack->target_epoch == env_.epoch) {
      io.count(c_nacks_received);
      // Repair each unsettled packet of the range at once, and a repair again at most once
      // per half RTT, so that NACKs from many receivers for the same loss cause one
      // repair, not a storm. The first repair is never held back: the NACK says the
      // packet is missing behind later ones (and came after a delay for reordering to
      // settle), and under load the RTT is mostly queueing, so holding back a repair of a
      // packet first sent less than half an RTT ago only made the gap, and with it the
      // window, wait for the next NACK round.
      const std::uint64_t now = io.now_ns();
      const std::uint64_t guard = have_rtt_ ? static_cast<std::uint64_t>(srtt_ns_ / 2) : rto_min_ns_ / 2;
      const std::uint64_t from = std::max(trail_, nack->first);
      const std::uint64_t end = std::min(next_rseq_, nack->first + std::min<std::uint64_t>(nack->count, window_));
      for (std::uint64_t r = from; r < end; ++r) {
        Entry& e = entry(r);
        if (e.rseq != r || (e.retransmitted && now - e.last_sent_ns < guard)) continue;
        retransmit(e, io);
      }
    } else {
      // Another receiver asked for a repair: if it covers what we were about to ask
      // for, stay quiet (the repair is multicast to us too).
      RxState* s = find_rx(nack->target_sender);
      if (s != nullptr && s->epoch == nack->target_epoch && s->nack_due_ns != 0) {
        std::uint64_t a = 0;
        std::uint64_t n = 0;
        if (first_gap(*s, a, n) && a >= nack->first && a + n <= nack->first + nack->count) s->nack_suppressed = true;
      }
    }
    p->release();
  }

  // --- helpers: receiver -----------------------------------------------------------------

  bool test(const RxState& s, std::uint64_t r) const noexcept {
    const std::uint64_t i = r % rx_bits_;
    return ((s.bits[i / 64] >> (i % 64)) & 1u) != 0;
  }
  void set(RxState& s, std::uint64_t r) noexcept {
    const std::uint64_t i = r % rx_bits_;
    s.bits[i / 64] |= std::uint64_t{1} << (i % 64);
  }
  void clear(RxState& s, std::uint64_t r) noexcept {
    const std::uint64_t i = r % rx_bits_;
    s.bits[i / 64] &= ~(std::uint64_t{1} << (i % 64));
  }
  void clear_all(RxState& s) noexcept { std::fill(s.bits, s.bits + rx_bits_ / 64, std::uint64_t{0}); }

  // Received and tracked: in (cum, cum + rx_bits_] with its bit set.
  bool have(const RxState& s, std::uint64_t r) const noexcept {
    return r <= s.cum || (r <= s.cum + rx_bits_ && test(s, r));
  }

  void advance_contiguous(RxState& s) noexcept {
    const std::uint64_t before = s.cum;
    while (s.cum < s.highest && test(s, s.cum + 1)) {
      clear(s, s.cum + 1);
      ++s.cum;
    }
    if (s.cum != before) s.nack_round = 0;
  }

  // --- deliver=in_order ----------------------------------------------------------------
  // Packets to pass up, in order, once the stage's state is consistent again (a stage
  // above may send, or the network hand us more, from inside io.up; a shared queue keeps
  // the order even then).
  void push_out(Packet* q) noexcept { out_.push(q); }
  void flush_out(StageIo& io) noexcept {
    while (Packet* q = out_.pop()) io.up(q);
  }
  Packet* take_held(RxState& s, std::uint64_t r) noexcept {
    Packet*& slot = s.held[r % rx_bits_];
    Packet* q = slot;
    if (q != nullptr) {
      slot = nullptr;
      --s.n_held;
      --rx_held_;
    }
    return q;
  }
  // Hold `p` (number r, above a gap). False when the budget is spent: it goes up as is.
  bool hold(RxState& s, Packet* p, std::uint64_t r, std::uint64_t now) noexcept {
    if (rx_held_ >= window_) return false;
    if (s.held == nullptr) {
      // Cold: the first hold for this receive slot (kept when the slot is reused).
      auto& ring = rings_[static_cast<std::size_t>(&s - rx_.data())];
      ring = std::make_unique<Packet*[]>(rx_bits_);
      s.held = ring.get();
    }
    s.held[r % rx_bits_] = p;
    ++rx_held_;
    if (s.n_held++ == 0) {
      s.held_since_ns = now;
      note_rx_deadline(now + rto_max_ns_);
    }
    return true;
  }
  // Queue every held packet at or below cum, in order.
  void release_through_cum(RxState& s, std::uint64_t now) noexcept {
    if (s.n_held > 0 && s.cum > s.released) {
      const std::uint64_t end = std::min(s.cum, s.released + rx_bits_);
      for (std::uint64_t r = s.released + 1; r <= end && s.n_held > 0; ++r) {
        if (Packet* q = take_held(s, r)) push_out(q);
      }
      s.held_since_ns = s.n_held > 0 ? now : 0;  // what is left waits behind a newer gap
    }
    s.released = s.cum;
  }
  // The wait is over (timeout, new incarnation, eviction): queue every held packet in
  // order, gaps and all. Their numbers stay marked received, so none goes up twice.
  void release_all_held(RxState& s, StageIo& io) noexcept {
    if (s.n_held == 0) return;
    io.count(c_held_released_early, s.n_held);
    for (std::uint64_t r = s.released + 1; r <= s.released + rx_bits_ && s.n_held > 0; ++r) {
      if (Packet* q = take_held(s, r)) push_out(q);
    }
    s.held_since_ns = 0;
  }

  // Everything up to `to` is settled at the sender: stop waiting for it.
  void advance_to(RxState& s, std::uint64_t to) noexcept {
    if (to <= s.cum) return;
    if (to - s.cum >= rx_bits_) {
      clear_all(s);
    } else {
      for (std::uint64_t r = s.cum + 1; r <= to; ++r) clear(s, r);
    }
    s.cum = to;
    if (s.highest < to) s.highest = to;
    s.nack_round = 0;
    advance_contiguous(s);
  }

  // The first missing run at or above the NACK floor, below the highest seen.
  bool first_gap(const RxState& s, std::uint64_t& first, std::uint64_t& count) const noexcept {
    std::uint64_t r = std::max(s.cum + 1, s.nack_floor);
    while (r < s.highest && have(s, r)) ++r;
    if (r >= s.highest) return false;
    first = r;
    while (r < s.highest && !have(s, r)) ++r;
    count = r - first;
    return true;
  }

  bool has_gap(const RxState& s) const noexcept {
    if (s.highest <= s.cum + 1) return false;
    if (s.nack_floor <= s.cum + 1) return true;  // cum + 1 is missing and below highest
    std::uint64_t a = 0;
    std::uint64_t n = 0;
    return first_gap(s, a, n);
  }

  RxState* find_rx(std::uint32_t sender) noexcept {
    for (RxState& s : rx_) {
      if (s.used && s.sender == sender) return &s;
    }
    return nullptr;
  }

  RxState* rx_for(const Packet& p, StageIo& io) noexcept {
    RxState* s = find_rx(p.sender);
    if (s != nullptr) return s;
    // Cold: a new sender. Take a free slot, or the one silent the longest.
    RxState* victim = nullptr;
    for (RxState& c : rx_) {
      if (!c.used) {
        victim = &c;
        break;
      }
      if (victim == nullptr || c.last_used_ns < victim->last_used_ns) victim = &c;
    }
    if (victim->used) {
      io.count(c_senders_evicted);
      release_all_held(*victim, io);
    }
    victim->used = false;
    victim->sender = p.sender;
    return victim;
  }

  void reset_rx(RxState& s, const Packet& p, const RelBody& rel) noexcept {
    std::uint64_t* bits = s.bits;
    Packet** held = s.held;  // empty: release_all_held() ran first
    s = RxState{};
    s.bits = bits;
    s.held = held;
    clear_all(s);
    s.used = true;
    s.sender = p.sender;
    s.epoch = p.epoch;
    // Start at the sender's trailing edge: below it everything is settled. Never NACK
    // below the first packet seen (history from before we joined).
    s.cum = rel.trail - 1;
    s.highest = s.cum;
    s.released = s.cum;
    s.nack_floor = rel.rseq;
  }

  void on_reliable(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::rel, &len);
    const auto rel = detail::decode_rel_body(b, len);
    if (!rel) {
      io.count(c_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    const std::uint64_t now = io.now_ns();
    RxState* s = rx_for(*p, io);
    if (!s->used) {
      reset_rx(*s, *p, *rel);
    } else if (s->epoch != p->epoch) {
      // A different incarnation: the newer one is whichever the view says is current;
      // without a view, the one heard last.
      const Group& g = io.group();
      const int slot = g.slot_of_sender(p->sender);
      if (slot != kNoSlot && g.member(slot).epoch == s->epoch) {
        io.drop(p, DropReason::stale_epoch);
        flush_out(io);
        return;
      }
      release_all_held(*s, io);  // the old incarnation's
      reset_rx(*s, *p, *rel);
    }
    s->last_used_ns = now;
    if (rel->trail > 1) advance_to(*s, rel->trail - 1);
    if (in_order_) release_through_cum(*s, now);  // the sender gave up on a gap below them
    const std::uint64_t r = rel->rseq;
    if (r > s->cum + rx_bits_) {
      // Beyond what we can track (the sender's window is larger than ours): do not ack,
      // the sender will retransmit once we have caught up.
      io.count(c_beyond_window);
      io.drop(p, DropReason::buffer_full);
      flush_out(io);
      return;
    }
    if (have(*s, r)) {
      // Our ack was lost (or the network duplicated the packet): ack again at once, and
      // once more after ack_delay_us. A retransmission of something we have means the
      // sender missed our acks for a whole RTO; with one ack per round a lossy reverse
      // path could spend the sender's whole retry budget on a message we hold (each
      // round then needs two packets to survive instead of one and a half, on average).
      io.count(c_duplicates);
      if (self_receives_) {
        send_ack(*s, io);
        if (ack_delay_ns_ != 0) {
          s->ack_due_ns = now + ack_delay_ns_;
          note_rx_deadline(s->ack_due_ns);
        }
      }
      io.drop(p, DropReason::duplicate);
      flush_out(io);
      return;
    }
    set(*s, r);
    const std::uint64_t prev_high = s->highest;
    if (r > s->highest) s->highest = r;
    if (r < s->nack_floor) s->nack_floor = r;  // an older repair: no need to ask for it
    advance_contiguous(*s);
    io.count(c_delivered);
    schedule_ack(*s, now, /*fresh=*/true, io);
    if (self_receives_ && has_gap(*s)) {
      const std::uint64_t spread = nack_spread_ns(io.group());
      if (s->nack_due_ns == 0 && s->nack_round < nack_rounds()) {
        s->nack_due_ns = now + rng_.between(0, spread);
        if (s->nack_due_ns == 0) s->nack_due_ns = 1;
        s->nack_suppressed = false;
        note_rx_deadline(s->nack_due_ns);
      } else if (r > prev_high + 1 && prev_high + 1 >= s->nack_floor &&
                 (s->nack_due_ns == 0 || s->nack_due_ns > now + spread)) {
        // A new hole (prev_high, r) while the rounds for an older one back off (or are
        // spent): without this it would wait for that round, milliseconds at high rates,
        // holding the sender's window all the while. Ask for it after the usual spread.
        if (!s->fresh) {
          s->fresh = true;
          s->fresh_from = prev_high + 1;
          s->resume_due_ns = s->nack_due_ns;
          s->nack_due_ns = now + rng_.between(0, spread);
          if (s->nack_due_ns == 0) s->nack_due_ns = 1;
          s->nack_suppressed = false;
          note_rx_deadline(s->nack_due_ns);
        }
      }
    }
    if (in_order_) {
      if (r > s->cum) {
        // Above a gap: wait for it here (or, with the budget spent, go up unordered).
        if (hold(*s, p, r, now)) {
          io.count(c_held_in_order);
        } else {
          push_out(p);
        }
      } else if (s->n_held == 0) {
        s->released = s->cum;
        push_out(p);
      } else {
        // p filled the gap: it goes up in its place, then what waited behind it.
        s->held[r % rx_bits_] = p;
        ++s->n_held;
        ++rx_held_;
        release_through_cum(*s, now);
      }
      flush_out(io);  // last: a stage above may send from inside it
      return;
    }
    io.up(p);  // last: a stage above may send from inside it
  }

  std::uint32_t nack_rounds() const noexcept { return std::max<std::uint32_t>(max_retries_, 1); }

  void schedule_ack(RxState& s, std::uint64_t now, bool fresh, StageIo& io) noexcept {
    if (!self_receives_) return;  // a send-only member never acks
    if (fresh) ++s.unacked;
    if (s.unacked >= ack_every_ || ack_delay_ns_ == 0) {
      send_ack(s, io);
      return;
    }
    if (s.ack_due_ns == 0) {
      s.ack_due_ns = now + ack_delay_ns_;
      note_rx_deadline(s.ack_due_ns);
    }
  }

  Packet* control_packet(wire::Kind kind, std::uint8_t body_len, std::uint8_t*& body, StageIo& io) noexcept {
    Packet* a = io.alloc();
    if (a == nullptr) {
      io.count(c_no_buffer);
      return nullptr;
    }
    a->reset_for_send(0);
    a->kind = kind;
    a->channel = env_.channel;
    a->sender = env_.sender;
    a->epoch = env_.epoch;
    body = a->push_ext(wire::Ext::ack, body_len);
    if (body == nullptr) {
      a->release();
      io.count(c_no_buffer);
      return nullptr;
    }
    return a;
  }

  void send_ack(RxState& s, StageIo& io) noexcept {
    s.ack_due_ns = 0;
    s.unacked = 0;
    AckBody ack;
    ack.target_sender = s.sender;
    ack.target_epoch = s.epoch;
    ack.cumulative = s.cum;
    for (std::uint64_t i = 0; i < 64; ++i) {
      const std::uint64_t r = s.cum + 2 + i;
      if (r > s.highest) break;
      if (test(s, r)) ack.sack |= std::uint64_t{1} << i;
    }
    std::uint8_t* body = nullptr;
    Packet* a = control_packet(wire::Kind::ack, detail::kAckBodyBytes, body, io);
    if (a == nullptr) return;
    detail::encode_ack(body, ack);
    io.count(c_acks_sent);
    io.down(a);
  }

  void send_nacks(RxState& s, StageIo& io, std::uint64_t from = 0) noexcept {
    std::uint64_t r = std::max({s.cum + 1, s.nack_floor, from});
    for (std::uint32_t k = 0; k < kMaxNackRanges && r < s.highest; ++k) {
      while (r < s.highest && have(s, r)) ++r;
      if (r >= s.highest) break;
      const std::uint64_t first = r;
      while (r < s.highest && !have(s, r) && r - first < 0xFFFFFFFFull) ++r;
      NackBody n;
      n.target_sender = s.sender;
      n.target_epoch = s.epoch;
      n.first = first;
      n.count = static_cast<std::uint32_t>(r - first);
      std::uint8_t* body = nullptr;
      Packet* a = control_packet(wire::Kind::nack, detail::kNackBodyBytes, body, io);
      if (a == nullptr) return;
      detail::encode_nack(body, n);
      io.count(c_nacks_sent);
      io.down(a);
    }
  }

  void note_rx_deadline(std::uint64_t t) noexcept {
    if (rx_deadline_ == 0 || t < rx_deadline_) rx_deadline_ = t;
  }

  void scan_receivers(StageIo& io) noexcept {
    const std::uint64_t now = io.now_ns();
    std::uint64_t next = 0;
    for (RxState& s : rx_) {
      if (!s.used) continue;
      if (s.ack_due_ns != 0 && s.ack_due_ns <= now) send_ack(s, io);
      if (s.nack_due_ns != 0 && s.nack_due_ns <= now) {
        s.nack_due_ns = 0;
        const bool fresh = s.fresh;
        const std::uint64_t resume = s.resume_due_ns;
        s.fresh = false;
        s.resume_due_ns = 0;
        if (fresh) {
          // Only the holes that opened since the last round; the backed-off round resumes.
          if (s.nack_suppressed) {
            io.count(c_nacks_suppressed);
          } else {
            send_nacks(s, io, s.fresh_from);
          }
          s.nack_suppressed = false;
          s.nack_due_ns = resume != 0 && has_gap(s) ? std::max(resume, now + 1) : 0;
        } else if (has_gap(s)) {
          if (s.nack_suppressed) {
            io.count(c_nacks_suppressed);
          } else {
            send_nacks(s, io);
          }
          ++s.nack_round;
          s.nack_suppressed = false;
          if (s.nack_round < nack_rounds()) {
            // Ask again if the repair does not come: back off, with jitter so that the
            // receivers missing the same packets do not ask in lockstep.
            const std::uint64_t base = std::max(rto_min_ns_, 4 * nack_delay_ns_);
            const unsigned shift = std::min<unsigned>(s.nack_round - 1, 20);
            const std::uint64_t wait = std::min(base << shift, rto_max_ns_);
            s.nack_due_ns = now + wait + rng_.between(0, nack_spread_ns(io.group()));
          }
        }
      }
      if (s.n_held > 0 && now >= s.held_since_ns + rto_max_ns_) release_all_held(s, io);
      if (s.ack_due_ns != 0 && (next == 0 || s.ack_due_ns < next)) next = s.ack_due_ns;
      if (s.nack_due_ns != 0 && (next == 0 || s.nack_due_ns < next)) next = s.nack_due_ns;
      if (s.n_held > 0 && (next == 0 || s.held_since_ns + rto_max_ns_ < next)) next = s.held_since_ns + rto_max_ns_;
    }
    rx_deadline_ = next;
    flush_out(io);
  }

  void update_timer(StageIo& io) noexcept {
    std::uint64_t next = 0;
    for (std::uint64_t t : {sender_deadline_, rx_deadline_, retry_queue_ns_}) {
      if (t != 0 && (next == 0 || t < next)) next = t;
    }
    if (next == armed_ns_) return;
    armed_ns_ = next;
    if (next == 0) {
      io.cancel_timer();
    } else {
      io.arm_timer(next);
    }
  }

  // --- configuration ---
  StageEnv env_;
  bool all_messages_ = true;
  AckMode mode_ = AckMode::all;
  std::vector<std::string> ack_from_;
  double ack_fraction_ = 0.0;
  std::uint32_t ack_k_ = 0;
  std::uint32_t max_retries_ = 8;
  std::uint32_t window_ = 4096;
  std::uint64_t rto_initial_ns_ = 0;
  std::uint64_t rto_min_ns_ = 0;
  std::uint64_t rto_max_ns_ = 0;
  std::uint64_t ack_delay_ns_ = 0;
  std::uint32_t ack_every_ = 32;
  std::uint64_t nack_delay_ns_ = 0;
  Rng rng_;

  // --- view ---
  std::uint64_t view_seen_ = ~std::uint64_t{0};
  bool self_receives_ = true;
  MemberMask named_mask_ = 0;
  bool named_unknown_ = false;

  // --- sender ---
  std::vector<Entry> entries_;
  std::uint64_t next_rseq_ = 1;
  std::uint64_t trail_ = 1;  // lowest unsettled rseq (== next_rseq_ when none)
  std::uint64_t slot_cum_[kMaxGroupMembers] = {};
  // Per acker: the highest rseq it reported and when its acks last made progress (evidence
  // of loss, see lost_evidence() and members_quiet()).
  std::uint64_t slot_high_[kMaxGroupMembers] = {};
  std::uint64_t slot_ack_ns_[kMaxGroupMembers] = {};
  std::uint64_t slot_heard_ns_[kMaxGroupMembers] = {};  // when its last ack (any) arrived
  // Every rseq up to this one is known to have left the stages below (see mark_out()).
  std::uint64_t out_rseq_ = 0;
  std::size_t held_ = 0;
  Packet* queue_head_ = nullptr;
  Packet* queue_tail_ = nullptr;
  std::size_t queued_ = 0;
  std::uint64_t sender_deadline_ = 0;
  std::uint64_t retry_queue_ns_ = 0;
  std::uint64_t rto_ns_ = 0;
  bool have_rtt_ = false;
  std::int64_t srtt_ns_ = 0;
  std::int64_t rttvar_ns_ = 0;

  // --- receiver ---
  std::uint64_t rx_bits_ = 0;
  std::vector<std::uint64_t> bitmap_;
  std::vector<RxState> rx_;
  std::uint64_t rx_deadline_ = 0;
  // deliver=in_order
  bool in_order_ = false;
  std::vector<std::unique_ptr<Packet*[]>> rings_;  // per receive slot, made at its first hold
  std::size_t rx_held_ = 0;                         // held packets, all senders
  PacketFifo out_;                                  // to pass up, in order (flush_out)

  // --- shell ---
  std::uint64_t armed_ns_ = 0;
  int depth_ = 0;
};

}  // namespace

void register_reliability_arq(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "reliability.arq",
      .synopsis = "Acknowledged multicast: sending window, RTO/NACK retransmission, duplicate suppression, and a "
                  "met/failed outcome for every reliable message.",
      .notes =
          "A packet is reliable when messages=all and it is data, or when its flags carry `reliable` (data or "
          "control). Reliable packets carry extension `rel` (type 7), one u64: the low 48 bits the reliable "
          "sequence number (1, 2, ... per sender incarnation), the high 16 bits the distance back to the "
          "sender's trailing edge (lowest unsettled number), so late joiners start there and receivers stop "
          "waiting for what the sender has settled. Receivers ack with `ack` packets (multicast; extension `ack`, "
          "24 bytes: target sender, target epoch, u64 cumulative, u64 SACK bitmap), coalesced for at most "
          "ack_delay_us or every ack_every new packets, and re-ack duplicates. Gaps are NACKed (20-byte body: "
          "target, first, count) after a random delay in [0, nack_delay_us] (scaled by the number of other "
          "receiving members over 8, at most 1); a receiver that hears another's "
          "NACK for the same range stays quiet. The sender keeps a copy of each reliable packet until its ack "
          "set (fixed at send from the membership view: every receiver, the ack_from names, ceil(ack_fraction "
          "x receivers) or ack_k of them) has acked it; it retransmits on RTO (Jacobson/Karels from RTT "
          "samples, Karn's rule, exponential backoff to rto_max_us) and on NACK (once per half RTT). After "
          "max_retries timeouts that show a loss (a waited-for member acked a later message, or acked "
          "nothing new for rto_max_us since the message is known to have left the stages below: a member "
          "acked it or a later one, or nothing older is unsettled; a message waiting below for flow credit or "
          "a congestion window is not lost), or at once when a required member fails or leaves, the message fails: "
          "delivery_failed names the members that never acked; delivery_met names those that did. At most "
          "`window` messages are unsettled; more wait in order inside the stage. Unreliable packets pass "
          "untouched (zero bytes). Send-only members never ack. With deliver=in_order a receiver holds each "
          "sender's reliable packets that arrive above a gap and passes them up when it fills, so an ordering "
          "stage above holds nothing (one held datagram may be a whole coalesced batch); acks never wait for "
          "delivery, and held packets go up early, in order, when the sender settles past the gap, restarts, "
          "or rto_max_us passes.",
      .params = {{"messages", ParamType::string, "all", "'all' (every data message) or 'flagged' (only messages "
                                                        "sent with the reliable flag)"},
                 {"ack_from", ParamType::string, "", "comma-separated member names whose acks are required "
                                                     "(empty: every receiver)"},
                 {"ack_fraction", ParamType::real, "0", "(0, 1]: acks needed from this fraction of the receivers "
                                                        "(rounded up); 0 = unused"},
                 {"ack_k", ParamType::integer, "0", "acks needed from this many receivers; 0 = unused"},
                 {"max_retries", ParamType::integer, "8", "timeouts showing a loss before a message fails"},
                 {"window", ParamType::integer, "4096", "unsettled reliable messages per sender (max 65535); more "
                                                        "wait in a FIFO queue"},
                 {"rto_initial_us", ParamType::integer, "50000", "retransmission timeout before the first RTT sample"},
                 {"rto_min_us", ParamType::integer, "2000", "lower bound of the RTO"},
                 {"rto_max_us", ParamType::integer, "1000000", "upper bound of the RTO and its backoff"},
                 {"ack_delay_us", ParamType::integer, "500", "longest a receiver holds back an ack to coalesce"},
                 {"ack_every", ParamType::integer, "32", "a receiver acks at once after this many new packets"},
                 {"nack_delay_us", ParamType::integer, "1000", "a receiver NACKs a gap after a random delay up to "
                                                               "this (suppressed if another member asks first)"},
                 {"deliver", ParamType::string, "arrival",
                  "'arrival': reliable packets go up as they arrive; 'in_order': each sender's go up in sequence "
                  "order, those above a gap held here until it fills (at most `window` held, for at most "
                  "rto_max_us), so that ordering above holds nothing (the compiler asks for it under "
                  "point-to-point ordering)"}},
      .counters = {{"reliability.sent", "reliable packets stamped and sent for the first time"},
                   {"reliability.retransmits", "reliable packets sent again (on timeout or NACK)"},
                   {"reliability.timeouts", "retransmission timeouts"},
                   {"reliability.acks_sent", "ack packets sent"},
                   {"reliability.acks_received", "ack packets for this sender received"},
                   {"reliability.nacks_sent", "NACK packets sent"},
                   {"reliability.nacks_received", "NACK packets for this sender received"},
                   {"reliability.nacks_suppressed", "NACKs not sent because another member asked first"},
                   {"reliability.duplicates", "reliable packets received again (dropped and re-acked)"},
                   {"reliability.delivered", "reliable packets passed up (once each)"},
                   {"reliability.met", "reliable messages whose ack set acknowledged them"},
                   {"reliability.failed", "reliable messages given up (retries exhausted or member gone)"},
                   {"reliability.queued", "reliable messages that waited for room in the window"},
                   {"reliability.rtt_samples", "RTT samples taken (never from retransmitted packets)"},
                   {"reliability.beyond_window", "reliable packets dropped: beyond the receive window"},
                   {"reliability.no_buffer", "copies, acks or NACKs not made: the packet pool was exhausted"},
                   {"reliability.malformed", "reliability extensions of the wrong length"},
                   {"reliability.unknown_acker", "acks from a sender that is not in the membership view"},
                   {"reliability.senders_evicted", "receive state of a silent sender reused for a new one"},
                   {"reliability.held_in_order", "deliver=in_order: packets held above a gap until it filled"},
                   {"reliability.held_released_early",
                    "deliver=in_order: held packets passed up before their gap filled (rto_max_us passed, the "
                    "sender restarted or its state was evicted)"}},
      .factory = [] { return std::make_unique<ArqStage>(); },
  });
}

}  // namespace tmc
