// congestion.window — a congestion window over reliable data (paper Table 3).
//
// Synopsis
//   Limits the datagram bytes of reliable packets that are sent but not yet acknowledged by
//   the slowest acknowledging receiver to the window of a CongestionController (none, aimd,
//   cubic; tmc/congestion.hpp). Reliable data beyond the window waits in a FIFO inside the
//   stage; nothing is dropped.
// Params
//   algorithm (string, "aimd")          "none" | "aimd" | "cubic"
//   initial_window_packets (int, 10)    window before feedback, in mss
//   min_window_packets (int, 2)         lower clamp, in mss
//   max_window_packets (int, 100000)    upper clamp, in mss
//   mss_bytes (int, 1400)               bytes of one full-sized datagram
//   stall_timeout_us (int, 1000000)     no ack progress this long while data waits: stall
// Counters
//   congestion.* (see register_congestion_window below)
// Wire
//   None of its own. Reads Ext::rel (reliability's sequence number) of packets going down,
//   and Ext::ack bodies of Kind::ack / Kind::nack packets coming up (ack_format.hpp).
// Notes
//   Bytes in flight are tracked per reliable sequence number (rseq) in a ring sized from
//   max_window_packets and allocated once, at the first reliable packet. Each receiver slot
//   of the Group keeps its highest cumulative ack for our (sender, epoch); the stage follows
//   the receivers in Group::receivers() that have acknowledged something in their current
//   epoch, and the floor is the lowest of their cumulative acks: every rseq at or below it
//   is acknowledged by all of them. Bytes above the floor are in flight (SACKed bytes of the
//   slowest receiver are still counted: the window is conservative). When the floor moves,
//   the newly acknowledged bytes and an RTT sample (from the newest of them, unless it was
//   retransmitted: Karn's rule) go to the controller. Receivers that never acked (not yet
//   heard, or outside a subset ack set) are not followed: the controller then runs on the
//   others' feedback; with no receivers at all the window is open.
//
//   Loss signals: a NACK targeted at us, or an ack whose SACK bitmap shows the first hole
//   with at least three later rseqs received (TCP's duplicate-ack threshold, so that mere
//   reordering is not a loss). Losses at or below the recovery point (the highest rseq sent
//   when the last loss was taken) belong to the same congestion event and are not fed
//   again; the controllers also reduce at most once per RTT.
//
//   Retransmissions (an rseq at or below the highest this stage already passed down; the
//   pipeline is one sender incarnation) never wait: they go down at once, ahead of any new
//   data waiting for the window, so a repair is never starved by congestion control. They
//   are not charged as new data: the rseq's bytes stay counted in flight once, from its
//   first transmission until the slowest followed receiver acknowledges it (a repair of an
//   rseq no longer tracked, because it was acknowledged or forgotten by a stall, adds
//   nothing), the controller's on_sent() is not called for them, and the rseq is marked so
//   it gives no RTT sample (Karn). We keep counting the original in flight rather than
//   count the copy again because the window limits distinct unacknowledged data; losses
//   are what the controller reacts to, through NACKs and SACK holes. A retransmission of a
//   data packet still waiting here (reliability's timer runs from when it handed the
//   packet down) is released instead: the original goes out in order. Such a timeout
//   does not spend the message's retry budget: reliability.arq counts a member's silence
//   as a loss only from when the message is known to have left the stages below (a
//   member acked it or a later one, or nothing older is unsettled), because while one
//   lost datagram holds this window every member's acks stall, the message's included
//   (see lost_evidence() in arq.cpp and tests/sim/test_flow_retransmit.cpp). Reliable
//   control packets (kFlagReliable on a control kind) pass at once and are counted in
//   flight; unreliable packets and other kinds are not touched. Reliable data waits when
//   the window is full, in arrival order, and leaves as acks open the window.
//
//   Stalls: when data waits and the floor has not moved for stall_timeout_us, either some
//   followed receivers have acknowledged beyond the floor — then those at the floor are
//   left behind (counted; followed again once their ack reaches the floor: a receiver that
//   lost contact cannot hold the channel forever, and membership or flow control reports
//   it) — or none did, and the controller's on_timeout() shrinks the window while the bytes
//   in flight are forgotten (reliability above still repairs or reports them). The stage
//   re-checks the Group every few milliseconds while data waits, because membership
//   changes reach it through no packet.
#include "primitives/congestion/window.hpp"

#include "primitives/common/wait_queue.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "primitives/reliability/ack_format.hpp"

namespace tmc {
namespace detail {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_WINDOW_COUNTERS(X, P)                                                                                   \
  X(P, passed, "reliable data packets that found room in the window")                                               \
  X(P, window_waits, "reliable data packets queued because the window was full")                                    \
  X(P, released, "queued packets released as the window opened")                                                    \
  X(P, retransmits_passed, "retransmissions passed at once (no RTT sample from them)")                              \
  X(P, control_passed, "reliable control packets passed at once (counted in flight)")                               \
  X(P, losses, "loss events given to the controller")                                                               \
  X(P, nacks_seen, "NACKs targeted at this sender")                                                                 \
  X(P, sack_holes, "acks whose SACK bitmap showed a hole (>= 3 received above it)")                                 \
  X(P, acks_seen, "acks targeted at this sender")                                                                   \
  X(P, acked_bytes, "datagram bytes acknowledged by every followed receiver")                                       \
  X(P, max_window_bytes, "largest window reached, in bytes (grows only)")                                           \
  X(P, stalls, "stall timeouts (no ack progress while data waited)")                                                \
  X(P, laggards, "receivers left behind by a stall")                                                                \
  X(P, stop_flushed, "queued packets passed down when the pipeline stopped")                                        \
  X(P, retransmits_absorbed,                                                                                        \
    "retransmissions of packets still waiting here, released (the original "                                        \
    "goes out in order)")
TMC_STAGE_COUNTERS("congestion.", TMC_WINDOW_COUNTERS);

// Gauges, declared once likewise (read_gauges() fills them in this order).
#define TMC_WINDOW_GAUGES(X, P)                                                                                     \
  X(P, window_bytes, "the congestion window, in datagram bytes (+inf with algorithm none)")                        \
  X(P, in_flight_bytes, "datagram bytes sent and not yet acknowledged by every followed receiver")                  \
  X(P, queued_packets, "reliable data packets waiting here for room in the window")
TMC_STAGE_GAUGES("congestion.", TMC_WINDOW_GAUGES);

std::uint64_t datagram_bytes(const Packet& p) noexcept {
  return std::uint64_t{p.len} + (p.sealed ? 0 : wire::kBaseHeaderBytes);
}

}  // namespace

void CongestionWindowStage::read_gauges(std::span<double> out) const noexcept {
  out[Gauge::window_bytes] =
      unlimited_ ? std::numeric_limits<double>::infinity() : static_cast<double>(ctrl_->window_bytes());
  out[Gauge::in_flight_bytes] = static_cast<double>(in_flight_);
  out[Gauge::queued_packets] = static_cast<double>(queue_.size());
}

CongestionWindowStage::~CongestionWindowStage() {
  // Packets still queued belong to this stage; give them back to their pool.
  queue_.release_all();
}

bool CongestionWindowStage::configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) {
  env_ = env;
  // The registry checked each range and word; what relates two parameters is checked here.
  const std::string& algorithm = params.text("algorithm");
  const std::int64_t initial = params.integer("initial_window_packets");
  const std::int64_t min_w = params.integer("min_window_packets");
  const std::int64_t max_w = params.integer("max_window_packets");
  const std::int64_t mss = params.integer("mss_bytes");
  const std::int64_t stall_us = params.integer("stall_timeout_us");
  if (max_w < min_w) {
    errors.push_back("parameter 'max_window_packets' (" + std::to_string(max_w) +
                     ") must not be below 'min_window_packets' (" + std::to_string(min_w) + ")");
    return false;
  }
  CongestionLimits limits;
  limits.mss_bytes = static_cast<std::uint32_t>(mss);
  limits.initial_window_packets = static_cast<std::uint32_t>(initial);
  limits.min_window_packets = static_cast<std::uint32_t>(min_w);
  limits.max_window_packets = static_cast<std::uint32_t>(max_w);
  ctrl_ = make_congestion_controller(algorithm, limits);
  if (ctrl_ == nullptr && more_) ctrl_ = more_(algorithm, limits);
  if (ctrl_ == nullptr) {
    errors.push_back("parameter 'algorithm': no congestion controller named '" + algorithm + "' could be made");
    return false;
  }
  unlimited_ = algorithm == "none";
  stall_ns_ = static_cast<std::uint64_t>(stall_us) * 1000;
  recheck_ns_ = std::min<std::uint64_t>(5'000'000, stall_ns_ / 4);
  // The ring holds one entry per rseq in flight: twice the largest window in packets
  // (smaller packets than mss would need more, and then wait for ring room), bounded so a
  // huge max_window_packets does not cost megabytes per channel.
  std::uint64_t cap = 256;
  while (cap < 2 * static_cast<std::uint64_t>(max_w) && cap < 65536) cap <<= 1;
  ring_cap_ = cap;
  ring_mask_ = cap - 1;
  return true;
}

bool CongestionWindowStage::follows(const Group& g, int s) const noexcept {
  const Peer& pe = peers_[static_cast<std::size_t>(s)];
  return pe.acked && !pe.lagging && pe.epoch == g.member(s).epoch;
}

void CongestionWindowStage::fit_view(const Group& g) {
  if (g.slots() > peers_.size()) peers_.resize(g.slots());
  if (tree_view_ == g.view_id()) return;
  tree_view_ = g.view_id();
  followed_.reset(g.slots());
  const MemberSet& r = g.receivers();
  for (int s = r.first(); s >= 0; s = r.next(s)) refresh_leaf(g, s);
}

void CongestionWindowStage::refresh_leaf(const Group& g, int s) noexcept {
  const bool in = g.receivers().contains(s) && follows(g, s);
  followed_.set(static_cast<std::size_t>(s), in ? peers_[static_cast<std::size_t>(s)].cum : MinTree::kNone);
}

bool CongestionWindowStage::can_send(std::uint64_t rseq, std::uint64_t bytes) noexcept {
  if (unlimited_ || open_) return true;
  if (rseq > floor_ + ring_cap_) {
    if (in_flight_ != 0) return false;  // no ring room: wait for acks
    floor_ = rseq - 1;                  // nothing tracked in between: move the ring along
  }
  return in_flight_ == 0 || in_flight_ + bytes <= ctrl_->window_bytes();
}

void CongestionWindowStage::record(std::uint64_t rseq, std::uint64_t bytes, StageIo& io,
                                   bool retransmission) noexcept {
  if (ring_.empty()) ring_.resize(ring_cap_);  // cold: once, at the first reliable packet
  if (rseq <= floor_ || rseq > floor_ + ring_cap_) return;
  Sent& e = ring_[rseq & ring_mask_];
  if (e.rseq == rseq) {
    e.retransmitted = true;
    return;
  }
  // A repair of something no longer tracked (acked, or forgotten by a stall) is not new
  // data: it is neither charged to the window nor given to the controller.
  if (retransmission) return;
  if (e.rseq != 0) return;  // an older rseq still holds the slot: leave this one untracked
  e.rseq = rseq;
  e.sent_ns = io.now_ns();
  e.bytes = static_cast<std::uint32_t>(bytes);
  e.retransmitted = false;
  in_flight_ += bytes;
  highest_sent_ = std::max(highest_sent_, rseq);
  ctrl_->on_sent(bytes, io.now_ns());
}

void CongestionWindowStage::advance_floor(std::uint64_t to, StageIo& io, bool acked) noexcept {
  if (to <= floor_) return;
  std::uint64_t bytes = 0;
  std::uint64_t rtt_ns = 0;
  if (!ring_.empty()) {
    const std::uint64_t from = std::max(floor_ + 1, to > ring_cap_ ? to - ring_cap_ + 1 : 1);
    for (std::uint64_t r = from; r <= to; ++r) {
      Sent& e = ring_[r & ring_mask_];
      if (e.rseq != r) continue;
      bytes += e.bytes;
      if (r == to && !e.retransmitted && io.now_ns() > e.sent_ns) rtt_ns = io.now_ns() - e.sent_ns;
      e.rseq = 0;
    }
  }
  floor_ = to;
  in_flight_ -= std::min(in_flight_, bytes);
  last_progress_ns_ = io.now_ns();
  if (acked && bytes != 0) {
    io.count(acked_bytes, bytes);
    ctrl_->on_acked(bytes, rtt_ns, io.now_ns());
    note_window(io);
  }
}

void CongestionWindowStage::refresh_floor(StageIo& io) noexcept {
  const Group& g = io.group();
  view_id_ = g.view_id();
  fit_view(g);  // cold when the view grew
  const MemberSet& r = g.receivers();
  open_ = r.empty();
  if (open_) {
    advance_floor(highest_sent_, io, /*acked=*/false);
    return;
  }
  // The lowest cumulative ack among the followed receivers: O(1) from the tree, which
  // every change of a receiver's cum or followed state updates in O(log n).
  const std::uint64_t lowest = followed_.min();
  if (lowest == MinTree::kNone) return;  // no feedback yet: the window stays as it is
  advance_floor(std::min(lowest, highest_sent_), io, /*acked=*/true);
}

void CongestionWindowStage::note_window(StageIo& io) noexcept {
  if (unlimited_) return;
  const std::uint64_t w = ctrl_->window_bytes();
  if (w > max_window_seen_) {
    io.count(max_window_bytes, w - max_window_seen_);
    max_window_seen_ = w;
  }
}

void CongestionWindowStage::loss(StageIo& io) noexcept {
  io.count(losses);
  recovery_point_ = highest_sent_;
  ctrl_->on_loss(io.now_ns());
}

Packet* CongestionWindowStage::pop() noexcept { return queue_.pop(); }

// A message whose lifetime ran out while it waited here never goes out (reliability above
// reports it expired); forgotten ones are let go the same way.
void CongestionWindowStage::drop_expired(StageIo& io) noexcept {
  wait_queue::release_expired(queue_, io.now_ns());
}

void CongestionWindowStage::on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept {
  if (queue_.empty()) return;
  wait_queue::release_forgotten(queue_, token, scope);
  release(io);
}

void CongestionWindowStage::release(StageIo& io) noexcept {
  drop_expired(io);
  while (!queue_.empty()) {
    std::uint8_t len = 0;
    const std::uint8_t* body = queue_.front()->ext(wire::Ext::rel, &len);
    const std::uint64_t rseq = decode_rel(body, len).value_or(0);
    const std::uint64_t bytes = datagram_bytes(*queue_.front());
    if (!can_send(rseq, bytes)) break;
    Packet* p = pop();
    highest_data_passed_ = std::max(highest_data_passed_, rseq);
    record(rseq, bytes, io);
    io.count(released);
    io.down(p);
  }
  schedule(io);
}

void CongestionWindowStage::schedule(StageIo& io) noexcept {
  if (queue_.empty()) {
    if (armed_) io.cancel_timer();
    armed_ = false;
    return;
  }
  // While data waits: look at the Group again soon (a failed receiver opens the window
  // without any packet passing here), and at the latest when the stall timeout is due.
  const std::uint64_t stall_at = last_progress_ns_ + stall_ns_;
  io.arm_timer(std::min(stall_at, io.now_ns() + recheck_ns_));
  armed_ = true;
}

void CongestionWindowStage::stall(StageIo& io) noexcept {
  io.count(stalls);
  const Group& g = io.group();
  fit_view(g);
  const MemberSet& r = g.receivers();
  std::uint64_t at_floor = 0;
  std::uint64_t ahead = 0;
  for (int s = r.first(); s >= 0; s = r.next(s)) {
    if (follows(g, s)) ++(peers_[static_cast<std::size_t>(s)].cum <= floor_ ? at_floor : ahead);
  }
  last_progress_ns_ = io.now_ns();
  if (ahead != 0 && at_floor != 0) {
    for (int s = r.first(); s >= 0; s = r.next(s)) {
      if (follows(g, s) && peers_[static_cast<std::size_t>(s)].cum <= floor_) {
        peers_[static_cast<std::size_t>(s)].lagging = true;
        refresh_leaf(g, s);
      }
    }
    io.count(laggards, at_floor);
    refresh_floor(io);
    return;
  }
  // Nobody made progress: the equivalent of a retransmission timeout.
  ctrl_->on_timeout(io.now_ns());
  recovery_point_ = highest_sent_;
  advance_floor(highest_sent_, io, /*acked=*/false);
  for (int s = r.first(); s >= 0; s = r.next(s)) {
    if (!follows(g, s)) continue;
    Peer& pe = peers_[static_cast<std::size_t>(s)];
    pe.cum = std::max(pe.cum, floor_);
    refresh_leaf(g, s);
  }
}

void CongestionWindowStage::on_send(Packet* p, StageIo& io) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p->ext(wire::Ext::rel, &len);
  const std::optional<std::uint64_t> rel = decode_rel(body, len);
  if (!rel || *rel == 0) {
    io.down(p);  // unreliable packets and other stages' control traffic
    return;
  }
  const std::uint64_t rseq = *rel;
  const std::uint64_t bytes = datagram_bytes(*p);
  if (io.group().view_id() != view_id_) refresh_floor(io);
  if (rseq <= highest_seen_) {
    if (p->kind == wire::Kind::data && rseq > highest_data_passed_) {
      // Reliability's timer fired for a packet still waiting here: the original goes out
      // in order, so this copy would only add to the congestion.
      io.count(retransmits_absorbed);
      p->release();
      return;
    }
    // A retransmission: its bytes are in flight already (or acked); repairs are not held.
    io.count(retransmits_passed);
    record(rseq, bytes, io, /*retransmission=*/true);
    io.down(p);
    return;
  }
  highest_seen_ = rseq;
  if (p->kind != wire::Kind::data) {
    io.count(control_passed);
    record(rseq, bytes, io);
    io.down(p);
    return;
  }
  if (queue_.empty() && can_send(rseq, bytes)) {
    highest_data_passed_ = rseq;
    io.count(passed);
    record(rseq, bytes, io);
    io.down(p);
    return;
  }
  // Blocking starts now (an empty queue): a stall is measured from here at the earliest.
  if (queue_.empty()) last_progress_ns_ = std::max(last_progress_ns_, io.now_ns());
  queue_.push(p);
  io.count(window_waits);
  schedule(io);
}

void CongestionWindowStage::on_receive(Packet* p, StageIo& io) noexcept {
  if (p->kind != wire::Kind::ack && p->kind != wire::Kind::nack) {
    io.up(p);
    return;
  }
  std::uint8_t len = 0;
  const std::uint8_t* body = p->ext(wire::Ext::ack, &len);
  if (p->kind == wire::Kind::nack) {
    const std::optional<NackBody> n = decode_nack(body, len);
    if (n && n->target_sender == env_.sender && n->target_epoch == env_.epoch) {
      io.count(nacks_seen);
      if (n->first > recovery_point_ && n->first <= highest_sent_) loss(io);
      // A large group's NACK carries the receiver's position too (its ack).
      if (const std::optional<AckBody> a = decode_nack_position(body, len)) take_ack(*a, *p, /*sack_loss=*/false, io);
      if (!queue_.empty()) release(io);
    }
    io.up(p);
    return;
  }
  const std::optional<AckBody> a = decode_ack(body, len);
  if (!a || a->target_sender != env_.sender || a->target_epoch != env_.epoch) {
    io.up(p);
    return;
  }
  io.count(acks_seen);
  take_ack(*a, *p, /*sack_loss=*/true, io);
  if (!queue_.empty()) release(io);
  io.up(p);
}

// Member p.sender's position `a` (an ack, or the one a NACK carried): its cumulative point
// moves the floor; with `sack_loss`, a hole the SACK bitmap shows is a loss.
void CongestionWindowStage::take_ack(const AckBody& a, const Packet& p, bool sack_loss, StageIo& io) noexcept {
  const Group& g = io.group();
  const int slot = g.slot_of_sender(p.sender);
  if (slot != kNoSlot && slot != g.self_slot() && (g.member(slot).epoch == p.epoch || g.member(slot).epoch == 0)) {
    fit_view(g);  // cold when the view grew
    Peer& pe = peers_[static_cast<std::size_t>(slot)];
    if (pe.epoch != p.epoch) pe = Peer{.epoch = p.epoch};
    // An ack can only cover what we sent; a larger number is hostile or from a past life.
    pe.cum = std::max(pe.cum, std::min(a.cumulative, highest_sent_));
    pe.acked = true;
    if (pe.lagging && pe.cum >= floor_) pe.lagging = false;
    refresh_leaf(g, slot);
    // A hole followed by at least three received rseqs is a loss, not reordering.
    if (sack_loss && a.sack != 0 && a.highest() >= a.cumulative + 4) {
      io.count(sack_holes);
      if (a.cumulative + 1 > recovery_point_ && a.cumulative + 1 <= highest_sent_) loss(io);
    }
    refresh_floor(io);
  }
}

void CongestionWindowStage::on_tick(StageIo& io) noexcept {
  armed_ = false;
  refresh_floor(io);
  release(io);
  if (!queue_.empty() && io.now_ns() >= last_progress_ns_ + stall_ns_) {
    stall(io);
    release(io);
  }
}

void CongestionWindowStage::on_stop(StageIo& io) noexcept {
  io.cancel_timer();
  armed_ = false;
  // The pipeline is retiring: whatever waits leaves now rather than be lost.
  while (!queue_.empty()) {
    io.count(stop_flushed);
    io.down(pop());
  }
}

}  // namespace detail

namespace {
constexpr std::string_view kAlgorithms[] = {"none", "aimd", "cubic"};
constexpr std::int64_t kMaxWindowPackets = 10'000'000;
}  // namespace

void register_congestion_window(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "congestion.window",
      .synopsis = "Congestion control: a window (none, aimd, cubic) over reliable data, following the slowest "
                  "acknowledging receiver.",
      .notes =
          "Datagram bytes of reliable packets (those carrying reliability's Ext::rel) that are not yet "
          "acknowledged by every followed receiver count as in flight; reliable data that would take them past "
          "the window of the congestion controller waits in a FIFO inside the stage (never dropped; "
          "`held_packets` reports it) and leaves as acks open the window. The controller is the public "
          "interface tmc::CongestionController (include/tmc/congestion.hpp): `aimd` is Reno-like (slow start, "
          "+1 mss per window in congestion avoidance, halve on loss at most once per RTT, minimum window after "
          "a stall), `cubic` follows RFC 8312 (beta 0.7, C 0.4, fast convergence, TCP-friendly region), `none` "
          "never limits. For multicast the stage follows the worst acking receiver, as PGMCC/TFMCC do: per "
          "Group slot it keeps the receiver's cumulative ack for this sender and epoch, and the floor is the "
          "lowest among the receivers in Group::receivers() that have acknowledged something in their current "
          "epoch (receivers never heard from, or outside a subset ack set, are not followed; with no receivers "
          "the window is open). SACKed bytes above the slowest receiver's cumulative ack still count as in "
          "flight. RTT samples come from the newest newly acknowledged packet unless it was retransmitted "
          "(Karn). Loss signals: a NACK targeted at this sender, or a SACK bitmap whose first hole has at least "
          "three received rseqs above it; signals at or below the recovery point (highest rseq sent at the last "
          "reduction) are one event. Retransmissions (rseq at or below the highest passed down) never wait: they go "
          "at once, ahead of waiting data, are not charged again (the rseq stays counted in flight once, from its "
          "first transmission until acknowledged) and give no RTT sample; a retransmission of a packet still "
          "waiting here is released instead (the original goes out in order). Reliable control packets pass at "
          "once and count in flight; unreliable "
          "packets and other kinds are untouched. While data waits, the stage re-checks the Group every few "
          "milliseconds; if the floor does not move for `stall_timeout_us`, receivers stuck at the floor while "
          "others progressed are left behind (followed again once they catch up), or, if nobody progressed, "
          "the controller's on_timeout() shrinks the window and the bytes in flight are forgotten (reliability "
          "still repairs them). On stop the queue is passed down. No wire bytes of its own.",
      .params = {{.name = "algorithm",
                  .type = ParamType::string,
                  .default_value = "aimd",
                  .doc = "\"none\", \"aimd\" (Reno-like) or \"cubic\" (RFC 8312).",
                  .one_of = kAlgorithms},
                 {.name = "initial_window_packets",
                  .type = ParamType::integer,
                  .default_value = "10",
                  .doc = "Window before any feedback, in mss.",
                  .min = 1,
                  .max = kMaxWindowPackets},
                 {.name = "min_window_packets",
                  .type = ParamType::integer,
                  .default_value = "2",
                  .doc = "The window never shrinks below this, in mss.",
                  .min = 1,
                  .max = kMaxWindowPackets},
                 {.name = "max_window_packets",
                  .type = ParamType::integer,
                  .default_value = "100000",
                  .doc = "The window never grows above this, in mss.",
                  .min = 1,
                  .max = kMaxWindowPackets},
                 {.name = "mss_bytes",
                  .type = ParamType::integer,
                  .default_value = "1400",
                  .doc = "Bytes of one full-sized datagram (the window's unit).",
                  .min = 64,
                  .max = wire::kMaxDatagramBytes},
                 {.name = "stall_timeout_us",
                  .type = ParamType::integer,
                  .default_value = "1000000",
                  .doc = "No acknowledgment progress this long while data waits: leave the stuck receivers behind, "
                         "or shrink the window and forget what is in flight.",
                  .min = 1000,
                  .max = 3'600'000'000}},
      .counters = counter_list(detail::kCounters),
      .gauges = gauge_list(detail::kGauges),
      .factory = [] { return std::make_unique<detail::CongestionWindowStage>(); },
      .serves = "congestion_control",
      .requires_above = {"reliability.arq"},
  });
}

}  // namespace tmc
