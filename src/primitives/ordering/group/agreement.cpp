#include "primitives/ordering/group/agreement.hpp"

#include <algorithm>
#include <limits>

namespace tmc::detail::group_order {
namespace {
// The least spacing of two statuses sent to repair a peer's stale view.
constexpr std::uint64_t kStatusRepairNs = 2'000'000;
}  // namespace

bool sender_alive(const Group& g, const StageEnv& self, std::uint32_t sender, std::uint32_t epoch,
                  bool unknown) noexcept {
  if (sender == self.sender && epoch == self.epoch) return true;
  const int slot = g.slot_of_sender(sender);
  if (slot == kNoSlot) return unknown;
  if (slot == g.self_slot()) return false;  // a former incarnation of ourselves
  const MemberInfo& m = g.member(slot);
  if (m.epoch != 0 && m.epoch != epoch) return false;  // a retired incarnation
  return m.state != MemberState::failed && m.state != MemberState::left;
}

void Agreement::configure(const StageEnv& env, std::uint32_t window) {
  env_ = env;
  window_ = window;
}

void Agreement::fit_view(const Group& g) {
  if (g.slots() <= peers_.size()) return;
  peers_.resize(g.slots());
  parts_.resize(g.slots() + 1);
}

// --- this member's own state -------------------------------------------------------------

std::uint64_t Agreement::held_through(const MsgTable& t) noexcept {
  if (t.term().no == 0) return 0;
  if (held_h_ < t.next_g() - 1) held_h_ = t.next_g() - 1;
  while (held_h_ + 1 < t.next_g() + window_ && t.deliverable(held_h_ + 1)) ++held_h_;
  return held_h_;
}

void Agreement::begin_term(const gw::TermId& nt, const gw::CutRecord* recs, std::uint32_t nrec) noexcept {
  term_no_seen_ = std::max(term_no_seen_, nt.no);
  held_h_ = 0;
  last_stable_ = 0;
  sent_held_ = 0;  // what our statuses said was about the old term
  sent_delivered_ = 0;
  frozen_ = false;
  frozen_h_ = 0;
  tail_due_ = 0;
  tail_held_ = 0;
  n_adopted_ = 0;
  for (std::uint32_t r = 0; r < nrec && n_adopted_ < gw::kMaxRecords; ++r) adopted_[n_adopted_++] = recs[r];
}

// --- the view's statuses -------------------------------------------------------------------

const PeerStatus* Agreement::peer(const Group& g, int slot) const noexcept {
  if (slot < 0 || static_cast<std::size_t>(slot) >= peers_.size()) return nullptr;
  const PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
  const MemberInfo& m = g.member(slot);
  if (!ps.have || m.sender == 0 || ps.sender != m.sender || ps.epoch != m.epoch) return nullptr;
  return &ps;
}

void Agreement::forget_stale_peers(const Group& g) noexcept {
  fit_view(g);
  for (std::size_t i = 0; i < g.slots(); ++i) {
    PeerStatus& ps = peers_[i];
    const MemberInfo& m = g.member(static_cast<int>(i));
    if (ps.have && (ps.sender != m.sender || ps.epoch != m.epoch)) ps.have = false;
  }
}

const PeerStatus* Agreement::on_status(Packet* p, const gw::Status& s, StageIo& io) noexcept {
  const Group& g = io.group();
  const int slot = g.slot_of_sender(p->sender);
  const std::uint32_t from_sender = p->sender;
  const std::uint32_t from_epoch = p->epoch;
  if (slot == kNoSlot || slot == g.self_slot() || g.member(slot).epoch != from_epoch) {
    p->release();
    io.count(stale);  // not (yet) in our view: its next status will count
    return nullptr;
  }
  io.count(statuses_received);
  term_no_seen_ = std::max(term_no_seen_, s.term.no);
  fit_view(g);  // cold when the view grew
  PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
  const bool fresh = !ps.have || ps.sender != from_sender || ps.epoch != from_epoch;
  // Frozen statuses only carry cut-offs: growing the vector is the cold path.
  const auto take_cutoffs = [&] {
    const std::uint8_t* cut_bytes = p->payload() + std::size_t{s.n_records} * gw::kRecordBytes;
    ps.cutoffs.resize(s.n_cutoffs);
    for (std::uint32_t i = 0; i < s.n_cutoffs; ++i) ps.cutoffs[i] = gw::cutoff_at(cut_bytes, i);
  };
  ps.repeat = !fresh && gw::same_term(s.term, ps.st.term) && s.frozen == ps.st.frozen && s.held == ps.st.held &&
              s.delivered == ps.st.delivered && s.stable == ps.st.stable;
  if (fresh || gw::term_after(s.term, ps.st.term)) {
    ps.have = true;
    ps.sender = from_sender;
    ps.epoch = from_epoch;
    ps.st = s;
    take_cutoffs();
  } else if (gw::same_term(s.term, ps.st.term)) {
    if (s.frozen && !ps.st.frozen) {
      ps.st = s;
      take_cutoffs();
    } else if (!s.frozen && !ps.st.frozen) {
      // Reordered statuses of one term: the numbers only grow.
      ps.st.held = std::max(ps.st.held, s.held);
      ps.st.delivered = std::max(ps.st.delivered, s.delivered);
      ps.st.stable = std::max(ps.st.stable, s.stable);
    }
  }
  p->release();  // consumed: statuses are this stage's own traffic
  return &ps;
}

void Agreement::note_sequencer_holds(const Group& g, std::uint32_t sender, std::uint32_t epoch, std::uint64_t top,
                                     const gw::TermId& term) noexcept {
  const int slot = g.slot_of_sender(sender);
  if (slot == kNoSlot || slot == g.self_slot() || g.member(slot).epoch != epoch) return;
  fit_view(g);  // cold when the view grew
  PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
  if (stride_ > 1 && (!ps.have || ps.sender != sender || ps.epoch != epoch)) {
    // Sparse statuses: the sequencer's first status may be lost, and it sends the next one
    // only once it delivered everything it holds; its announcements tell what it holds.
    ps = PeerStatus{};
    ps.have = true;
    ps.sender = sender;
    ps.epoch = epoch;
    ps.st.term = term;
  }
  if (!ps.have || ps.sender != sender || ps.epoch != epoch || ps.st.frozen) return;
  if (!gw::same_term(ps.st.term, term)) return;
  ps.st.held = std::max(ps.st.held, top);
}

std::uint64_t Agreement::update_stable(const MsgTable& t, const Group& g) noexcept {
  std::uint64_t s = held_through(t);
  const MemberSet& rx = g.receivers();
  for (int slot = rx.first(); slot >= 0; slot = rx.next(slot)) {
    const PeerStatus* ps = peer(g, slot);
    if (ps == nullptr || !gw::same_term(ps->st.term, t.term())) {
      s = 0;
      break;
    }
    s = std::min(s, ps->st.held);
  }
  last_stable_ = s;
  return s;
}

std::uint64_t Agreement::assign_limit(const MsgTable& t, const Group& g) const noexcept {
  std::uint64_t low = t.next_g();
  const MemberSet& rx = g.receivers();
  for (int slot = rx.first(); slot >= 0; slot = rx.next(slot)) {
    const PeerStatus* ps = peer(g, slot);
    const std::uint64_t next = ps != nullptr && gw::same_term(ps->st.term, t.term()) ? ps->st.delivered + 1 : 1;
    low = std::min(low, next);
  }
  return low + window_;
}

// --- our statuses ------------------------------------------------------------------------------

// Stability costs one one-way hop on top of the announcement only if this status leaves
// without delay: from the tick that is due now, which a shell runs after the input batch in
// hand, so that every change one batch of packets makes shares one status. A deadline in the
// future would cost a whole timer period in a shell whose timers count milliseconds (libuv).
void Agreement::note_status_change(StageIo& io) noexcept {
  const std::uint64_t at = std::max<std::uint64_t>(io.now_ns(), 1);
  if (status_due_ == 0 || at < status_due_) status_due_ = at;
}

// Sparse statuses. Every status is multicast and every member hears every one, so a status
// on every change of holdings costs the group R datagrams per data datagram (and the
// members R^2 receptions). From kSparseStatusReceivers receivers on, a member reports its
// holdings when they cross a multiple of the stride k = min(R, window / 16): about one
// status per data datagram in all, whatever the group's size. Every member's stride points
// are the same global numbers, so a stride's statuses all report the same point and make
// it stable at once: delivery waits up to k datagrams more than in a small group. The
// holdings a stride has not reported yet go out once they stood still for kStatusTailNs
// (the end of a burst, or a stream slower than the tail time: then a status per change,
// as in a small group). A lost status is superseded by the next stride's, or repaired by
// the stall rule of periodic_status(). The cap of window / 16 keeps a stride well inside
// the undelivered messages a sender may have (window / 8), or the sender would wait for
// the tail time at every stride.
void Agreement::fit_receivers(std::uint32_t receivers) noexcept {
  if (receivers < kSparseStatusReceivers) {
    stride_ = 1;
    stall_period_ns_ = kStatusPeriodNs;
    return;
  }
  stride_ = std::min(receivers, std::max<std::uint32_t>(window_ / 16, 1));
  // As heartbeats are spaced in large groups: each member hears about 32 stall repairs
  // per kStatusPeriodNs.
  stall_period_ns_ = kStatusPeriodNs * ((receivers + 31) / 32);
}

// Delivery alone is news only for the sequencer's window (assign_limit): reported in steps
// of a quarter window; the statuses that report holdings carry it meanwhile, and a member
// that holds anything also reports periodically.
void Agreement::note_progress(const MsgTable& t, std::uint64_t told, StageIo& io) noexcept {
  const std::uint64_t held = held_through(t);
  if (t.next_g() - 1 >= sent_delivered_ + std::max<std::uint32_t>(window_ / 4, 1)) {
    note_status_change(io);
    return;
  }
  if (held == told) return;
  if (stride_ <= 1 || held / stride_ != told / stride_) {
    note_status_change(io);
  } else if (held != tail_held_ || tail_due_ == 0) {
    tail_held_ = held;
    tail_due_ = io.now_ns() + kStatusTailNs;
  }
}

std::uint64_t Agreement::periodic_at(bool failover) const noexcept {
  if (stride_ <= 1) return std::max<std::uint64_t>(1, last_status_ns_ + kStatusPeriodNs);
  // Beyond 32 receivers a failover's repeats are spaced too: each member hears about 32
  // per 10 ms (a group that just formed cuts and starts terms as members are heard).
  if (failover) return std::max<std::uint64_t>(1, last_status_ns_ + stall_period_ns_);
  return std::max(last_status_ns_, periodic_from_) + stall_period_ns_;
}

bool Agreement::periodic_status(const MsgTable& t, bool failover, std::uint64_t now) noexcept {
  if (failover || stride_ <= 1) return true;
  const std::uint64_t held = held_through(t);
  if (t.next_g() != periodic_next_g_ || held != periodic_held_) {
    periodic_next_g_ = t.next_g();
    periodic_held_ = held;
    periodic_from_ = now;
    return false;
  }
  return true;
}

void Agreement::repair_if_behind(const PeerStatus& ps, const gw::TermId& term, const MsgTable& t,
                                 StageIo& io) noexcept {
  if (!gw::same_term(ps.st.term, term) || ps.st.stable >= reported_held(t)) return;
  if (stride_ <= 1) {
    if (io.now_ns() >= last_status_ns_ + kStatusRepairNs) note_status_change(io);
    return;
  }
  // Sparse statuses: peers report less stable than we hold between every two stride
  // points, and a member that still delivers sends its next stride's status (or, stalled,
  // repeats its own: periodic_status). One that delivered all it holds sends nothing more
  // by itself (the sequencer, or a member whose last status was lost while the others
  // wait for it): it answers a stalled peer (one that repeats its status), once per stall
  // period. Answering every peer that lags would cost R statuses whenever one member
  // repairs a hole late.
  if (ps.repeat && reported_held(t) == t.next_g() - 1 && io.now_ns() >= last_status_ns_ + stall_period_ns_) {
    note_status_change(io);
  }
}

void Agreement::send_status(const MsgTable& t, StageIo& io) noexcept {
  status_due_ = 0;
  tail_due_ = 0;
  last_status_ns_ = io.now_ns();
  Packet* p = io.alloc();
  if (p == nullptr) {
    io.count(Counter::full);
    return;
  }
  // A frozen status also says how far this member delivered each sender (the next term
  // start takes the largest: see merge_cutoffs), as many as one datagram holds. Our own
  // comes first: a cut-off of ours below what we delivered would make the next term wait
  // for messages we no longer hold, while any other sender's messages beyond what it
  // reports itself are still held by that sender (it keeps each until it delivers it).
  std::uint32_t ncut = 0;
  const SenderState* own = nullptr;
  if (frozen_) {
    const std::uint32_t used = 64 + n_adopted_ * gw::kRecordBytes;
    const std::uint32_t max_cut =
        env_.max_payload_bytes > used ? (env_.max_payload_bytes - used) / gw::kCutoffBytes : 0;
    for (const SenderState& st : t.senders()) {
      if (!st.used || st.done_seq == 0) continue;
      if (st.id == env_.sender && st.epoch == env_.epoch) own = &st;
      if (ncut < max_cut) ++ncut;
    }
  }
  p->reset_for_send(n_adopted_ * gw::kRecordBytes + ncut * gw::kCutoffBytes);
  for (std::uint32_t i = 0; i < n_adopted_; ++i) {
    gw::put_record(p->payload() + std::size_t{i} * gw::kRecordBytes, adopted_[i]);
  }
  std::uint8_t* cut_bytes = p->payload() + std::size_t{n_adopted_} * gw::kRecordBytes;
  std::uint32_t k = 0;
  if (own != nullptr && ncut > 0) {
    gw::put_cutoff(cut_bytes, gw::Cutoff{own->id, own->epoch, own->done_seq});
    ++k;
  }
  for (const SenderState& st : t.senders()) {
    if (k >= ncut) break;
    if (!st.used || st.done_seq == 0 || &st == own) continue;
    gw::put_cutoff(cut_bytes + std::size_t{k} * gw::kCutoffBytes, gw::Cutoff{st.id, st.epoch, st.done_seq});
    ++k;
  }
  // Unreliable: the next status repairs a lost one.
  std::uint8_t* body = as_order_control(p, /*reliable=*/false, gw::kStatusBody);
  if (body == nullptr) return;
  gw::Status s;
  s.frozen = frozen_;
  s.term = t.term();
  s.held = reported_held(t);
  s.delivered = t.next_g() - 1;
  s.stable = std::min(last_stable_, s.held);
  s.n_records = n_adopted_;
  s.n_cutoffs = ncut;
  gw::write_status_body(body, s);
  sent_held_ = s.held;
  sent_delivered_ = s.delivered;
  io.count(statuses_sent);
  io.down(p);
}

std::uint8_t* Agreement::as_order_control(Packet* p, bool reliable, std::uint8_t body_len) const noexcept {
  p->kind = wire::Kind::control;
  p->flags = reliable ? wire::kFlagReliable : 0;
  p->channel = env_.channel;
  p->sender = env_.sender;
  p->epoch = env_.epoch;
  std::uint8_t* body = p->push_ext(wire::Ext::order, body_len);
  if (body == nullptr) p->release();
  return body;
}

// --- the cut ---------------------------------------------------------------------------------------

bool Agreement::choose_cuts(const MsgTable& t, const Group& g, gw::CutRecord* out, std::uint32_t& nout,
                            std::uint32_t& max_no) noexcept {
  fit_view(g);
  Part* parts = parts_.data();
  std::size_t n = 0;
  parts[n++] = Part{t.term(), reported_held(t), t.next_g() - 1, adopted_, n_adopted_};
  const MemberSet& rx = g.receivers();
  for (int slot = rx.first(); slot >= 0; slot = rx.next(slot)) {
    const PeerStatus* ps = peer(g, slot);
    if (ps == nullptr || !ps->st.frozen) return false;  // wait (its status is periodic)
    parts[n++] = Part{ps->st.term, ps->st.held, ps->st.delivered, ps->st.records, ps->st.n_records};
  }
  max_no = term_no_seen_;
  for (std::size_t i = 0; i < n; ++i) {
    max_no = std::max(max_no, parts[i].t.no);
    for (std::uint32_t r = 0; r < parts[i].nrec; ++r) max_no = std::max(max_no, parts[i].recs[r].term.no);
  }
  nout = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const gw::TermId term = parts[i].t;
    if (term.no == 0) continue;  // a newcomer: nothing to finish
    bool done = false;
    for (std::uint32_t r = 0; r < nout; ++r) done = done || gw::same_term(out[r].term, term);
    if (done) continue;
    // A cut an earlier term start already fixed for the term is kept: members that adopted
    // it have delivered the term up to it.
    bool fixed = false;
    std::uint64_t end = 0;
    for (std::size_t j = 0; j < n && !fixed; ++j) {
      for (std::uint32_t r = 0; r < parts[j].nrec; ++r) {
        if (gw::same_term(parts[j].recs[r].term, term)) {
          fixed = true;
          end = parts[j].recs[r].end;
          break;
        }
      }
    }
    if (!fixed) {
      bool all_at = true;
      std::uint64_t min_h = std::numeric_limits<std::uint64_t>::max();
      std::uint64_t max_d = 0;
      for (std::size_t j = 0; j < n; ++j) {
        if (parts[j].t.no == 0) continue;
        if (!gw::same_term(parts[j].t, term)) {
          all_at = false;
          continue;
        }
        min_h = std::min(min_h, parts[j].h);
        max_d = std::max(max_d, parts[j].d);
      }
      // Everyone at the term: the longest prefix every survivor holds. Survivors at several
      // terms: nobody could deliver beyond what members at the term already delivered (the
      // others never reported it), so it ends there.
      end = all_at ? min_h : max_d;
    }
    if (nout < gw::kMaxRecords) out[nout++] = gw::CutRecord{term, end};
  }
  return true;
}

// The largest any receiver reports: members that stayed together agree on it already (the
// cut covers what any of them delivered); a member that was cut off from a term the others
// delivered in (views split, e.g. a member declared failed before it was ever heard)
// reports less, and ordering again from its own numbers would wait for messages their
// senders delivered and no longer hold. It skips them instead (it missed them:
// docs/manifest.md, Guarantees).
void Agreement::merge_cutoffs(const MsgTable& t, const Group& g, std::vector<gw::Cutoff>& merged) const {
  merged.clear();
  const auto merge = [&](std::uint32_t id, std::uint32_t epoch, std::uint64_t last) {
    if (last == 0 || !sender_alive(g, env_, id, epoch)) return;
    for (gw::Cutoff& m : merged) {
      if (m.sender == id && m.epoch == epoch) {
        m.last_seq = std::max(m.last_seq, last);
        return;
      }
    }
    merged.push_back(gw::Cutoff{id, epoch, last});
  };
  for (const SenderState& st : t.senders()) {
    if (st.used) merge(st.id, st.epoch, st.done_seq);
  }
  const MemberSet& rx = g.receivers();
  for (int slot = rx.first(); slot >= 0; slot = rx.next(slot)) {
    const PeerStatus* ps = peer(g, slot);
    if (ps == nullptr || !ps->st.frozen) continue;
    for (const gw::Cutoff& c : ps->cutoffs) merge(c.sender, c.epoch, c.last_seq);
  }
}

std::uint32_t Agreement::start_cutoff_room(std::uint32_t nrec) const noexcept {
  const std::uint32_t used = 64 + nrec * gw::kRecordBytes;
  const std::uint32_t room = env_.max_payload_bytes > used ? (env_.max_payload_bytes - used) / gw::kCutoffBytes : 0;
  return std::clamp<std::uint32_t>(room, 1, gw::kMaxStartCutoffs);
}

}  // namespace tmc::detail::group_order
