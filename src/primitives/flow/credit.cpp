// flow.credit — credit-based flow control (paper Table 3; Aeron's min/max/tagged flow
// control, JGroups' UFC/MFC credits).
//
// Synopsis
//   Receivers advertise how many payload bytes of each sender's reliable data they have
//   consumed and how many more they can take; a sender's reliable data waits in a FIFO
//   inside the stage while the receivers its policy waits for have no credit. A receiver
//   that holds the sender back longer than slow_timeout_us is reported (slow_member) and,
//   with eject_slow, ignored from then on.
// Params
//   policy (string, "min")               "min" (every receiver) | "max" (any one) |
//                                        "quorum" (a majority)
//   window_bytes (int, 4194304)          what this receiver advertises; the sender's
//                                        assumption until a receiver advertised
//   slow_timeout_us (int, 1000000)       blocking this long makes a receiver slow
//   eject_slow (bool, false)             a slow receiver no longer holds the sender back
//   update_every_bytes (int, 0)          standalone advertisement after this many bytes
//                                        consumed without an ack carrying one
//                                        (0 = window_bytes / 4)
//   refresh_us (int, 50000)              re-advertise a changed or recent value this often
// Counters
//   flow.* (see register_flow_credit below)
// Wire
//   Ext::flow (flow_format.hpp, 20 bytes: target sender, target epoch, consumed bytes,
//   window bytes), appended to Kind::ack packets going down that target a sender we
//   consumed from, or alone on a Kind::control packet.
// Notes
//   What counts: data packets carrying reliability's Ext::rel. Both sides count the same
//   thing: the sender adds the payload bytes of each new rseq it passes down (not
//   retransmissions); the receiver adds the payload bytes of each rseq the first time it
//   passes up (a 4096-rseq bitmap above a cumulative point drops duplicates; the stage
//   sits below reliability, which removes duplicates only later). Unreliable data passes
//   both ways uncounted and is never held: a lost best-effort datagram is never consumed,
//   so counting it would leak credit until the channel stopped for good.
//
//   Sender, per Group slot: credit = (consumed - base_consumed) + window - (sent -
//   base_sent). The policy set is Group::receivers() in state alive, minus ejected slots.
//   Receivers not yet heard (state expected) do not block: they have no advertisement and
//   may never come; a receiver that is heard but has not advertised yet counts as having
//   consumed nothing. The baseline (base_sent, base_consumed) is taken when a slot enters
//   the set (first heard, back from failure, restarted with a new epoch): what was sent
//   before it (re)joined, which it may never receive, is forgiven, so a receiver that
//   returns after a partition cannot stall the channel forever for messages no one will
//   repair to it. A packet fits a receiver when its credit covers the payload, or when that
//   receiver has consumed everything (so a message larger than the window still goes,
//   alone). Reliable data waits, in order, while the policy is not met: min needs every
//   receiver in the set to fit, max any one, quorum more than half.
//
//   Retransmissions: a reliable data packet whose rseq is at or below the highest rseq this
//   stage already passed down (this pipeline is one sender incarnation) is a repair. It is
//   never charged against credit (its bytes were charged when it first went out, and the
//   receiver counts each rseq once) and never waits: it goes down at once, ahead of any new
//   data waiting here, so a repair is never starved by flow control. Reliable control
//   packets and every other kind pass at once too. A retransmission of a message still
//   waiting here (reliability's timer runs from when it handed the message down) is
//   released instead: the original goes out in order, and the copy would slip past flow
//   control. Such a timeout does not spend the message's retry budget: reliability.arq
//   counts ack silence only from when it knows the message left the stages below (a member
//   acked it or a later one, or nothing older is unsettled), so waiting here never fails a
//   message (sim scenarios in test_flow_retransmit.cpp, default budget, 1,000 seeds).
//
//   Slow members: a receiver in the set is behind while data waits and it does not fit the
//   first waiting packet, or while it has more than its window unconsumed (policies max and
//   quorum send past the slow ones, so there it is behind without holding anything back).
//   One that stays behind for slow_timeout_us raises slow_member (Event::members = its slot
//   bit, count = its unconsumed bytes) once per episode (the episode ends when it fits
//   again), and with eject_slow it is ignored by this stage for the rest of its epoch.
//   While data waits the stage also re-checks the Group every few milliseconds, because
//   membership changes reach it through no packet.
//
//   Cost per send in a group of n: O(1) while nobody is behind. The policy set is rebuilt
//   only when the view changes (or a receiver is ejected), and two lower bounds, taken
//   over the set when needed, answer the per-send questions: the policy's k-th largest
//   credit (does the packet fit enough receivers?) and the smallest (is anyone behind?).
//   Every credit drops by exactly the bytes sent and otherwise only rises, except when a
//   receiver advertises a smaller window or a forgiven message is taken back, which
//   invalidates them. Near the limit, or while a receiver is behind, each check looks at
//   every receiver, as it did always.
//
//   Receiver: an advertisement rides on every ack going down that targets a sender we
//   consumed from (if the ack still has room for an extension); after update_every_bytes
//   consumed without one, a standalone Kind::control advertisement goes at once; and a
//   timer re-sends the current value every refresh_us until it went out three times, so a
//   lost last advertisement cannot leave a sender waiting forever. Standalone
//   advertisements are consumed by the flow stage that receives them (never delivered).
//   Up to 64 senders are tracked at once; the least recently active is forgotten beyond.
//
//   Released messages (forgotten by the application, or whose lifetime ran out): one still
//   waiting here is let go uncharged. One already sent that a receiver never got is never
//   repaired, so that receiver never consumes it; charged for good, its bytes would shrink
//   that receiver's credit until the channel stalled. The sender remembers the last 4096
//   reliable packets it passed down (rseq, token, lifetime, bytes) and, per receiver, the
//   highest ack it had from it. When reliability's trailing edge passes a released rseq
//   (seen on the data going down, which carries the edge, and on reliability's edge
//   announcement), every receiver in the set that had not acknowledged it is forgiven its
//   bytes (they move into its baseline). That happens before any receiver can have heard
//   of the new edge, so an ack covering the rseq means the receiver got it. A receiver
//   that consumes a forgiven message after all (its ack was still on the way) has the
//   bytes taken back with its next advertisement. Without released messages this costs
//   one comparison per packet.
#include "primitives/flow/credit.hpp"

#include "primitives/common/wait_queue.hpp"

#include <algorithm>
#include <bit>
#include <functional>
#include <limits>
#include <string>

#include "primitives/flow/flow_format.hpp"
#include "primitives/reliability/ack_format.hpp"

namespace tmc {
namespace detail {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_CREDIT_COUNTERS(X, P)                                                                                   \
  X(P, sent_bytes, "payload bytes of reliable data passed down (first transmissions)")                              \
  X(P, passed, "reliable data packets that found credit at once")                                                   \
  X(P, waits, "reliable data packets queued for credit")                                                            \
  X(P, released, "queued packets released when credit arrived")                                                     \
  X(P, unreliable_passed, "unreliable data packets passed uncounted")                                               \
  X(P, consumed_bytes, "payload bytes of reliable data consumed (receiver side)")                                   \
  X(P, duplicates_seen, "reliable data packets seen again (not counted twice)")                                     \
  X(P, adverts_on_acks, "advertisements appended to acks")                                                          \
  X(P, adverts_standalone, "standalone advertisement packets sent")                                                 \
  X(P, adverts_received, "advertisements targeted at this sender")                                                  \
  X(P, adverts_ignored, "advertisements from unknown members or stale epochs")                                      \
  X(P, slow_members, "slow_member events raised")                                                                   \
  X(P, ejected, "receivers ignored from then on (eject_slow)")                                                      \
  X(P, alloc_failed, "standalone advertisements not sent: packet pool empty")                                       \
  X(P, sources_evicted, "senders forgotten to make room (receiver side)")                                           \
  X(P, retransmits_absorbed,                                                                                        \
    "retransmissions of messages still waiting here, released (the "                                                \
    "original goes out in order)")                                                                                  \
  X(P, stop_flushed, "queued packets passed down when the pipeline stopped")                                        \
  X(P, retransmits_passed,                                                                                          \
    "retransmissions of data already passed down: sent at once, ahead of "                                          \
    "waiting data, uncharged")
TMC_STAGE_COUNTERS("flow.", TMC_CREDIT_COUNTERS);

// Gauges, declared once likewise (read_gauges() fills them in this order). The sender's
// receiver set is the one flow control last looked at (it looks at every send and wake-up).
#define TMC_CREDIT_GAUGES(X, P)                                                                                     \
  X(P, credit_bytes,                                                                                                \
    "sender: payload bytes of new reliable data the policy lets pass now (min: the smallest receiver credit, max: "  \
    "the largest, quorum: the majority's); +inf while no receiver holds the sender back")                         \
  X(P, unconsumed_bytes, "sender: payload bytes the slowest receiver in the set has not consumed (0: none)")        \
  X(P, queued_packets, "sender: reliable data packets waiting here for credit")                                  \
  X(P, ejected_receivers, "sender: receivers ignored for the rest of their epoch (eject_slow)")
TMC_STAGE_GAUGES("flow.", TMC_CREDIT_GAUGES);

constexpr std::string_view kKind = "flow.credit";
constexpr std::uint32_t kAdvertRepeats = 3;

std::optional<std::uint64_t> rel_of(const Packet& p) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p.ext(wire::Ext::rel, &len);
  const std::optional<std::uint64_t> r = decode_rel(body, len);
  if (!r || *r == 0) return std::nullopt;
  return r;
}

}  // namespace

FlowCreditStage::~FlowCreditStage() {
  // Packets still queued belong to this stage; give them back to their pool.
  queue_.release_all();
}

bool FlowCreditStage::configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) {
  env_ = env;
  (void)errors;  // the registry checked every range and word
  const std::string& policy = params.text("policy");
  policy_ = policy == "max" ? Policy::max : policy == "quorum" ? Policy::quorum : Policy::min;
  const std::int64_t every = params.integer("update_every_bytes");
  window_ = static_cast<std::uint64_t>(params.integer("window_bytes"));
  load_hints_ = params.boolean("load_hints");
  slow_ns_ = static_cast<std::uint64_t>(params.integer("slow_timeout_us")) * 1000;
  eject_slow_ = params.boolean("eject_slow");
  update_every_ = every == 0 ? std::max<std::uint64_t>(1, window_ / 4) : static_cast<std::uint64_t>(every);
  refresh_ns_ = static_cast<std::uint64_t>(params.integer("refresh_us")) * 1000;
  recheck_ns_ = std::min<std::uint64_t>(5'000'000, slow_ns_ / 4);
  sources_.assign(kMaxSources, Source{});
  return true;
}

// --- receiver side ------------------------------------------------------------------------

FlowCreditStage::Source* FlowCreditStage::source(std::uint32_t sender, std::uint32_t epoch, bool create,
                                                 std::uint64_t now_ns, bool* evicted) noexcept {
  Source* free_slot = nullptr;
  Source* oldest = nullptr;
  for (Source& s : sources_) {
    if (!s.used) {
      if (free_slot == nullptr) free_slot = &s;
      continue;
    }
    if (s.sender == sender) {
      if (s.epoch == epoch) return &s;
      if (!create) return nullptr;
      // The sender restarted: its new incarnation starts from nothing.
      s = Source{.used = true, .sender = sender, .epoch = epoch, .last_ns = now_ns};
      return &s;
    }
    if (oldest == nullptr || s.last_ns < oldest->last_ns) oldest = &s;
  }
  if (!create) return nullptr;
  Source* s = free_slot != nullptr ? free_slot : oldest;
  if (free_slot == nullptr && evicted != nullptr) *evicted = true;
  *s = Source{.used = true, .sender = sender, .epoch = epoch, .last_ns = now_ns};
  return s;
}

bool FlowCreditStage::mark(Source& s, std::uint64_t rseq) noexcept {
  auto bit = [&s](std::uint64_t r) -> std::uint64_t& { return s.bits[(r % kDedupBits) / 64]; };
  auto mask = [](std::uint64_t r) { return std::uint64_t{1} << (r % 64); };
  if (rseq <= s.cum) return false;
  if (rseq > s.cum + kDedupBits) {
    // Too far ahead for the bitmap: give up remembering the oldest numbers (a repair that
    // old is then not counted; the sender's baseline forgives such a receiver on return).
    const std::uint64_t new_cum = rseq - kDedupBits;
    if (new_cum - s.cum >= kDedupBits) {
      std::fill(std::begin(s.bits), std::end(s.bits), 0);
    } else {
      for (std::uint64_t r = s.cum + 1; r <= new_cum; ++r) bit(r) &= ~mask(r);
    }
    s.cum = new_cum;
  }
  if ((bit(rseq) & mask(rseq)) != 0) return false;
  bit(rseq) |= mask(rseq);
  while ((bit(s.cum + 1) & mask(s.cum + 1)) != 0) {
    bit(s.cum + 1) &= ~mask(s.cum + 1);
    ++s.cum;
  }
  return true;
}

void FlowCreditStage::advertise_standalone(Source& s, StageIo& io) noexcept {
  Packet* p = io.alloc();
  if (p == nullptr) {
    io.count(alloc_failed);
    return;
  }
  p->reset_for_send(0);
  p->kind = wire::Kind::control;
  p->channel = env_.channel;
  p->sender = env_.sender;
  p->epoch = env_.epoch;
  std::uint8_t* body = p->push_ext(wire::Ext::flow, kFlowBodyBytes);
  if (body == nullptr) {  // cannot happen on a fresh packet; be safe
    p->release();
    io.count(alloc_failed);
    return;
  }
  const std::uint32_t window = advertised_window(io);
  encode_flow(body, FlowBody{.target_sender = s.sender,
                             .target_epoch = s.epoch,
                             .consumed_bytes = s.consumed,
                             .window_bytes = window});
  s.adv_repeats = s.adv_consumed == s.consumed && s.adv_window == window ? s.adv_repeats + 1 : 1;
  s.adv_consumed = s.consumed;
  s.adv_window = window;
  io.count(adverts_standalone);
  io.down(p);
}

// Load hints: the advertised window shrinks with the receiving application's load, to 0 at
// full load (a sender then sends it nothing until it advertises room again: while its
// window is 0 the receiver re-advertises every refresh, so a window that opens as the
// application catches up is heard without new traffic). Without a hint (load 0) it is
// window_bytes.
std::uint32_t FlowCreditStage::advertised_window(const StageIo& io) const noexcept {
  const std::uint64_t full = std::min<std::uint64_t>(window_, 0xFFFFFFFFu);
  if (!load_hints_) return static_cast<std::uint32_t>(full);
  const double load = io.load();
  if (!(load > 0.0)) return static_cast<std::uint32_t>(full);
  if (load >= 1.0) return 0;
  return static_cast<std::uint32_t>(static_cast<double>(full) * (1.0 - load));
}

void FlowCreditStage::refresh_adverts(StageIo& io) noexcept {
  next_refresh_ns_ = 0;
  bool pending = false;
  const std::uint32_t window = advertised_window(io);
  for (Source& s : sources_) {
    if (!s.used || (s.adv_consumed == s.consumed && s.adv_window == window && s.adv_repeats >= kAdvertRepeats)) {
      continue;
    }
    advertise_standalone(s, io);
    if (s.adv_repeats < kAdvertRepeats) pending = true;
  }
  // A sender that heard window 0 waits for the next advertisement: keep looking.
  for (const Source& s : sources_) pending = pending || (s.used && s.adv_window == 0 && s.adv_repeats != 0);
  if (pending) next_refresh_ns_ = io.now_ns() + refresh_ns_;
}

void FlowCreditStage::read_gauges(std::span<double> out) const noexcept {
  std::int64_t* credits = credit_scratch_.data();
  std::size_t n = 0;
  std::int64_t slowest = 0;
  for (std::size_t s = 0; s < peers_.size(); ++s) {
    if (!peers_[s].in_set) continue;
    credits[n++] = credit(peers_[s]);
    slowest = std::max(slowest, unconsumed_bytes(static_cast<int>(s)));
  }
  double granted = std::numeric_limits<double>::infinity();
  if (n > 0) {
    // The k-th largest credit, where the policy needs k receivers to fit.
    const std::size_t k = policy_ == Policy::min ? n : policy_ == Policy::max ? 1 : n / 2 + 1;
    std::nth_element(credits, credits + (k - 1), credits + n, std::greater<>());
    granted = static_cast<double>(credits[k - 1]);
  }
  out[Gauge::credit_bytes] = granted;
  out[Gauge::unconsumed_bytes] = static_cast<double>(slowest);
  out[Gauge::queued_packets] = static_cast<double>(queue_.size());
  out[Gauge::ejected_receivers] = static_cast<double>(ejected());
}

// --- sender side --------------------------------------------------------------------------

std::int64_t FlowCreditStage::credit(const Peer& pe) const noexcept {
  return static_cast<std::int64_t>(pe.consumed - pe.base_consumed) + static_cast<std::int64_t>(pe.window) -
         static_cast<std::int64_t>(sent_ - pe.base_sent);
}

bool FlowCreditStage::fits(const Peer& pe, std::uint64_t bytes) const noexcept {
  // A receiver at full load (window 0) takes nothing more until it advertises room again;
  // it re-advertises while at 0, so the window it opens is heard without new traffic.
  if (pe.has_adv && pe.window == 0) return false;
  return credit(pe) >= static_cast<std::int64_t>(bytes) || sent_ - pe.base_sent <= pe.consumed - pe.base_consumed;
}

std::int64_t FlowCreditStage::unconsumed_bytes(int slot) const noexcept {
  const Peer& pe = peers_[static_cast<std::size_t>(slot)];
  return static_cast<std::int64_t>(sent_ - pe.base_sent) - static_cast<std::int64_t>(pe.consumed - pe.base_consumed);
}

std::size_t FlowCreditStage::ejected() const noexcept {
  std::size_t n = 0;
  for (const Peer& pe : peers_) n += pe.ejected ? 1 : 0;
  return n;
}

void FlowCreditStage::fit_view(const Group& g) {
  if (g.slots() <= peers_.size()) return;
  peers_.resize(g.slots());
  credit_scratch_.resize(g.slots());
  bound_scratch_.resize(g.slots());
  set_.reserve(g.slots());
}

// The set is the view's business: it is rebuilt when the view changes (a member heard,
// failed, left or restarted) or a receiver is ejected, not per packet, so a send costs
// O(1) in a group of any size while nobody is behind (see allowed()).
const MemberSet& FlowCreditStage::policy_set(StageIo& io) noexcept {
  const Group& g = io.group();
  if (!set_valid_ || g.view_id() != set_view_ || g.slots() > peers_.size()) rebuild_set(g);
  return set_;
}

void FlowCreditStage::rebuild_set(const Group& g) noexcept {
  fit_view(g);  // cold when the view grew
  const MemberSet& receivers = g.receivers();
  MemberSet& set = set_;
  set.clear();
  for (std::size_t i = 0; i < g.slots(); ++i) {
    const int s = static_cast<int>(i);
    const MemberInfo& m = g.member(s);
    Peer& pe = peers_[i];
    const bool eligible = receivers.contains(s) && m.state == MemberState::alive;
    if (eligible && pe.epoch != m.epoch) pe = Peer{.epoch = m.epoch, .window = window_};
    if (eligible && !pe.ejected) {
      if (!pe.in_set) {
        // (Re)entering: forgive what was sent while it was away (see the notes above).
        pe.in_set = true;
        pe.base_sent = sent_;
        pe.base_consumed = pe.consumed;
        pe.base_rseq = highest_passed_;
        pe.forgiven = 0;
        pe.blocked_since_ns = 0;
        pe.reported = false;
      }
      set.insert(s);
    } else {
      pe.in_set = false;
      pe.blocked_since_ns = 0;
    }
  }
  set_view_ = g.view_id();
  set_valid_ = true;
  bounds_valid_ = false;
}

std::int64_t FlowCreditStage::bound_credit(const Peer& pe) const noexcept {
  return pe.has_adv && pe.window == 0 ? std::numeric_limits<std::int64_t>::min() / 4 : credit(pe);
}

void FlowCreditStage::refresh_bounds(const MemberSet& set) noexcept {
  std::int64_t* credits = bound_scratch_.data();
  std::size_t n = 0;
  bool behind = false;
  std::int64_t lowest = std::numeric_limits<std::int64_t>::max() / 4;  // an empty set fits anything
  for (int s = set.first(); s >= 0; s = set.next(s)) {
    const Peer& pe = peers_[static_cast<std::size_t>(s)];
    credits[n++] = bound_credit(pe);
    lowest = std::min(lowest, credits[n - 1]);
    behind = behind || pe.blocked_since_ns != 0;
  }
  min_bound_ = lowest;
  kth_bound_ = lowest;
  if (n > 0 && policy_ != Policy::min) {
    const std::size_t k = policy_ == Policy::max ? 1 : n / 2 + 1;
    std::nth_element(credits, credits + (k - 1), credits + n, std::greater<>());
    kth_bound_ = credits[k - 1];
  }
  any_behind_ = behind;
  bounds_sent_ = sent_;
  bounds_valid_ = true;
}

// O(1) while the bound shows that enough receivers have room; near the limit it looks at
// every receiver (the bound leaves out that a receiver that consumed everything fits a
// message of any size) and takes the bounds again.
bool FlowCreditStage::allowed(const MemberSet& set, std::uint64_t bytes) noexcept {
  const auto need = static_cast<std::int64_t>(bytes);
  if (bounds_valid_ && kth_bound_ - static_cast<std::int64_t>(sent_ - bounds_sent_) >= need) return true;
  refresh_bounds(set);
  if (kth_bound_ >= need) return true;
  int n = 0;
  int fit = 0;
  for (int s = set.first(); s >= 0; s = set.next(s)) {
    ++n;
    if (fits(peers_[static_cast<std::size_t>(s)], bytes)) ++fit;
  }
  if (n == 0) return true;
  switch (policy_) {
    case Policy::min: return fit == n;
    case Policy::max: return fit >= 1;
    case Policy::quorum: return fit >= n / 2 + 1;
  }
  return true;
}

void FlowCreditStage::take_advert(const Packet& p, const std::uint8_t* body, std::uint8_t len,
                                  StageIo& io) noexcept {
  const std::optional<FlowBody> f = decode_flow(body, len);
  if (!f || f->target_sender != env_.sender || f->target_epoch != env_.epoch) return;
  const Group& g = io.group();
  const int slot = g.slot_of_sender(p.sender);
  // A window of 0 is a receiver at full load (load hints): nothing more until it opens.
  if (slot == kNoSlot || slot == g.self_slot() || g.member(slot).epoch != p.epoch) {
    io.count(adverts_ignored);
    return;
  }
  fit_view(g);  // cold when the view grew
  Peer& pe = peers_[static_cast<std::size_t>(slot)];
  if (pe.epoch != p.epoch) {
    pe = Peer{.epoch = p.epoch, .window = window_};
    set_valid_ = false;  // it left the set: the next look takes it in again
  }
  const std::int64_t before = bound_credit(pe);
  io.count(adverts_received);
  pe.consumed = std::max(pe.consumed, f->consumed_bytes);
  pe.window = f->window_bytes;
  pe.has_adv = true;
  if (pe.forgiven != 0 && pe.consumed - pe.base_consumed > sent_ - pe.base_sent) {
    // It consumed more than is counted against it: a released message was forgiven it
    // while it was on its way there after all. Take that back.
    const std::uint64_t back = std::min(pe.forgiven, (pe.consumed - pe.base_consumed) - (sent_ - pe.base_sent));
    pe.base_sent -= back;
    pe.forgiven -= back;
  }
  if (pe.in_set && bound_credit(pe) < before) credit_dropped();
  if (!queue_.empty()) {
    release(io);
  } else if (pe.blocked_since_ns != 0 && fits(pe, 0)) {
    // It caught up while nothing waited (max, quorum): its episode is over.
    pe.blocked_since_ns = 0;
    pe.reported = false;
    bounds_valid_ = false;  // whether anyone is still behind is taken again
    schedule(io);
  }
}

Packet* FlowCreditStage::pop() noexcept { return queue_.pop(); }

// A message whose lifetime ran out while it waited here is worth nothing: it never goes
// out and is never charged (reliability above reports it expired).
void FlowCreditStage::drop_expired(StageIo& io) noexcept {
  wait_queue::release_expired(queue_, io.now_ns());
}

// Forgotten messages still waiting here are let go uncharged (reliability above reports
// them forgotten). Repairs never wait here, so only first transmissions are in the queue.
// Those already passed down are marked: once reliability's trailing edge passes them, the
// receivers that never acknowledged them are forgiven their bytes (forgive_released()).
void FlowCreditStage::on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept {
  for (SentRec& r : sent_ring_) {
    if (r.rseq == 0 || r.token == 0 || r.forgotten) continue;
    if (scope == ForgetScope::message ? r.token != token : r.token > token) continue;
    r.forgotten = true;
    last_released_ = std::max(last_released_, r.rseq);
    // Reliability (above, so first) may already have announced the edge past it.
    if (r.rseq <= edge_) forgive(r);
  }
  if (queue_.empty()) return;
  wait_queue::release_forgotten(queue_, token, scope);
  release(io);
}

void FlowCreditStage::charge(const Packet& p, std::uint64_t rseq) noexcept {
  highest_passed_ = std::max(highest_passed_, rseq);
  sent_ += p.payload_len;
  if (sent_ring_.empty()) {
    try {
      sent_ring_.resize(kSentRing);  // once, at the first reliable packet
    } catch (...) {
      return;  // out of memory: released messages stay charged, as before
    }
  }
  sent_ring_[rseq % kSentRing] =
      SentRec{.rseq = rseq, .token = p.token, .expires_ns = p.expires_ns, .bytes = p.payload_len, .forgotten = false};
  if (p.expires_ns != 0) last_expiring_ = std::max(last_expiring_, rseq);
}

// Every rseq <= edge is settled at reliability above. One that was released (forgotten,
// or its lifetime ran out) is never repaired: a receiver that has not acknowledged it will
// never consume it, so its bytes would stay charged against that receiver for good. They
// are forgiven: moved into the receiver's baseline. Looked at once per rseq, when the edge
// first passes it (before any receiver can have heard of the new edge, so an ack that
// covers it means the receiver got it). Without forgotten or expiring messages in the
// range it costs one comparison.
void FlowCreditStage::forgive_released(std::uint64_t edge, StageIo& io) noexcept {
  if (edge <= edge_) return;
  const std::uint64_t from = edge_;
  edge_ = edge;
  if (std::max(last_released_, last_expiring_) <= from || sent_ring_.empty()) return;
  const std::uint64_t now = io.now_ns();
  const std::uint64_t hi = std::min(edge, highest_passed_);
  const std::uint64_t lo = std::max(from, hi > kSentRing ? hi - kSentRing : 0);
  for (std::uint64_t r = lo + 1; r <= hi; ++r) {
    const SentRec& rec = sent_ring_[r % kSentRing];
    if (rec.rseq != r || (!rec.forgotten && (rec.expires_ns == 0 || now < rec.expires_ns))) continue;
    forgive(rec);
  }
}

void FlowCreditStage::forgive(const SentRec& rec) noexcept {
  for (Peer& pe : peers_) {
    if (!pe.in_set || rec.rseq <= pe.base_rseq) continue;
    if (AckBody{.cumulative = pe.acked, .sack = pe.sack}.covers(rec.rseq)) continue;
    pe.base_sent += rec.bytes;
    pe.forgiven += rec.bytes;
  }
}

void FlowCreditStage::learn_edge(const Packet& p, StageIo& io) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p.ext(wire::Ext::ack, &len);
  if (body == nullptr) return;
  const std::optional<AckBody> a = decode_ack(body, len);
  if (a && a->target_sender == env_.sender && a->target_epoch == env_.epoch) forgive_released(a->cumulative, io);
}

void FlowCreditStage::take_ack(const Packet& p, StageIo& io) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p.ext(wire::Ext::ack, &len);
  const std::optional<AckBody> a = decode_ack(body, len);
  if (!a || a->target_sender != env_.sender || a->target_epoch != env_.epoch) return;
  const int slot = io.group().slot_of_sender(p.sender);
  if (slot == kNoSlot || static_cast<std::size_t>(slot) >= peers_.size()) return;
  Peer& pe = peers_[static_cast<std::size_t>(slot)];
  if (pe.epoch != p.epoch) return;
  if (a->cumulative > pe.acked) {
    pe.acked = a->cumulative;
    pe.sack = a->sack;
  } else if (a->cumulative == pe.acked) {
    pe.sack |= a->sack;
  }
}

void FlowCreditStage::release(StageIo& io) noexcept {
  for (std::size_t round = 0; round <= peers_.size(); ++round) {
    const MemberSet& set = policy_set(io);
    drop_expired(io);
    while (!queue_.empty() && allowed(set, queue_.front()->payload_len)) {
      Packet* p = pop();
      charge(*p, rel_of(*p).value_or(0));
      io.count(Counter::sent_bytes, p->payload_len);
      io.count(released);
      io.down(p);
    }
    if (queue_.empty()) {
      // Nothing waits: a receiver is now behind only if it holds more than its window
      // unconsumed (max and quorum send past the slow ones).
      watch_slow(set, 0, io);
      break;
    }
    const std::size_t before = ejected();
    watch_slow(set, queue_.front()->payload_len, io);
    if (ejected() == before) break;  // an ejection changes the set: look again
  }
  schedule(io);
}

bool FlowCreditStage::behind_changed(const MemberSet& set) noexcept {
  if (!bounds_valid_) refresh_bounds(set);
  // Nobody marked behind and every credit still covers zero: nothing to change.
  if (!any_behind_ && min_bound_ >= static_cast<std::int64_t>(sent_ - bounds_sent_)) return false;
  for (int s = set.first(); s >= 0; s = set.next(s)) {
    const Peer& pe = peers_[static_cast<std::size_t>(s)];
    if ((pe.blocked_since_ns != 0) != !fits(pe, 0)) return true;
  }
  return false;
}

void FlowCreditStage::watch_slow(const MemberSet& set, std::uint64_t bytes, StageIo& io) noexcept {
  const std::uint64_t now = io.now_ns();
  const Group& g = io.group();
  bool behind = false;
  for (int s = set.first(); s >= 0; s = set.next(s)) {
    Peer& pe = peers_[static_cast<std::size_t>(s)];
    if (fits(pe, bytes)) {
      pe.blocked_since_ns = 0;
      pe.reported = false;
      continue;
    }
    behind = true;
    // Stored as now + 1 so that a clock starting at 0 still reads as "blocking".
    if (pe.blocked_since_ns == 0) {
      pe.blocked_since_ns = now + 1;
      continue;
    }
    if (pe.reported || now + 1 - pe.blocked_since_ns < slow_ns_) continue;
    pe.reported = true;
    io.count(slow_members);
    const std::int64_t unconsumed = unconsumed_bytes(s);
    io.notify(Event{.type = EventType::slow_member,
                    .sender = g.member(s).sender,
                    .epoch = g.member(s).epoch,
                    .count = static_cast<std::uint64_t>(std::max<std::int64_t>(0, unconsumed)),
                    .stage = kKind,
                    .members = MemberSet::of(s)});
    if (eject_slow_) {
      pe.ejected = true;
      pe.in_set = false;
      set_valid_ = false;
      io.count(Counter::ejected);
    }
  }
  if (&set == &set_) any_behind_ = behind;
}

void FlowCreditStage::schedule(StageIo& io) noexcept {
  const std::uint64_t now = io.now_ns();
  std::uint64_t at = next_refresh_ns_;
  auto consider = [&at](std::uint64_t t) {
    if (t != 0 && (at == 0 || t < at)) at = t;
  };
  // Look at the Group again soon while data waits: a failed receiver unblocks without any
  // packet here.
  if (!queue_.empty()) consider(now + recheck_ns_);
  for (const Peer& pe : peers_) {
    if (pe.in_set && pe.blocked_since_ns != 0 && !pe.reported) consider(pe.blocked_since_ns - 1 + slow_ns_);
  }
  timer_.set(io, at);
}

// --- hot paths ----------------------------------------------------------------------------

void FlowCreditStage::on_send(Packet* p, StageIo& io) noexcept {
  if (p->kind == wire::Kind::ack) {
    std::uint8_t len = 0;
    const std::uint8_t* ack_body = p->ext(wire::Ext::ack, &len);  // before reading len
    const std::optional<AckBody> a = decode_ack(ack_body, len);
    if (a) {
      Source* s = source(a->target_sender, a->target_epoch, /*create=*/false, io.now_ns());
      if (s != nullptr && s->consumed != 0) {
        std::uint8_t* body = p->push_ext(wire::Ext::flow, kFlowBodyBytes);
        if (body != nullptr) {
          const std::uint32_t window = advertised_window(io);
          encode_flow(body, FlowBody{.target_sender = s->sender,
                                     .target_epoch = s->epoch,
                                     .consumed_bytes = s->consumed,
                                     .window_bytes = window});
          s->adv_repeats = s->adv_consumed == s->consumed && s->adv_window == window ? s->adv_repeats + 1 : 1;
          s->adv_consumed = s->consumed;
          s->adv_window = window;
          io.count(adverts_on_acks);
        }
      }
    }
    io.down(p);
    return;
  }
  std::uint8_t rel_len = 0;
  const std::uint8_t* rel_body = p->ext(wire::Ext::rel, &rel_len);  // before reading rel_len
  const std::optional<RelBody> rb = decode_rel_body(rel_body, rel_len);
  if (p->kind != wire::Kind::data || !rb) {
    if (p->kind == wire::Kind::data) io.count(unreliable_passed);
    if (p->kind == wire::Kind::control) learn_edge(*p, io);
    io.down(p);
    return;
  }
  const std::optional<std::uint64_t> rel = rb->rseq;
  forgive_released(rb->trail - 1, io);
  if (*rel <= highest_rseq_) {
    if (*rel > highest_passed_) {
      // Reliability's timer fired for a message still waiting here: the original will go
      // out in order, so this copy would only slip past flow control.
      io.count(retransmits_absorbed);
      p->release();
      return;
    }
    // A retransmission of data already passed down: its bytes were charged when it first
    // went out (the receiver counts each rseq once), so it is not charged again, and it
    // goes at once, ahead of whatever new data waits here.
    io.count(retransmits_passed);
    io.down(p);
    return;
  }
  highest_rseq_ = *rel;
  const MemberSet& set = policy_set(io);
  if (queue_.empty() && allowed(set, p->payload_len)) {
    charge(*p, *rel);
    io.count(Counter::sent_bytes, p->payload_len);
    io.count(passed);
    io.down(p);
    if (behind_changed(set)) {
      watch_slow(set, 0, io);
      schedule(io);
    }
    return;
  }
  queue_.push(p);
  io.count(waits);
  if (queue_.front() == p) {
    watch_slow(set, p->payload_len, io);
    schedule(io);
  }
}

void FlowCreditStage::on_receive(Packet* p, StageIo& io) noexcept {
  if (p->kind == wire::Kind::control || p->kind == wire::Kind::ack) {
    std::uint8_t len = 0;
    const std::uint8_t* body = p->ext(wire::Ext::flow, &len);
    if (p->kind == wire::Kind::ack) take_ack(*p, io);
    if (body != nullptr) {
      take_advert(*p, body, len, io);
      if (p->kind == wire::Kind::control) {
        p->release();  // a standalone advertisement is ours alone, whoever it targets
        return;
      }
    }
    io.up(p);
    return;
  }
  const std::optional<std::uint64_t> rel = p->kind == wire::Kind::data ? rel_of(*p) : std::nullopt;
  if (!rel) {
    io.up(p);
    return;
  }
  const std::uint64_t now = io.now_ns();
  bool evicted = false;
  Source* s = source(p->sender, p->epoch, /*create=*/true, now, &evicted);
  if (evicted) io.count(sources_evicted);
  s->last_ns = now;
  if (!mark(*s, *rel)) {
    io.count(duplicates_seen);
    io.up(p);  // reliability above drops (and re-acks) it
    return;
  }
  s->consumed += p->payload_len;
  io.count(Counter::consumed_bytes, p->payload_len);
  if (s->consumed - s->adv_consumed >= update_every_) advertise_standalone(*s, io);
  if (next_refresh_ns_ == 0) {
    next_refresh_ns_ = now + refresh_ns_;
    schedule(io);
  }
  io.up(p);
}

void FlowCreditStage::on_tick(StageIo& io) noexcept {
  timer_.fired();
  if (next_refresh_ns_ != 0 && io.now_ns() >= next_refresh_ns_) refresh_adverts(io);
  if (!queue_.empty()) {
    release(io);
  } else {
    watch_slow(policy_set(io), 0, io);  // a receiver behind (max, quorum) may be due
    schedule(io);
  }
}

void FlowCreditStage::on_stop(StageIo& io) noexcept {
  timer_.cancel(io);
  next_refresh_ns_ = 0;
  // The pipeline is retiring: whatever waits leaves now rather than be lost.
  while (!queue_.empty()) {
    Packet* p = pop();
    sent_ += p->payload_len;
    io.count(stop_flushed);
    io.down(p);
  }
}

}  // namespace detail

namespace {
constexpr std::string_view kPolicies[] = {"min", "max", "quorum"};
constexpr std::int64_t kMaxWindowBytes = std::int64_t{1} << 31;
}  // namespace

void register_flow_credit(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "flow.credit",
      .synopsis = "Flow control: receivers advertise consumed bytes and a window; the sender's reliable data waits "
                  "for credit from the slowest (min), the fastest (max) or a majority (quorum), and slow members "
                  "are reported and optionally ejected.",
      .notes =
          "Counts the payload bytes of reliable data (packets carrying reliability's Ext::rel): the sender each "
          "new rseq it passes down, the receiver each rseq the first time it passes up (duplicates are "
          "recognised with a 4096-rseq bitmap, since this stage sits below reliability). Unreliable data is "
          "neither counted nor held: a lost best-effort datagram is never consumed and would leak credit "
          "forever. Receivers advertise with Ext::flow (20 bytes: u32 target sender, u32 target epoch, u64 "
          "consumed bytes, u32 window bytes), appended to every ack going down to a sender they consumed from, "
          "sent alone on a Kind::control packet after `update_every_bytes` consumed without an ack carrying it, "
          "and repeated every `refresh_us` until the current value went out three times (so a lost last "
          "advertisement cannot leave a sender waiting). Standalone advertisements are consumed by the flow "
          "stage that receives them. The sender keeps, per Group slot, credit = consumed - base_consumed + "
          "window - (sent - base_sent); the policy set is Group::receivers() in state alive, minus ejected "
          "members. Receivers not yet heard (state expected) do not block: they have no advertisement and may "
          "never come; a heard receiver that has not advertised yet counts as having consumed nothing. The "
          "baseline is taken when a slot enters the set (first heard, back after failing, restarted), which "
          "forgives what was sent while it was away, so a receiver returning after a partition cannot stall "
          "the channel for messages nobody will repair to it (after such a return the bound may be exceeded by "
          "what was in flight). A packet fits a receiver when its credit covers the payload, or when it has "
          "consumed everything sent (a message larger than the window goes alone). Reliable data waits in a "
          "FIFO inside the stage while the policy is not met (min: every receiver fits; max: one does; quorum: "
          "more than half). A retransmission (reliable data whose rseq is at or below the highest this stage "
          "already passed down) is never charged and never waits: it goes down at once, ahead of waiting new "
          "data; reliable control packets and other kinds pass at once too; a retransmission of a message "
          "still waiting here is released (the original goes out in order; the copy would slip past flow "
          "control). A receiver is behind while data waits and it does not fit, or while it has more than its "
          "window unconsumed (max and quorum send past slow receivers); after `slow_timeout_us` of one such "
          "episode it raises `slow_member` once (Event::members = its slot bit, count = its unconsumed bytes) "
          "and, with `eject_slow`, is ignored by flow control for the rest of its epoch. Load hints "
          "(`load_hints`): the window a receiver advertises is window_bytes x (1 - load), where load is the "
          "receiving application's occupancy the shell reports (the fill of its receive queue, or what the "
          "application said with Channel::hint_load, whichever is higher); at full load it is 0 and a sender "
          "sends it nothing more until it advertises room again (a receiver re-advertises every refresh_us while "
          "its window is 0, so the window it opens is heard without new traffic). A changed window is advertised like a changed "
          "consumed count. Forgotten or expired messages still waiting here are let go uncharged; one already "
          "sent is forgiven, once reliability's trailing edge passes it, to every receiver that had not "
          "acknowledged it (that receiver will never consume it), and taken back should that receiver consume it "
          "after all (its ack was on its way); the last 4096 reliable sequence numbers are remembered for this. "
          "While data "
          "waits the stage re-checks the Group every few milliseconds (membership changes reach it through no packet). On stop "
          "the queue is passed down.",
      .params = {{.name = "policy",
                  .type = ParamType::string,
                  .default_value = "min",
                  .doc = "\"min\" (wait for every receiver), \"max\" (for the fastest) or \"quorum\" (for a "
                         "majority).",
                  .one_of = kPolicies},
                 {.name = "window_bytes",
                  .type = ParamType::integer,
                  .default_value = "4194304",
                  .doc = "Bytes a receiver advertises it can take beyond what it consumed (1..2^31).",
                  .min = 1,
                  .max = kMaxWindowBytes},
                 {.name = "slow_timeout_us",
                  .type = ParamType::integer,
                  .default_value = "1000000",
                  .doc = "A receiver that holds the sender back this long is reported as slow_member.",
                  .min = 1000,
                  .max = 3'600'000'000},
                 {"eject_slow", ParamType::boolean, "false",
                  "A slow receiver is then ignored by flow control (for the rest of its epoch)."},
                 {.name = "update_every_bytes",
                  .type = ParamType::integer,
                  .default_value = "0",
                  .doc = "Standalone advertisement after this many bytes consumed without an ack carrying one (0 = "
                         "window_bytes / 4).",
                  .min = 0,
                  .max = kMaxWindowBytes},
                 {.name = "refresh_us",
                  .type = ParamType::integer,
                  .default_value = "50000",
                  .doc = "Re-send a changed advertisement this often until it went out three times.",
                  .min = 1000,
                  .max = 60'000'000},
                 {"load_hints", ParamType::boolean, "true",
                  "Shrink the advertised window with the receiving application's load (its receive queue's fill, "
                  "or Channel::hint_load), to 0 at full load, so senders slow down before the receiver drops."}},
      .counters = counter_list(detail::kCounters),
      .gauges = gauge_list(detail::kGauges),
      .factory = [] { return std::make_unique<detail::FlowCreditStage>(); },
      .serves = "flow_control",
      .requires_below = {"membership.heartbeat"},
      .requires_above = {"reliability.arq"},
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::flow),
                      .name = "flow",
                      .body_bytes = detail::kFlowBodyBytes,
                      .carried_on = "appended to kind ack, or alone on kind control",
                      .body = "u32 target sender, u32 target epoch, u64 consumed bytes, u32 window bytes (20 "
                              "bytes)"}},
  });
}

}  // namespace tmc
