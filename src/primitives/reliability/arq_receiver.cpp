// reliability.arq: the receiver (see arq_receiver.hpp).
#include "primitives/reliability/arq_receiver.hpp"

#include <algorithm>

namespace tmc::arq {

using detail::AckBody;
using detail::NackBody;
using detail::RelBody;

void ArqReceiver::configure(const Config& cfg, const StageEnv& env) {
  cfg_ = cfg;
  env_ = env;
  rng_.reseed(derive(env.seed, 0x52454C /* "REL" */));
  unicast_ = cfg.unicast_feedback && env.unicast_reachable;
  rx_bits_ = cfg.rx_bits();
  bitmap_.assign(kMaxRxSenders * (rx_bits_ / 64), 0);
  rx_.assign(kMaxRxSenders, RxState{});
  for (std::size_t i = 0; i < kMaxRxSenders; ++i) rx_[i].bits = bitmap_.data() + i * (rx_bits_ / 64);
  hold_.configure(kMaxRxSenders, rx_bits_, cfg.window);
}

// --- the receive bitmap: (cum, cum + rx_bits_] ------------------------------------------

bool ArqReceiver::test(const RxState& s, std::uint64_t r) const noexcept {
  const std::uint64_t i = r % rx_bits_;
  return ((s.bits[i / 64] >> (i % 64)) & 1u) != 0;
}
void ArqReceiver::set(RxState& s, std::uint64_t r) noexcept {
  const std::uint64_t i = r % rx_bits_;
  s.bits[i / 64] |= std::uint64_t{1} << (i % 64);
}
void ArqReceiver::clear(RxState& s, std::uint64_t r) noexcept {
  const std::uint64_t i = r % rx_bits_;
  s.bits[i / 64] &= ~(std::uint64_t{1} << (i % 64));
}
void ArqReceiver::clear_all(RxState& s) noexcept { std::fill(s.bits, s.bits + rx_bits_ / 64, std::uint64_t{0}); }

// Received and tracked: in (cum, cum + rx_bits_] with its bit set.
bool ArqReceiver::have(const RxState& s, std::uint64_t r) const noexcept {
  return r <= s.cum || (r <= s.cum + rx_bits_ && test(s, r));
}

void ArqReceiver::advance_contiguous(RxState& s) noexcept {
  const std::uint64_t before = s.cum;
  while (s.cum < s.highest && test(s, s.cum + 1)) {
    clear(s, s.cum + 1);
    ++s.cum;
  }
  if (s.cum != before) s.nack_round = 0;
}

// Everything up to `to` is settled at the sender: stop waiting for it.
bool ArqReceiver::advance_to(RxState& s, std::uint64_t to) noexcept {
  if (to <= s.cum) return false;
  bool hole = true;
  if (to - s.cum >= rx_bits_) {
    clear_all(s);
  } else {
    hole = false;
    for (std::uint64_t r = s.cum + 1; r <= to; ++r) {
      hole = hole || !test(s, r);
      clear(s, r);
    }
  }
  s.cum = to;
  if (s.highest < to) s.highest = to;
  s.nack_round = 0;
  advance_contiguous(s);
  return hole;
}

// The first missing run at or above the NACK floor, below the highest seen.
bool ArqReceiver::first_gap(const RxState& s, std::uint64_t& first, std::uint64_t& count) const noexcept {
  std::uint64_t r = std::max(s.cum + 1, s.nack_floor);
  while (r < s.highest && have(s, r)) ++r;
  if (r >= s.highest) return false;
  first = r;
  while (r < s.highest && !have(s, r)) ++r;
  count = r - first;
  return true;
}

bool ArqReceiver::has_gap(const RxState& s) const noexcept {
  if (s.highest <= s.cum + 1) return false;
  if (s.nack_floor <= s.cum + 1) return true;  // cum + 1 is missing and below highest
  std::uint64_t a = 0;
  std::uint64_t n = 0;
  return first_gap(s, a, n);
}

// --- per-sender state -------------------------------------------------------------------

ArqReceiver::RxState* ArqReceiver::find_rx(std::uint32_t sender) noexcept {
  for (RxState& s : rx_) {
    if (s.used && s.sender == sender) return &s;
  }
  return nullptr;
}

ArqReceiver::RxState* ArqReceiver::rx_for(const Packet& p, StageIo& io) noexcept {
  RxState* s = find_rx(p.sender);
  if (s != nullptr) return s;
  // Cold: a new sender. Take a free slot, else the one silent the longest among senders
  // outside the view; a member of the view is never evicted to make room for a stranger
  // (with more members sending at once than there are states, the member silent the
  // longest gives its state up).
  const Group& g = io.group();
  RxState* stranger = nullptr;
  RxState* member = nullptr;
  RxState* victim = nullptr;
  for (RxState& c : rx_) {
    if (!c.used) {
      victim = &c;
      break;
    }
    RxState*& oldest = g.slot_of_sender(c.sender) == kNoSlot ? stranger : member;
    if (oldest == nullptr || c.last_used_ns < oldest->last_used_ns) oldest = &c;
  }
  if (victim == nullptr) victim = stranger != nullptr ? stranger : member;
  if (victim->used && victim == member && g.slot_of_sender(p.sender) == kNoSlot) return nullptr;
  if (victim->used) {
    io.count(ctr::senders_evicted);
    remember_edge(*victim);
    hold_.release_all(slot_of(*victim), io);
  }
  victim->used = false;
  victim->sender = p.sender;
  return victim;
}

// An evicted incarnation's settled edge, kept so that a new state for it never takes its
// old datagrams (a replay) as fresh. A ring: under a flood of strangers the oldest go.
void ArqReceiver::remember_edge(const RxState& s) noexcept {
  evicted_[next_evicted_] = EvictedEdge{s.sender, s.epoch, s.cum};
  next_evicted_ = (next_evicted_ + 1) % evicted_.size();
}

std::uint64_t ArqReceiver::forget_edge(std::uint32_t sender, std::uint32_t epoch) noexcept {
  for (EvictedEdge& e : evicted_) {
    if (e.sender == sender && e.epoch == epoch && e.cum != 0) {
      const std::uint64_t cum = e.cum;
      e = EvictedEdge{};
      return cum;
    }
  }
  return 0;
}

void ArqReceiver::reset_rx(RxState& s, const Packet& p, const RelBody& rel) noexcept {
  std::uint64_t* bits = s.bits;
  s = RxState{};
  s.bits = bits;
  clear_all(s);
  s.used = true;
  s.sender = p.sender;
  s.epoch = p.epoch;
  // Start at the sender's trailing edge: below it everything is settled. Never NACK
  // below the first packet seen (history from before we joined).
  s.cum = rel.trail - 1;
  s.nack_floor = rel.rseq;
  // Evicted before: what was delivered then stays delivered.
  const std::uint64_t was = forget_edge(p.sender, p.epoch);
  if (was > s.cum) s.cum = was;
  s.highest = s.cum;
  hold_.restart(slot_of(s), s.cum);  // empty: release_all() ran first
}

// How far a receiver spreads its first NACK of a gap: nack_delay_us with eight or more
// other receiving members, proportionally less with fewer. The random spread lets one
// NACK stand for every receiver that missed the same datagram (the others hear it and
// stay quiet); with one or two others a duplicate NACK costs one extra retransmission,
// while the wait holds every message behind the gap at this receiver. (At 1 % loss and
// ~90k datagrams/s with two receivers, cutting it to an eighth cut the repairs that
// came by timeout by half and raised the lossy receiver's rate by about 10 %.)
//
// Beyond eight it grows with the group, one nack_delay_us more per 64 others: the members
// that missed the same datagram grow with the group (about ten of a thousand at 1 % loss),
// they all see the gap at the same moment (the next datagram), and a NACK is suppressed only
// by the repair, which comes a round trip after the first NACK; so the spread must grow
// with the losers for the requests reaching the sender per lost datagram to stay near one.
std::uint64_t ArqReceiver::nack_spread_ns(const Group& g) const noexcept {
  const auto others = static_cast<std::uint64_t>(g.receivers().count());
  if (others > 8) return cfg_.nack_delay_ns * (1 + others / 64);
  return cfg_.nack_delay_ns * std::clamp<std::uint64_t>(others, 1, 8) / 8;
}

std::uint32_t ArqReceiver::nack_rounds() const noexcept { return std::max<std::uint32_t>(cfg_.max_retries, 1); }

// --- a reliable packet arrives ------------------------------------------------------------

void ArqReceiver::on_reliable(Packet* p, StageIo& io) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* b = p->ext(wire::Ext::rel, &len);
  const auto rel = detail::decode_rel_body(b, len);
  if (!rel) {
    io.count(ctr::malformed);
    io.drop(p, DropReason::malformed);
    return;
  }
  const std::uint64_t now = io.now_ns();
  RxState* s = rx_for(*p, io);
  if (s == nullptr) {  // a stranger, and every slot holds a member of the view
    io.drop(p, DropReason::not_in_view);
    hold_.flush(io);
    return;
  }
  const std::size_t slot = slot_of(*s);
  if (!s->used) {
    reset_rx(*s, *p, *rel);
  } else if (s->epoch != p->epoch) {
    // A different incarnation: the newer one is whichever the view says is current;
    // without a view, the one heard last.
    const Group& g = io.group();
    const int member = g.slot_of_sender(p->sender);
    if (member != kNoSlot && g.member(member).epoch == s->epoch) {
      io.drop(p, DropReason::stale_epoch);
      hold_.flush(io);
      return;
    }
    hold_.release_all(slot, io);  // the old incarnation's
    reset_rx(*s, *p, *rel);
  }
  const std::uint64_t r = rel->rseq;
  const std::uint64_t settled = rel->trail > 1 ? rel->trail - 1 : 0;
  if (settled > s->cum + rx_bits_ || r > std::max(s->cum, settled) + rx_bits_) {
    // Beyond what we can track: the sender's window is larger than ours (do not ack, it
    // retransmits once we have caught up), or a datagram claims a trailing edge more than
    // a window ahead (a forgery would otherwise settle everything the real sender has not
    // sent yet, so its real messages would be dropped as duplicates and acked). Checked
    // before anything moves: the state is left as it was.
    io.count(ctr::beyond_window);
    io.drop(p, DropReason::buffer_full);
    hold_.flush(io);
    return;
  }
  s->last_used_ns = now;
  if (p->src_ip != 0) {
    s->src_ip = p->src_ip;
    s->src_port = p->src_port;
  }
  const std::uint64_t cum_before = s->cum;
  if (settled != 0 && advance_to(*s, settled)) s->gap_mark = true;
  if (cfg_.in_order && s->gap_mark) {
    // The sender gave up on a gap below them: they go up, marked for ordering above.
    if (hold_.release_through(slot, s->cum, now, static_cast<std::uint8_t>(EventCause::released))) {
      s->gap_mark = false;
    } else if (r <= s->cum) {
      // This packet goes up in its place below and carries the mark itself.
    } else {
      up_edge_marker(*s, cum_before, io);
    }
  } else if (cfg_.in_order) {
    hold_.release_through(slot, s->cum, now);
  }
  if (have(*s, r)) {
    // Our ack was lost (or the network duplicated the packet): ack again at once, and
    // once more after ack_delay_us. A retransmission of something we have means the
    // sender missed our acks for a whole RTO; with one ack per round a lossy reverse
    // path could spend the sender's whole retry budget on a message we hold (each
    // round then needs two packets to survive instead of one and a half, on average).
    io.count(ctr::duplicates);
    // With sparse acks a duplicate is mostly a repair another member asked for: acking
    // it would bring the whole group's acks per repair; a sender that lost our ack asks
    // for one instead (on_ack_request()).
    if (self_receives_ && !cfg_.app_acks && stride(io.group()) == 1) {
      send_ack(*s, io);
      if (cfg_.ack_delay_ns != 0) {
        s->ack_due_ns = now + cfg_.ack_delay_ns;
        note_deadline(s->ack_due_ns);
      }
    }
    if (cfg_.app_acks) {
      // The sender retransmitted because the reply that acknowledges it never came: the
      // application answers again (it is idempotent by contract of this mode).
      hold_.flush(io);
      io.up(p);  // last: a stage above may send from inside it
      return;
    }
    io.drop(p, DropReason::duplicate);
    hold_.flush(io);
    return;
  }
  set(*s, r);
  p->rseq = r;
  const std::uint64_t prev_high = s->highest;
  if (r > s->highest) s->highest = r;
  if (r < s->nack_floor) s->nack_floor = r;  // an older repair: no need to ask for it
  advance_contiguous(*s);
  io.count(ctr::delivered);
  schedule_ack(*s, now, /*fresh=*/true, io);
  if (self_receives_ && has_gap(*s)) {
    const std::uint64_t spread = nack_spread_ns(io.group());
    if (s->nack_due_ns == 0 && s->nack_round < nack_rounds()) {
      s->nack_due_ns = now + rng_.between(0, spread);
      if (s->nack_due_ns == 0) s->nack_due_ns = 1;
      s->nack_suppressed = false;
      note_deadline(s->nack_due_ns);
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
        note_deadline(s->nack_due_ns);
      }
    }
  }
  if (cfg_.in_order) {
    if (r > s->cum) {
      // Above a gap: wait for it here (or, with the budget spent, go up unordered).
      if (hold_.hold(slot, p, r, now)) {
        if (hold_.held(slot) == 1) note_deadline(now + cfg_.rto_max_ns);  // a new wait began
        io.count(ctr::held_in_order);
      } else {
        s->early_through = std::max(s->early_through, r);
        hold_.pass_up(p);
      }
    } else {
      // In order: it goes up in its place, then what waited behind it.
      if (s->gap_mark) p->gap_cause = static_cast<std::uint8_t>(EventCause::released);
      s->gap_mark = false;
      hold_.arrived_in_order(slot, p, r, s->cum, now);
    }
    hold_.flush(io);  // last: a stage above may send from inside it
    return;
  }
  io.up(p);  // last: a stage above may send from inside it
}

void ArqReceiver::on_edge(std::uint32_t sender, std::uint32_t epoch, std::uint64_t settled, StageIo& io) noexcept {
  RxState* s = find_rx(sender);
  // Old news, another incarnation, or more than a window ahead (a forgery would settle
  // what the real sender has not sent): nothing moves.
  if (s == nullptr || s->epoch != epoch || settled <= s->cum || settled > s->cum + rx_bits_) return;
  const std::uint64_t now = io.now_ns();
  s->last_used_ns = now;
  const std::uint64_t cum_before = s->cum;
  if (advance_to(*s, settled)) s->gap_mark = true;
  if (!has_gap(*s)) {
    s->nack_due_ns = 0;
    s->fresh = false;
  }
  if (cfg_.in_order) {
    if (hold_.release_through(slot_of(*s), s->cum, now, static_cast<std::uint8_t>(EventCause::released))) {
      s->gap_mark = false;
    } else if (s->gap_mark) {
      up_edge_marker(*s, cum_before, io);
    }
    hold_.flush(io);
  }
}

// The cumulative point just passed over a hole the sender settled, nothing held here went
// up to carry the mark, and packets above that hole went up earlier, unordered (see
// RxState::early_through): ordering above may hold them behind it, and with no later
// packet of the sender it would wait for the hole until its own timeout. A marker goes up
// in their stead: a control packet without payload, gap_cause released, rseq the
// cumulative point (what it means: Packet::rseq). The pipeline never delivers it.
void ArqReceiver::up_edge_marker(RxState& s, std::uint64_t cum_before, StageIo& io) noexcept {
  if (s.early_through <= cum_before) return;  // nothing went up above the hole: the mark waits
  Packet* m = io.alloc_small();
  if (m == nullptr) return;  // pool dry: the next packet of the sender still carries the mark
  m->reset_for_receive();
  m->kind = wire::Kind::control;
  m->sender = s.sender;
  m->epoch = s.epoch;
  m->gap_cause = static_cast<std::uint8_t>(EventCause::released);
  m->rseq = s.cum;
  hold_.pass_up(m);
}

void ArqReceiver::overheard_nack(const NackBody& nack) noexcept {
  RxState* s = find_rx(nack.target_sender);
  if (s != nullptr && s->epoch == nack.target_epoch && s->nack_due_ns != 0) {
    std::uint64_t a = 0;
    std::uint64_t n = 0;
    if (first_gap(*s, a, n) && a >= nack.first && a + n <= nack.first + nack.count) s->nack_suppressed = true;
  }
}

// --- acks and NACKs ---------------------------------------------------------------------

// The stride of sparse acks for this view (cached per view).
std::uint32_t ArqReceiver::stride(const Group& g) noexcept {
  if (g.view_id() != stride_view_) {
    stride_view_ = g.view_id();
    stride_ = cfg_.sparse_acks() ? ack_stride(static_cast<std::size_t>(g.receivers().count()), cfg_.window) : 1;
  }
  return stride_;
}

// The next number above `highest` at which this receiver acks: every stride_-th, offset
// by its own sender id so that the group's acks spread evenly over the datagrams.
std::uint64_t ArqReceiver::next_boundary(std::uint64_t highest) const noexcept {
  const std::uint64_t k = stride_;
  const std::uint64_t off = env_.sender % k;
  const std::uint64_t r = highest + 1;
  return r + (k - (r + off) % k) % k;
}

void ArqReceiver::schedule_ack(RxState& s, std::uint64_t now, bool fresh, StageIo& io) noexcept {
  if (!self_receives_ || cfg_.app_acks) return;  // a send-only member never acks; nor do replies' receivers
  if (fresh) ++s.unacked;
  if (stride(io.group()) > 1) {
    // Sparse: at this receiver's own points of the stride, else once the sender has been
    // quiet for the tail time (the timer restarts with every new packet). A new sender's
    // first packet is acked only if it falls on this receiver's point.
    if (s.next_ack_at == 0) s.next_ack_at = next_boundary(s.highest - 1);
    if (s.highest >= s.next_ack_at) {
      send_ack(s, io);
      return;
    }
    s.ack_due_ns = now + cfg_.tail_ack_ns();
    note_deadline(s.ack_due_ns);
    return;
  }
  if (s.unacked >= cfg_.ack_every || cfg_.ack_delay_ns == 0) {
    send_ack(s, io);
    return;
  }
  if (s.ack_due_ns == 0) {
    s.ack_due_ns = now + cfg_.ack_delay_ns;
    note_deadline(s.ack_due_ns);
  }
}

Packet* ArqReceiver::control_packet(wire::Kind kind, std::uint8_t body_len, std::uint8_t*& body,
                                    StageIo& io) noexcept {
  Packet* a = io.alloc();
  if (a == nullptr) {
    io.count(ctr::no_buffer);
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
    io.count(ctr::no_buffer);
    return nullptr;
  }
  return a;
}

// Where feedback about sender `s` goes: to its address when we may unicast and the view
// knows it for this incarnation; else, with sparse acks (a large group), to where its
// reliable packets came from (a member sends everything from its own unicast socket), so
// that a lost heartbeat (rare in a large group, see membership.heartbeat) does not send
// our feedback to every member; else (dst 0) to the group.
void ArqReceiver::address(Packet& a, const RxState& s, StageIo& io) const noexcept {
  if (!unicast_) return;
  const Group& g = io.group();
  const int slot = g.slot_of_sender(s.sender);
  if (slot != kNoSlot) {
    const MemberInfo& m = g.member(slot);
    if (m.epoch == s.epoch && m.ip != 0) {
      a.dst_ip = m.ip;
      a.dst_port = m.port;
      return;
    }
  }
  if (stride_ == 1) return;  // small groups: to the group, as they always did
  a.dst_ip = s.src_ip;
  a.dst_port = s.src_port;
}

// What this receiver holds of sender `s`: its cumulative point and the 64 above it.
AckBody ArqReceiver::position(const RxState& s) const noexcept {
  AckBody ack;
  ack.target_sender = s.sender;
  ack.target_epoch = s.epoch;
  ack.cumulative = s.cum;
  for (std::uint64_t i = 0; i < 64; ++i) {
    const std::uint64_t r = s.cum + 2 + i;
    if (r > s.highest) break;
    if (test(s, r)) ack.sack |= std::uint64_t{1} << i;
  }
  return ack;
}

void ArqReceiver::send_ack(RxState& s, StageIo& io, bool to_group) noexcept {
  s.ack_due_ns = 0;
  s.unacked = 0;
  if (stride_ > 1) s.next_ack_at = next_boundary(s.highest);
  const AckBody ack = position(s);
  std::uint8_t* body = nullptr;
  Packet* a = control_packet(wire::Kind::ack, detail::kAckBodyBytes, body, io);
  if (a == nullptr) return;
  detail::encode_ack(body, ack);
  if (!to_group) address(*a, s, io);
  io.count(ctr::acks_sent);
  io.down(a);
}

// With sparse acks (a large group) each NACK also carries this receiver's position (its
// ack, ack_format.hpp) and the sender counts it as one: the next stride ack is due a
// stride after it, not at the next staggered point. A receiver NACKs about once per
// hundred datagrams it lost (one NACK stands for the receivers that missed the same
// datagram) against a stride of about 2R, so in a large group most stride acks are
// NACKs as well, and the acks alone drop from about 0.5 per datagram to the tail's. The
// sender still hears from every member at least once per stride (the NACK's cumulative
// point may sit below the hole it asks for: the next report, a stride on, covers it).
void ArqReceiver::send_nacks(RxState& s, StageIo& io, std::uint64_t from) noexcept {
  const bool with_position = stride_ > 1;
  const AckBody ack = with_position ? position(s) : AckBody{};
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
    Packet* a = control_packet(wire::Kind::nack,
                               with_position ? detail::kNackAckBodyBytes : detail::kNackBodyBytes, body, io);
    if (a == nullptr) return;
    if (with_position) {
      detail::encode_nack(body, n, ack);
      s.next_ack_at = std::max(s.next_ack_at, s.highest + stride_);
    } else {
      detail::encode_nack(body, n);
    }
    address(*a, s, io);
    io.count(ctr::nacks_sent);
    io.down(a);
  }
}

void ArqReceiver::on_ack_request(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
  if (!self_receives_ || cfg_.app_acks || stride(io.group()) == 1) return;
  RxState* s = find_rx(sender);
  if (s != nullptr && s->epoch == epoch) send_ack(*s, io);
}

void ArqReceiver::ack_all_to_group(StageIo& io) noexcept {
  if (cfg_.app_acks) return;
  for (RxState& s : rx_) {
    if (s.used && (s.ack_due_ns != 0 || unicast_)) send_ack(s, io, /*to_group=*/true);
  }
}

void ArqReceiver::scan(StageIo& io) noexcept {
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
          io.count(ctr::nacks_suppressed);
        } else {
          send_nacks(s, io, s.fresh_from);
        }
        s.nack_suppressed = false;
        s.nack_due_ns = resume != 0 && has_gap(s) ? std::max(resume, now + 1) : 0;
      } else if (has_gap(s)) {
        if (s.nack_suppressed) {
          io.count(ctr::nacks_suppressed);
        } else {
          send_nacks(s, io);
        }
        ++s.nack_round;
        s.nack_suppressed = false;
        if (s.nack_round < nack_rounds()) {
          // Ask again if the repair does not come: back off, with jitter so that the
          // receivers missing the same packets do not ask in lockstep.
          const std::uint64_t base = std::max(cfg_.rto_min_ns, 4 * cfg_.nack_delay_ns);
          const unsigned shift = std::min<unsigned>(s.nack_round - 1, 20);
          const std::uint64_t wait = std::min(base << shift, cfg_.rto_max_ns);
          s.nack_due_ns = now + wait + rng_.between(0, nack_spread_ns(io.group()));
        }
      }
    }
    const std::size_t slot = slot_of(s);
    if (hold_.held(slot) > 0 && now >= hold_.held_since_ns(slot) + cfg_.rto_max_ns) {
      hold_.release_all(slot, io);
      s.early_through = s.highest;
    }
    if (s.ack_due_ns != 0 && (next == 0 || s.ack_due_ns < next)) next = s.ack_due_ns;
    if (s.nack_due_ns != 0 && (next == 0 || s.nack_due_ns < next)) next = s.nack_due_ns;
    if (hold_.held(slot) > 0 && (next == 0 || hold_.held_since_ns(slot) + cfg_.rto_max_ns < next)) {
      next = hold_.held_since_ns(slot) + cfg_.rto_max_ns;
    }
  }
  deadline_ = next;
  hold_.flush(io);
}

}  // namespace tmc::arq
