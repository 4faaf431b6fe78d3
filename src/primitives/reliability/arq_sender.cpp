// reliability.arq: the sender window (see arq_sender.hpp).
#include "primitives/reliability/arq_sender.hpp"

#include <algorithm>
#include <cmath>

namespace tmc::arq {
namespace {

using detail::AckBody;
using detail::NackBody;
using detail::RelBody;

std::uint8_t* rel_body_mut(Packet& p) noexcept {
  for (std::uint8_t i = 0; i < p.n_ext; ++i) {
    if (p.ext_type[i] == static_cast<std::uint8_t>(wire::Ext::rel) && p.ext_len[i] == detail::kRelBodyBytes) {
      return p.buf + p.ext_body[i];
    }
  }
  return nullptr;
}

}  // namespace

ArqSender::~ArqSender() {
  for (Entry& e : entries_) {
    if (e.copy != nullptr) e.copy->release();
  }
  queue_.release_all();
}

void ArqSender::configure(const Config& cfg, const StageEnv& env, std::vector<std::string> ack_from) {
  cfg_ = cfg;
  channel_ = env.channel;
  self_sender_ = env.sender;
  self_epoch_ = env.epoch;
  ack_from_ = std::move(ack_from);
  rto_ns_ = std::clamp(cfg.rto_initial_ns, cfg.rto_min_ns, cfg.rto_max_ns);
  entries_.assign(cfg.window, Entry{});
}

// --- the queue ------------------------------------------------------------------------------

void ArqSender::pump_queue(StageIo& io) noexcept {
  while (!queue_.empty() && next_rseq_ - trail_ < cfg_.window && retry_queue_ns_ == 0) {
    Packet* p = queue_.pop();
    if (!transmit_new(p, io)) break;
  }
}

// --- forgetting and lifetimes ---------------------------------------------------------------

void ArqSender::forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept {
  const std::uint64_t edge = trail_;
  for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
    Entry& e = entry(r);
    if (e.rseq == r && forgets(e.token_first, e.token, token, scope)) settle(e, EventType::delivery_forgotten, io);
  }
  // Queued messages have no reliable number yet, but ordering above numbered them: each
  // still takes its number when its turn comes, unsent (transmit_new() sees it expired),
  // so receivers see a hole the trailing edge covers. Its outcome is reported now; token 0
  // says so.
  for (Packet* p = queue_.front(); p != nullptr; p = p->next) {
    if (p->token == 0 || !forgets(p->token_first != 0 ? p->token_first : p->token, p->token, token, scope)) continue;
    notify_outcome(EventType::delivery_forgotten, p->token, io);
    p->token = 0;
    p->expires_ns = 1;
  }
  if (trail_ != edge) announce_edge(io);
}

// A control packet that carries this sender's trailing edge as an ack about itself: the
// edge announcement (multicast) and the ack request to one member (unicast). Counts
// no_buffer and returns nullptr when no buffer is left.
Packet* ArqSender::edge_packet(StageIo& io) noexcept {
  Packet* a = io.alloc();
  if (a == nullptr) {
    io.count(ctr::no_buffer);
    return nullptr;
  }
  a->reset_for_send(0);
  a->kind = wire::Kind::control;
  a->channel = channel_;
  a->sender = self_sender_;
  a->epoch = self_epoch_;
  std::uint8_t* body = a->push_ext(wire::Ext::ack, detail::kAckBodyBytes);
  if (body == nullptr) {
    a->release();
    io.count(ctr::no_buffer);
    return nullptr;
  }
  AckBody edge;
  edge.target_sender = self_sender_;
  edge.target_epoch = self_epoch_;
  edge.cumulative = trail_ - 1;
  detail::encode_ack(body, edge);
  return a;
}

// Tell the receivers where the trailing edge is now, at once, instead of with the next
// datagram (which may be long in coming): an ack addressed to this sender itself, sent to
// the group, whose cumulative number is the edge less one. Receivers stop waiting for (and
// asking for) what lies below it, and ordering moves past the hole.
void ArqSender::announce_edge(StageIo& io, bool again) noexcept {
  if (!again) edge_repeats_ = kEdgeRepeats;
  edge_again_ns_ = 0;
  if (edge_repeats_ > 0) {
    --edge_repeats_;
    edge_again_ns_ = io.now_ns() + rto_ns_;
  }
  Packet* a = edge_packet(io);
  if (a == nullptr) return;
  edge_announced_ns_ = io.now_ns();
  edge_due_ = false;
  io.down(a);
}

// --- the ack set and the view ---------------------------------------------------------------

// Resolve ack_from names against the view (cached per view).
void ArqSender::resolve_named(const Group& g) noexcept {
  named_mask_.clear();
  named_unknown_ = false;
  for (const std::string& n : ack_from_) {
    const int slot = g.slot_of_name(n);
    if (slot == kNoSlot) {
      named_unknown_ = true;
    } else if (slot != g.self_slot() && g.member(slot).receives) {
      named_mask_.insert(slot);
    }
  }
}

const MemberSet& ArqSender::required_now(const Group& g) const noexcept {
  return cfg_.mode == AckMode::named ? named_mask_ : g.receivers();
}

// Cold (a view change): size every per-member table and every window entry's sets to the
// view, so that the hot path copies and updates them without allocating.
void ArqSender::fit_view(const Group& g) {
  const std::size_t n = g.slots();
  if (n <= slots_fit_) return;
  slots_fit_ = n;
  slot_cum_.resize(n, 0);
  slot_high_.resize(n, 0);
  slot_ack_ns_.resize(n, 0);
  slot_heard_ns_.resize(n, 0);
  slot_cum_ns_.resize(n, 0);
  slot_asked_ns_.resize(n, 0);
  slot_reask_ns_.resize(n, 0);
  pos_.resize(n);
  join_.resize(n, kNever);
  leave_.resize(n, kNever);
  owed_from_.resize(n, 0);
  owed_to_.resize(n, 0);
  lingers_.resize(n, 0);
  until_view_.resize(n, 0);
  quiet_.reserve(n);
  lingering_.reserve(n);
  left_now_.reserve(n);
  named_mask_.reserve(n);
  members_.reserve(n);
  ever_.reserve(n);
  outcome_.members.reserve(n);
  if (cfg_.mode != AckMode::count && edge_.capacity() < n) {
    // Doubles (MinTree rounds up to a power of two): O(1) amortised per member that joins.
    edge_.reset(n);
    for (std::size_t s = 0; s < n; ++s) edge_.set_leaf(s, leaf(s));
    edge_.rebuild();
  }
  // Application acks name any member; without them the entries' sets stay empty.
  if (cfg_.app_acks) {
    for (Entry& e : entries_) e.app_acked.reserve(n);
  }
}

// The lowest rseq slot `s` may lack among those it must ack, less one (MinTree::kNone when it
// must ack none): its cumulative position, and nothing sent before it joined counts.
// A slot that left the ack set counts only while it lingers.
std::uint64_t ArqSender::leaf(std::size_t s) const noexcept {
  if (join_[s] == kNever || (leave_[s] != kNever && lingers_[s] == 0)) return MinTree::kNone;
  const bool owes = lingers_[s] != 0 && owed_to_[s] > owed_from_[s];
  const std::uint64_t from = owes ? std::min(join_[s], owed_from_[s]) : join_[s];
  return std::max(pos_[s].base, from - 1);
}

// Cold (a view change): the ack set of messages sent from now on. Messages already sent
// keep theirs: a member that joins must ack from `join_at` on (the next message, or every
// unsettled one when ack_from names were unknown until now), one that leaves no message
// sent from now on. O(words + members that came or went).
void ArqSender::open_set(const Group& g, std::uint64_t join_at) {
  fit_view(g);
  const MemberSet& required = required_now(g);
  opened_ = true;
  unresolved_ = cfg_.mode == AckMode::named && named_unknown_;
  members_count_ = static_cast<std::uint32_t>(required.count());
  const bool count = cfg_.mode == AckMode::count;
  if (count) ++view_;
  bool changed = false;
  const std::size_t words = (slots_fit_ + 63) / 64;
  for (std::size_t w = 0; w < words; ++w) {
    for (std::uint64_t diff = members_.word(w) ^ required.word(w); diff != 0; diff &= diff - 1) {
      const std::size_t slot = w * 64 + static_cast<std::size_t>(__builtin_ctzll(diff));
      const bool joins = required.contains(static_cast<int>(slot));
      changed = true;
      if (joins) ever_.insert(static_cast<int>(slot));
      if (count) {
        // k-of-n: a receiver at any view since a message was sent is a candidate for it.
        until_view_[slot] = joins ? kForeverView : view_ - 1;
        continue;
      }
      if (!joins) {
        // It lingers until check_left() finds nothing unsettled waiting for it.
        leave_[slot] = next_rseq_;
        left_now_.push_back(static_cast<int>(slot));
        if (lingers_[slot] == 0) {
          lingers_[slot] = 1;
          lingering_.push_back(static_cast<int>(slot));
        }
      } else if (lingers_[slot] != 0) {
        // Back while a message of its earlier interval still waits for it: that interval
        // is still owed. (Back a second time while both still wait: they merge, and the
        // messages sent while it was out the first time wait for it as well.)
        owed_from_[slot] = owed_to_[slot] > owed_from_[slot] ? owed_from_[slot] : join_[slot];
        owed_to_[slot] = leave_[slot];
        join_[slot] = join_at;
        leave_[slot] = kNever;
      } else {
        join_[slot] = join_at;
        leave_[slot] = kNever;
      }
      edge_.set(slot, leaf(slot));
    }
  }
  if (changed) {
    members_.assign(required);
    members_from_ = next_rseq_;
  }
}

// Cold: whether slot `s`, out of the ack set, still has to ack some unsettled message of
// its interval (it lingers: its position keeps counting), O(window).
void ArqSender::check_left(std::size_t s) noexcept {
  bool waits = false;
  const auto look = [&](std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t r = std::max(from, trail_); r < std::min(to, next_rseq_) && !waits; ++r) {
      const Entry& e = entry(r);
      waits = e.rseq == r && !acked(e, s);
    }
  };
  look(owed_from_[s], owed_to_[s]);
  if (leave_[s] != kNever) look(join_[s], leave_[s]);
  if (!waits) owed_from_[s] = owed_to_[s] = 0;
  if (waits && lingers_[s] == 0) {
    lingers_[s] = 1;
    lingering_.push_back(static_cast<int>(s));
  } else if (!waits && lingers_[s] != 0) {
    unlinger(s);
  }
  edge_.set(s, leaf(s));
}

void ArqSender::unlinger(std::size_t s) noexcept {
  lingers_[s] = 0;
  const auto it = std::find(lingering_.begin(), lingering_.end(), static_cast<int>(s));
  if (it != lingering_.end()) {
    *it = lingering_.back();
    lingering_.pop_back();
  }
}

// The lingering slots whose interval is settled now (the trailing edge passed it).
void ArqSender::release_lingering() noexcept {
  for (std::size_t i = lingering_.size(); i-- > 0;) {
    const auto s = static_cast<std::size_t>(lingering_[i]);
    if ((leave_[s] == kNever ? owed_to_[s] : leave_[s]) <= trail_) check_left(s);
  }
}

// The ack set of `e` into `out` (empty, sized to the view): the current one when no member
// came or went since `e` was sent, else member by member.
void ArqSender::required_into(const Entry& e, MemberSet& out) const noexcept {
  if (cfg_.mode == AckMode::count ? e.view == view_ : e.rseq >= members_from_) {
    out.assign(members_);
    return;
  }
  for (int slot = ever_.first(); slot >= 0; slot = ever_.next(slot)) {
    if (required(e, static_cast<std::size_t>(slot))) out.insert(slot);
  }
}

void ArqSender::on_view(const Group& g, StageIo& io) noexcept {
  fit_view(g);
  stride_ = cfg_.sparse_acks() ? ack_stride(static_cast<std::size_t>(g.receivers().count()), cfg_.window) : 1;
  // ack_from names heard for the first time join every message in flight while some name
  // was unknown (none of them could be met); k-of-n candidates widen to the view's
  // receivers (until_view_).
  const bool widen = cfg_.mode == AckMode::named && unresolved_;
  if (cfg_.mode == AckMode::named) resolve_named(g);
  left_now_.clear();
  open_set(g, widen ? trail_ : next_rseq_);
  const MemberSet& dead = g.gone();
  for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
    Entry& e = entry(r);
    if (e.rseq != r) continue;
    if (cfg_.mode == AckMode::count) {
      std::uint32_t possible = e.acks;
      for (int slot = ever_.first(); slot >= 0; slot = ever_.next(slot)) {
        const auto s = static_cast<std::size_t>(slot);
        if (required(e, s) && !dead.contains(slot) && !acked(e, s)) ++possible;
      }
      if (possible < e.need) settle(e, EventType::delivery_failed, io);
      continue;
    }
    bool failed = false;
    for (int slot = dead.first(); slot >= 0 && !failed; slot = dead.next(slot)) {
      failed = required(e, static_cast<std::size_t>(slot)) && !acked(e, static_cast<std::size_t>(slot));
    }
    if (failed) {
      settle(e, EventType::delivery_failed, io);
    } else if (met(e)) {
      settle(e, EventType::delivery_met, io);
    }
  }
  // The members that left: gone ones failed what they lacked above; the others linger
  // while a message still waits for them.
  for (const int slot : left_now_) check_left(static_cast<std::size_t>(slot));
  left_now_.clear();
}

// Count mode: O(1). All/named: the members whose base lies below `e` (few unless `e` is
// recent, and the first one that lacks it ends the search) must have acked it selectively
// or through the application.
bool ArqSender::met(const Entry& e) const noexcept {
  if (cfg_.mode == AckMode::count) return e.acks >= e.need;
  if (unresolved_) return false;
  return edge_.all_below(e.rseq, [&](std::size_t s) { return !required(e, s) || acked(e, s); });
}

// --- sending ----------------------------------------------------------------------------------

void ArqSender::notify_failed(std::uint64_t token, const MemberSet& members, StageIo& io) noexcept {
  Event& ev = outcome_event(EventType::delivery_failed, 0, token);
  ev.members.assign(members);
  io.count(ctr::failed);
  io.notify(ev);
}

// The outcome of a message that never took a window entry (forgotten or expired while it
// waited for room): nobody acked or failed it, so no members.
void ArqSender::notify_outcome(EventType type, std::uint64_t token, StageIo& io) noexcept {
  io.notify(outcome_event(type, 0, token));
}

// The one event every outcome is reported in: its member set keeps the capacity fit_view()
// gave it, so reporting who acked allocates nothing in a group of any size.
Event& ArqSender::outcome_event(EventType type, std::uint64_t rseq, std::uint64_t token) noexcept {
  Event& ev = outcome_;
  ev.type = type;
  ev.sender = self_sender_;
  ev.epoch = self_epoch_;
  ev.seq = rseq;
  ev.count = 0;
  ev.stage = kKind;
  ev.token = token;
  ev.members.clear();
  return ev;
}

bool ArqSender::transmit_new(Packet* p, StageIo& io) noexcept {
  const Group& g = io.group();
  const std::uint64_t now = io.now_ns();
  if (p->expires_ns != 0 && now >= p->expires_ns) {
    // Its lifetime ran out (or it was forgotten: token 0) while it waited for room in the
    // window: it never goes out, but takes its number, settled at once, so receivers see
    // the hole (ordering above numbered it) and the trailing edge covers it.
    if (p->token != 0) notify_outcome(EventType::delivery_expired, p->token, io);
    p->release();
    if (trail_ == next_rseq_) ++trail_;
    ++next_rseq_;
    released_ = true;
    edge_due_ = true;
    return true;
  }
  if (!opened_) open_set(g, next_rseq_);  // cold: the first message before any view event
  std::uint32_t need = 0;
  if (cfg_.mode == AckMode::count) {
    need = cfg_.ack_k > 0 ? cfg_.ack_k
                          : static_cast<std::uint32_t>(std::ceil(cfg_.ack_fraction * members_count_ - 1e-9));
  }
  const bool trivially_met = cfg_.mode == AckMode::count ? need == 0 : (members_count_ == 0 && !unresolved_);

  Packet* copy = nullptr;
  if (!trivially_met) {
    copy = io.clone(*p);
    if (copy == nullptr) {
      // No buffer to keep a copy: wait (in order) and try again shortly.
      io.count(ctr::no_buffer);
      queue_.push_front(p);
      retry_queue_ns_ = now + cfg_.rto_min_ns;
      return false;
    }
  }
  const std::uint64_t rseq = next_rseq_;
  std::uint8_t* body = p->push_ext(wire::Ext::rel, detail::kRelBodyBytes);
  std::uint8_t* copy_body = copy != nullptr ? copy->push_ext(wire::Ext::rel, detail::kRelBodyBytes) : nullptr;
  if (body == nullptr || (copy != nullptr && copy_body == nullptr)) {
    // No headroom (or sealed by a stage above): it cannot be made reliable.
    if (copy != nullptr) copy->release();
    io.count(ctr::no_buffer);
    notify_failed(p->token, members_, io);
    io.drop(p, DropReason::buffer_full);
    return true;
  }
  ++next_rseq_;
  p->flags |= wire::kFlagReliable;
  const RelBody rel{rseq, trail_};
  detail::encode_rel(body, rel);
  io.count(ctr::sent);
  if (trivially_met) {
    if (trail_ == rseq) trail_ = next_rseq_;
    Event& ev = outcome_event(EventType::delivery_met, rseq, p->token);
    io.count(ctr::met);
    io.notify(ev);
    io.down(p);
    return true;
  }
  copy->flags |= wire::kFlagReliable;
  detail::encode_rel(copy_body, rel);
  Entry& e = entry(rseq);
  // Field by field: the entry's application-ack set keeps its capacity.
  e.copy = copy;
  e.rseq = rseq;
  e.token = p->token;
  e.token_first = p->token_first != 0 ? p->token_first : p->token;
  e.view = view_;
  e.acks = 0;
  if (e.has_app) e.app_acked.clear();
  e.has_app = false;
  e.need = need;
  e.retries = 0;
  e.timeouts = 0;
  e.retransmitted = false;
  e.out = false;
  e.out_ns = 0;
  e.first_sent_ns = e.last_sent_ns = now;
  e.deadline_ns = now + rto_ns_;
  e.expires_ns = p->expires_ns;
  last_send_ns_ = now;
  ++held_;
  deadline_ns_ = earliest(deadline_ns_, earliest(e.deadline_ns, e.expires_ns));
  if (trail_ == rseq) mark_out(rseq, now);  // nothing older unsettled: nothing below holds it
  probed_ = false;
  arm_probe(now);
  io.down(p);
  return true;
}

// --- the tail loss probe ------------------------------------------------------------------

// A loss in the middle of a stream shows as a gap when a later datagram arrives, and the
// receiver NACKs it within nack_delay_us. The last datagrams of a burst (before the window
// fills, or the application pauses) have no later datagram to reveal their loss: they used
// to wait for a retransmission timeout, which is at least rto_min_us and, gated on evidence
// of loss (see scan()), often several. So, as TCP's tail loss probe (RFC 8985): when no ack
// has made progress for a probe timeout — two smoothed RTTs plus the longest a receiver
// holds an ack back — the newest unsettled message goes again, once. A receiver that lacks
// something before it now sees the gap and NACKs it at once; one that lacked only the
// newest acks it; one that had everything re-acks the duplicate. Needs an RTT sample (the
// timeout alone until then); off with acks=application (a duplicate request would be
// answered again).
void ArqSender::arm_probe(std::uint64_t now) noexcept {
  if (!cfg_.tail_probe || !have_rtt_ || cfg_.app_acks || probed_ || trail_ == next_rseq_) {
    probe_ns_ = 0;
    return;
  }
  probe_ns_ = now + 2 * static_cast<std::uint64_t>(srtt_ns_) + cfg_.ack_delay_ns;
}

void ArqSender::probe_tail(StageIo& io) noexcept {
  probe_ns_ = 0;
  const std::uint64_t now = io.now_ns();
  for (std::uint64_t r = next_rseq_; r > trail_;) {
    Entry& e = entry(--r);
    if (e.rseq != r) continue;
    // Sent within the last two RTTs (a timeout or a NACK just repaired it): that copy is
    // the probe already.
    if (now < e.last_sent_ns + 2 * static_cast<std::uint64_t>(srtt_ns_)) return;
    probed_ = true;
    if (retransmit(e, io)) io.count(ctr::tail_probes);
    return;
  }
}

bool ArqSender::retransmit(Entry& e, StageIo& io) noexcept {
  // Refresh the trailing edge the copy advertises, then send a clone of it.
  if (std::uint8_t* body = rel_body_mut(*e.copy); body != nullptr) detail::encode_rel(body, RelBody{e.rseq, trail_});
  Packet* r = io.clone(*e.copy);
  if (r == nullptr) {
    io.count(ctr::no_buffer);
    return false;
  }
  e.last_sent_ns = io.now_ns();
  last_send_ns_ = e.last_sent_ns;
  e.retransmitted = true;
  // The repair needs a round trip before its acks can show up: its timer starts again
  // now (a timeout sets its own backoff after this). Without this a NACK repair sent
  // shortly before the original's timer ran out was followed at once by a second,
  // useless copy (the lossy member's acks of later messages are the "evidence" of the
  // loss being repaired), which every member then received as a duplicate.
  e.deadline_ns = std::max(e.deadline_ns, e.last_sent_ns + rto_ns_);
  io.count(ctr::retransmits);
  io.down(r);
  return true;
}

// Report the outcome (exactly once: the entry is freed here) and move the trailing edge.
// A forgotten or expired message is settled like a met one as far as the window goes: no
// member failed it.
void ArqSender::settle(Entry& e, EventType outcome, StageIo& io) noexcept {
  const bool ok = outcome != EventType::delivery_failed;
  Event& ev = outcome_event(outcome, e.rseq, e.token);
  if (ok) {
    collect_acked(e, outcome == EventType::delivery_met && cfg_.mode != AckMode::count, ev.members);
  } else {
    for (int slot = ever_.first(); slot >= 0; slot = ever_.next(slot)) {
      const auto s = static_cast<std::size_t>(slot);
      if (required(e, s) && !acked(e, s)) ev.members.insert(slot);
    }
  }
  if (e.has_app) {
    e.has_app = false;
    e.app_acked.clear();
    --app_entries_;
  }
  if (e.copy != nullptr) {
    e.copy->release();
    e.copy = nullptr;
    --held_;
  }
  e.rseq = 0;
  if (outcome == EventType::delivery_forgotten || outcome == EventType::delivery_expired) released_ = true;
  if (outcome == EventType::delivery_met) io.count(ctr::met);
  if (outcome == EventType::delivery_failed) io.count(ctr::failed);
  while (trail_ < next_rseq_ && entry(trail_).rseq != trail_) ++trail_;
  // The new oldest unsettled message has nothing older ahead of it any more: a window or
  // credit below that held it opens (see lost_evidence()). After a failure we stop
  // assuming anything below holds the rest: a member that cannot hear us fails them all
  // within about one more budget instead of one message after the other.
  if (trail_ < next_rseq_) mark_out(ok ? trail_ : next_rseq_ - 1, io.now_ns());
  io.notify(ev);
}

// The members that acked `e` into `out` (empty, sized to the view). With `all_required`
// (met in all/named mode) its ack set acked it: only the members outside it are looked at.
void ArqSender::collect_acked(const Entry& e, bool all_required, MemberSet& out) const noexcept {
  if (all_required) required_into(e, out);
  const std::size_t words = (slots_fit_ + 63) / 64;
  for (std::size_t w = 0; w < words; ++w) {
    std::uint64_t bits = all_required ? ~out.word(w) : ~std::uint64_t{0};
    if (w == words - 1 && slots_fit_ % 64 != 0) bits &= (std::uint64_t{1} << (slots_fit_ % 64)) - 1;
    for (; bits != 0; bits &= bits - 1) {
      const std::size_t s = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
      if (acked(e, s)) out.insert(static_cast<int>(s));
    }
  }
}

void ArqSender::fail_all(StageIo& io) noexcept {
  for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
    Entry& e = entry(r);
    if (e.rseq == r) settle(e, EventType::delivery_failed, io);
  }
  while (Packet* p = queue_.pop()) {
    notify_failed(p->token, required_now(io.group()), io);
    p->release();
  }
}

// --- timeouts ---------------------------------------------------------------------------------

void ArqSender::scan(StageIo& io) noexcept {
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
  bool expired = false;
  const bool sparse = stride_ > 1;
  if (sparse) find_quiet(io);
  for (std::uint64_t r = trail_; r < next_rseq_; ++r) {
    Entry& e = entry(r);
    if (e.rseq != r) continue;
    if (e.expires_ns != 0 && e.expires_ns <= now) {
      // Worth nothing now: no more repairs, and nobody waits for it any longer.
      settle(e, EventType::delivery_expired, io);
      expired = true;
      continue;
    }
    bool sparse_evidence = false;
    if (e.deadline_ns <= now &&
        (burst >= kMaxRtoBurst || (sparse ? !quiet_lacks(e, now, sparse_evidence)
                                          : !(lost_evidence(e, now) || members_quiet(e, now))))) {
      // The ack clock is running (the members it waits for are acking, nothing later
      // than it arrived without it): it is most likely still on its way, or waiting
      // below for credit; a gap would show in their acks or NACKs. Look again later.
      e.deadline_ns = now + rto_ns_;
    } else if (e.deadline_ns <= now) {
      // The retry budget is spent only on timeouts that show a loss: a message that waits
      // in a flow-control or congestion queue below this stage (its timer started when it
      // left here) is not lost, and failing it would report a delivered message as failed.
      const bool counts = sparse ? sparse_evidence : lost_evidence(e, now);
      if (counts && e.retries >= cfg_.max_retries) {
        settle(e, EventType::delivery_failed, io);
        continue;
      }
      io.count(ctr::timeouts);
      if (retransmit(e, io)) {
        ++burst;
        if (counts) ++e.retries;
        if (e.timeouts < 0xFFFF) ++e.timeouts;
        const unsigned shift = std::min<unsigned>(e.timeouts, 40);
        const std::uint64_t backoff = rto_ns_ > (cfg_.rto_max_ns >> shift) ? cfg_.rto_max_ns : rto_ns_ << shift;
        e.deadline_ns = now + std::min(backoff, cfg_.rto_max_ns);
      } else {
        e.deadline_ns = now + cfg_.rto_min_ns;  // no buffer: try again soon, same retry count
      }
    }
    next = earliest(next, earliest(e.deadline_ns, e.expires_ns));
  }
  deadline_ns_ = next;
  if (expired) announce_edge(io);
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
bool ArqSender::lost_evidence(const Entry& e, std::uint64_t now) const noexcept {
  for (int slot = ever_.first(); slot >= 0; slot = ever_.next(slot)) {
    const auto s = static_cast<std::size_t>(slot);
    if (!required(e, s) || acked(e, s)) continue;
    if (slot_high_[s] > e.rseq) return true;
    if (!e.out) continue;
    const std::uint64_t since = std::max(slot_ack_ns_[s], e.out_ns);
    if (now >= since + kSilenceRtoMax * cfg_.rto_max_ns) return true;
  }
  return false;
}

// --- sparse acks ----------------------------------------------------------------------------
//
// With sparse acks (ack_stride()) a member acks a stride of datagrams at a time, or once
// the stream has paused for the tail time: between its acks it is not quiet. Its next ack
// is due once the datagram a stride and a half above the highest it reported has gone out
// (its own point of the stride lies below that, and a lost datagram delays it by one), or
// once the tail time has passed after the last datagram sent, whichever comes first.
std::uint64_t ArqSender::ack_due_ns(std::size_t s) const noexcept {
  std::uint64_t by = last_send_ns_ + cfg_.tail_ack_ns();
  const std::uint64_t point = slot_high_[s] + stride_ + stride_ / 2 + 2;
  if (point < next_rseq_) {
    const Entry& b = entries_[static_cast<std::size_t>(point % cfg_.window)];
    if (b.rseq == point) by = std::min(by, b.first_sent_ns);
  }
  return std::max(slot_ack_ns_[s], by);
}

// Once per timeout scan, O(members): the members whose acks are overdue by an RTO, each
// asked for an ack by unicast (at most once per RTO). The timeouts below then look only at
// them, so a scan costs O(window + members), not O(window * members).
void ArqSender::find_quiet(StageIo& io) noexcept {
  quiet_.clear();
  const Group& g = io.group();
  const std::uint64_t now = io.now_ns();
  const MemberSet& receivers = g.receivers();
  for (int slot = receivers.first(); slot >= 0; slot = receivers.next(slot)) {
    const auto s = static_cast<std::size_t>(slot);
    if (s >= slots_fit_) continue;
    // Nothing unsettled that it has not acked.
    if (std::max(slot_cum_[s], trail_ - 1) + 1 >= next_rseq_) continue;
    // A named member not heard yet (its heartbeats lost: in a large group the next may be
    // seconds away) has no sender id in the view, so its acks cannot be counted (they
    // arrive as unknown_acker) and it cannot be asked: copies sent on its account would
    // only show up as duplicates everywhere (at 1,000 members a few such members sent
    // every unsettled datagram again, several times). It lacks nothing we could know of:
    // its own NACKs bring what it misses. It is waited for until it is heard (then asked,
    // if its ack is due) or its failure timeout marks it failed.
    if (g.member(slot).sender == 0) continue;
    const std::uint64_t due = ack_due_ns(s);
    // Its cumulative point stuck below an unsettled message while it acks later ones: its
    // NACKs for that message went unanswered for rto_max. Counted from its acks' last
    // progress, not from when its next ack is due: that moves with every datagram we send,
    // and a member that never NACKs the hole (it lost our first datagram, below the first
    // one it saw) was never found stuck while our repairs for it kept going out (a
    // 100-member split ended with 73 messages unsettled for one member that way).
    const bool stuck = slot_cum_[s] + 1 >= trail_ && slot_cum_[s] < slot_high_[s] &&
                       now >= std::max(slot_cum_ns_[s], slot_ack_ns_[s]) + kSilenceRtoMax * cfg_.rto_max_ns;
    if (now < due + rto_ns_ && !stuck) continue;
    // Overdue: ask it first (its ack is the likelier loss: it sends one per stride, we
    // sent it a stride of datagrams); only when an RTO after asking its acks have still
    // not moved do its messages go again. From then on it stays quiet until its acks
    // move, and is asked again with a backoff (an RTO after the first ask, then each time
    // as long again as since the first, at most rto_max apart): a member stuck below a
    // lost datagram answers every ask with the same ack. (Asking again every RTO, and
    // waiting an RTO for each answer, made such a member quiet only every other RTO, in
    // step with the timers of the messages it lacked, which the scans in between pushed
    // an RTO on: at 100 members with 3 senders one that lost a sender's first datagram
    // was asked 719 times and that datagram went again only after rto_max.)
    if (slot_asked_ns_[s] <= slot_ack_ns_[s]) {
      slot_asked_ns_[s] = now;
      slot_reask_ns_[s] = now + rto_ns_;
      ask_ack(slot, g, io);
      if (!stuck) continue;
    } else if (!stuck && now < slot_asked_ns_[s] + rto_ns_) {
      continue;
    }
    quiet_.push_back(Quiet{slot, stuck || now >= due + kSilenceRtoMax * cfg_.rto_max_ns});
    if (now >= slot_reask_ns_[s]) {
      slot_reask_ns_[s] = now + std::min(std::max(rto_ns_, now - slot_asked_ns_[s]), cfg_.rto_max_ns);
      ask_ack(slot, g, io);
    }
  }
}

// Whether some member whose ack is overdue has not acked `e` (and whether one of those is
// evidence of a loss, which spends a retry).
bool ArqSender::quiet_lacks(const Entry& e, std::uint64_t now, bool& evidence) const noexcept {
  bool lacks = false;
  evidence = false;
  for (const Quiet& q : quiet_) {
    if (!required(e, static_cast<std::size_t>(q.slot)) || acked(e, static_cast<std::size_t>(q.slot))) continue;
    // Beyond what the member's acks can show (the SACK bitmap covers the 64 after its
    // cumulative point + 1) while it answers: it may well have `e`; the older message that
    // holds its cumulative point back goes first (as in members_quiet()). Without this, a
    // member that lost a sender's first datagram had every later unsettled one sent again.
    const auto s = static_cast<std::size_t>(q.slot);
    if (e.rseq > std::max(slot_cum_[s], trail_ - 1) + 1 + kSackSpan && now < slot_heard_ns_[s] + cfg_.rto_max_ns) continue;
    lacks = true;
    if (q.evidence || slot_high_[static_cast<std::size_t>(q.slot)] > e.rseq) {
      evidence = true;
      return true;
    }
  }
  return lacks;
}

// Ask one member for an ack: the edge announcement, by unicast to it (a member whose
// address is not known yet is not asked: asking the group would bring every member's ack).
void ArqSender::ask_ack(int slot, const Group& g, StageIo& io) noexcept {
  const MemberInfo& m = g.member(slot);
  if (m.ip == 0) return;
  Packet* a = edge_packet(io);
  if (a == nullptr) return;
  a->dst_ip = m.ip;
  a->dst_port = m.port;
  io.count(ctr::ack_requests);
  io.down(a);
}

// Every unsettled message up to `upto` is known to have left the stages below (now, if
// not known before). The watermark only rises, so each entry is visited once.
void ArqSender::mark_out(std::uint64_t upto, std::uint64_t now) noexcept {
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
bool ArqSender::members_quiet(const Entry& e, std::uint64_t now) const noexcept {
  for (int slot = ever_.first(); slot >= 0; slot = ever_.next(slot)) {
    const auto s = static_cast<std::size_t>(slot);
    if (!required(e, s) || acked(e, s)) continue;
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
bool ArqSender::blocked_below(std::size_t s, std::uint64_t rseq, std::uint64_t now) const noexcept {
  const std::uint64_t missing = slot_cum_[s] + 1;
  if (missing >= rseq || missing < trail_ || now >= slot_heard_ns_[s] + rto_ns_) return false;
  const Entry& g = entries_[static_cast<std::size_t>(missing % cfg_.window)];
  // ... and a repair of it is on its way (sent within the last RTO).
  return g.rseq == missing && required(g, s) && !acked(g, s) &&
         g.retransmitted &&
         now < g.last_sent_ns + rto_ns_;
}

// --- acks and NACKs -------------------------------------------------------------------------

void ArqSender::rtt_sample(std::uint64_t sample_ns, StageIo& io) noexcept {
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
  rto_ns_ = std::clamp(rto, cfg_.rto_min_ns, cfg_.rto_max_ns);
  io.count(ctr::rtt_samples);
}

void ArqSender::on_ack(const AckBody& ack, std::uint32_t from, StageIo& io, bool packet) noexcept {
  if (packet) io.count(ctr::acks_received);  // not the position a NACK carries
  const Group& g = io.group();
  const int slot = g.slot_of_sender(from);
  if (slot == kNoSlot || slot == g.self_slot()) {
    io.count(ctr::unknown_acker);
    return;
  }
  if (static_cast<std::size_t>(slot) >= slots_fit_) fit_view(g);  // cold: a view not seen yet
  const std::uint64_t now = io.now_ns();
  auto& seen = slot_cum_[static_cast<std::size_t>(slot)];
  const auto s = static_cast<std::size_t>(slot);
  slot_heard_ns_[s] = now;
  // Only progress counts as the ack clock running: a re-ack of what we already knew (for
  // a duplicate retransmission) says nothing about messages sent since.
  bool progress = false;
  if (ack.cumulative > seen && ack.cumulative < next_rseq_) {
    seen = ack.cumulative;
    slot_ack_ns_[s] = now;
    slot_cum_ns_[s] = now;
    progress = true;
  }
  if (ack.highest() < next_rseq_ && ack.highest() > slot_high_[s]) {
    slot_high_[s] = ack.highest();
    slot_ack_ns_[s] = now;
    progress = true;
  }
  // What this member received, and everything before it, has left the stages below.
  if (ack.highest() < next_rseq_) mark_out(ack.highest(), now);
  const MemberAcks before = pos_[s];
  pos_[s] = before.merged(ack, next_rseq_ - 1);
  const MemberAcks& after = pos_[s];
  if (after != before) {
    // Karn's rule: only never-retransmitted packets give unambiguous samples; the newest
    // message this ack acknowledged first gives it, if the member's previous ack could
    // have shown it (its SACK bitmap reaches kSackSpan past the cumulative point). Beyond
    // that reach a message may have arrived long before the ack that first reports it:
    // the cumulative point jumps when a hole below is repaired. After a healed split, with
    // the group's re-sends queued up, such samples of 15 s made the RTO rto_max and the
    // NACK guard (half the smoothed RTT) seconds long, and repairs crawled.
    std::uint64_t sample_sent_ns = 0;
    bool sample = false;
    const std::uint64_t reach = before.base + 1 + kSackSpan;
    for (std::uint64_t r = std::min({after.high(), next_rseq_ - 1, reach}); r >= trail_ && r > before.base; --r) {
      const Entry& e = entry(r);
      if (e.rseq != r || before.has(r) || !after.has(r) || (e.has_app && e.app_acked.contains(slot))) continue;
      if (!e.retransmitted) {
        sample_sent_ns = e.first_sent_ns;
        sample = true;
        break;
      }
    }
    settle_acked(s, before, io);
    if (sample && now >= sample_sent_ns) rtt_sample(now - sample_sent_ns, io);
  }
  if (progress) arm_probe(now);  // the ack clock runs: the probe waits a timeout from here
}

// Member slot `s` acknowledged more than `before`: settle what that made met, in rseq order.
// Count mode counts the member on each message it newly acked (amortised O(1) per member
// and message). All/named: the member's leaf moves in the one tree, the messages up to
// the minimum are met (each visited once), and above it only those the minimum's member
// acked selectively (at most 64) can be.
void ArqSender::settle_acked(std::size_t s, const MemberAcks& before, StageIo& io) noexcept {
  const MemberAcks after = pos_[s];
  const int slot = static_cast<int>(s);
  const std::uint64_t top = next_rseq_ - 1;
  const auto newly = [&](const Entry& e) {
    return !before.has(e.rseq) && after.has(e.rseq) && !(e.has_app && e.app_acked.contains(slot));
  };
  if (cfg_.mode == AckMode::count) {
    const std::uint64_t last = std::min(after.high(), top);
    for (std::uint64_t r = std::max(trail_, before.base + 1); r <= last; ++r) {
      Entry& e = entry(r);
      if (e.rseq != r || !newly(e)) continue;
      ++e.acks;
      if (met(e)) settle(e, EventType::delivery_met, io);
    }
    return;
  }
  if (!lingering_.empty()) {
    if (lingers_[s] != 0) check_left(s);
    release_lingering();
  }
  edge_.set(s, leaf(s));
  if (unresolved_) return;
  const std::uint64_t m = edge_.min();
  const std::uint64_t end = std::min(m, top);
  for (std::uint64_t r = std::max(swept_ + 1, trail_); r <= end; ++r) {
    Entry& e = entry(r);
    if (e.rseq == r) settle(e, EventType::delivery_met, io);
  }
  swept_ = std::max(swept_, end);
  if (m >= top) return;
  // Above the minimum: a message that member acked selectively, that this ack newly
  // covers, and that every other member below it acked. (The member holding the minimum
  // must ack every message above it that it has not, unless it lingers.)
  const MemberAcks& low = pos_[edge_.argmin()];
  for (std::uint64_t bits = low.sack; bits != 0; bits &= bits - 1) {
    const std::uint64_t r = low.base + 2 + static_cast<std::uint64_t>(__builtin_ctzll(bits));
    if (r > top) break;
    if (r < trail_) continue;
    Entry& e = entry(r);
    if (e.rseq == r && newly(e) && met(e)) settle(e, EventType::delivery_met, io);
  }
  if (app_entries_ != 0 || !lingering_.empty()) {
    // ... or one the application acknowledged for it, or (a member that left holds the
    // minimum) any this ack newly covers.
    const bool any = !lingering_.empty();
    const std::uint64_t last = std::min(after.high(), top);
    for (std::uint64_t r = std::max({trail_, before.base + 1, m + 1}); r <= last; ++r) {
      Entry& e = entry(r);
      if (e.rseq == r && (any || e.has_app) && newly(e) && met(e)) settle(e, EventType::delivery_met, io);
    }
  }
}

bool ArqSender::on_app_ack(std::uint64_t token, int slot, StageIo& io) noexcept {
  const Group& g = io.group();
  if (slot == kNoSlot || slot == g.self_slot()) return false;
  const std::uint64_t now = io.now_ns();
  bool known = false;
  // A reply acknowledges a recent message: look from the newest down. Tokens grow with
  // the reliable sequence number, so the search stops below the token. (A fragmented
  // message is several entries under one token: each is acknowledged. A batch of messages
  // is one entry for the tokens token_first..token: a reply to any of them acknowledges it.)
  for (std::uint64_t r = next_rseq_; r > trail_;) {
    Entry& e = entry(--r);
    if (e.rseq != r || e.token_first > token) continue;
    if (e.token < token) break;
    known = true;
    if (acked(e, static_cast<std::size_t>(slot))) continue;
    if (!e.has_app) ++app_entries_;
    e.has_app = true;
    e.app_acked.insert(slot);  // no allocation once fit_view() sized it (acks=application)
    ++e.acks;
    // Not the member's ack clock (slot_heard_ns_, slot_ack_ns_): those say what its own
    // acks report, which the timeout logic reads (members_quiet(), lost_evidence()).
    // The reply's round trip is the RTT the application sees (Karn's rule as for acks).
    if (!e.retransmitted && now >= e.first_sent_ns) rtt_sample(now - e.first_sent_ns, io);
    if (met(e)) settle(e, EventType::delivery_met, io);
  }
  return known;
}

void ArqSender::on_nack(const NackBody& nack, StageIo& io) noexcept {
  io.count(ctr::nacks_received);
  // Repair each unsettled packet of the range at once, and a repair again at most once
  // per half RTT, so that NACKs from many receivers for the same loss cause one
  // repair, not a storm. The first repair is never held back: the NACK says the
  // packet is missing behind later ones (and came after a delay for reordering to
  // settle), and under load the RTT is mostly queueing, so holding back a repair of a
  // packet first sent less than half an RTT ago only made the gap, and with it the
  // window, wait for the next NACK round.
  const std::uint64_t now = io.now_ns();
  const std::uint64_t guard = have_rtt_ ? static_cast<std::uint64_t>(srtt_ns_ / 2) : cfg_.rto_min_ns / 2;
  if (released_ && nack.first < trail_ && now >= edge_announced_ns_ + cfg_.rto_min_ns) {
    // It asks for something settled already (forgotten, expired or given up): tell it the
    // edge, since the next datagram that would carry it may be long in coming.
    announce_edge(io);
  }
  const std::uint64_t first = std::max(trail_, nack.first);
  const std::uint64_t end = std::min(next_rseq_, nack.first + std::min<std::uint64_t>(nack.count, cfg_.window));
  for (std::uint64_t r = first; r < end; ++r) {
    Entry& e = entry(r);
    if (e.rseq != r || (e.retransmitted && now - e.last_sent_ns < guard)) continue;
    if (e.expires_ns != 0 && now >= e.expires_ns) {
      settle(e, EventType::delivery_expired, io);
      continue;
    }
    retransmit(e, io);
  }
}

// --- accounting -------------------------------------------------------------------------------

std::size_t ArqSender::state_bytes() const noexcept {
  const auto bits = [](const MemberSet& m) { return m.capacity() / 8; };
  std::size_t b = entries_.capacity() * sizeof(Entry);
  for (const Entry& e : entries_) b += bits(e.app_acked);
  b += bits(members_) + bits(ever_) + edge_.heap_bytes() + lingers_.capacity() +
       (lingering_.capacity() + left_now_.capacity()) * sizeof(int) + until_view_.capacity() * sizeof(std::uint32_t);
  b += pos_.capacity() * sizeof(MemberAcks) + quiet_.capacity() * sizeof(Quiet) + bits(named_mask_);
  for (const auto* v : {&join_, &leave_, &owed_from_, &owed_to_, &slot_cum_, &slot_high_, &slot_ack_ns_,
                        &slot_heard_ns_, &slot_cum_ns_, &slot_asked_ns_, &slot_reask_ns_}) {
    b += v->capacity() * sizeof(std::uint64_t);
  }
  return b;
}

}  // namespace tmc::arq
