#include "primitives/ordering/group/network_sequencer.hpp"

#include <algorithm>

namespace tmc::detail::group_order {
namespace {

// How long a member waits for the sequencer's stamped copy of its own message before
// sending the message to the sequencer again, doubling per retry up to the cap, and how many
// times it asks. The first wait is a few round trips to the sequencer (sub-millisecond on a
// LAN, a few ms under the simulator's reordering), so one loss costs little; doubling keeps
// a sequencer that is slow or gone from being flooded. 16 requests span about 3.5 s (5, 10,
// ..., 320 ms, then 320 ms each): beyond that the copy is released rather than re-sent for
// ever. (The network term is given up earlier, after kRestampFailoverTries, and a failover
// releases every copy.)
constexpr std::uint64_t kRestampFirstNs = 5'000'000;
constexpr std::uint64_t kRestampMaxNs = 320'000'000;
constexpr std::uint32_t kRestampTries = 16;
// An own message asked for this many times without its stamped copy coming back (about 1 s:
// 5 + 10 + ... + 320 + 320 ms) means the sequencer is gone or cut off from us: the network
// term is given up and a member sequencer takes over.
constexpr std::uint32_t kRestampFailoverTries = 8;

}  // namespace

NetworkSequencer::~NetworkSequencer() {
  for (OwnCopy& o : own_) {
    if (o.p != nullptr) o.p->release();
  }
}

void NetworkSequencer::configure(const StageEnv& env, std::uint32_t ip, std::uint16_t port, bool reliable,
                                 std::size_t own_slots) {
  env_ = env;
  ip_ = ip;
  port_ = port;
  reliable_ = reliable;
  own_.assign(own_slots, OwnCopy{});
}

bool NetworkSequencer::read_stamp(Packet* p, std::uint64_t& g, std::uint32_t& session, StageIo& io) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p->ext(wire::Ext::group_seq, &len);
  if (body == nullptr || len != gw::kStampBody) {
    io.count(no_stamp);
    io.drop(p, DropReason::unsupported);
    return false;
  }
  const gw::Stamp stamp = gw::get_stamp(body);
  g = stamp.global;
  session = stamp.session;
  if (g == 0 || session == 0 || (reliable_ && p->seq == 0)) {
    io.count(no_stamp);
    io.drop(p, DropReason::malformed);
    return false;
  }
  return true;
}

// --- unreliable: sessions ------------------------------------------------------------------

bool NetworkSequencer::retired(std::uint32_t session) const noexcept {
  for (std::size_t i = 0; i < n_retired_; ++i) {
    if (retired_[i] == session) return true;
  }
  return false;
}

void NetworkSequencer::retire(std::uint32_t session) noexcept {
  if (session == 0) return;
  retired_[retired_pos_] = session;
  retired_pos_ = (retired_pos_ + 1) % kRetiredSessions;
  if (n_retired_ < kRetiredSessions) ++n_retired_;
}

// --- reliable: the network term --------------------------------------------------------------

void NetworkSequencer::fall_back() noexcept {
  fallback_ = true;
  gone_ = true;
  for (OwnCopy& o : own_) {
    if (o.used) release_own(o);
  }
  own_due_ns_ = 0;
}

void NetworkSequencer::place_stamp(MsgTable& t, Packet* p, std::uint64_t g, StageIo& io) noexcept {
  if (g < t.next_g()) {
    io.count(duplicates);
    io.drop(p, DropReason::duplicate);
    return;
  }
  const bool fits = g < t.next_g() + t.window();
  if (fits && t.at(g) != kNone) {
    io.count(duplicates);  // a restamped retransmission of a message placed before
    io.drop(p, DropReason::duplicate);
    return;
  }
  const std::uint32_t idx = t.entry_to_place(p->sender, p->epoch, p->seq, io);
  if (idx == kNone) {
    io.count(duplicates);  // placed (a restamp) or delivered already
    io.drop(p, DropReason::duplicate);
    return;
  }
  Msg& m = t.msg(idx);
  if (m.p == nullptr && !m.skip) {
    m.p = p;
    t.note_held(m, +1);
  } else {
    io.count(duplicates);  // our own clone, or a re-sent copy, holds the data already
    io.drop(p, DropReason::duplicate);
  }
  m.unordered = false;
  if (fits) {
    t.place(idx, g, io);
  } else if (m.pend_g == 0) {
    // Beyond our window (we lag): placed once delivery moves the window up to it.
    m.pend_g = g;
    ++n_pending_;
    io.count(window_overflows);
  }
}

void NetworkSequencer::place_pending(MsgTable& t, StageIo& io) noexcept {
  const std::span<Msg> msgs = t.msgs();
  for (std::uint32_t i = 0; i < msgs.size() && n_pending_ > 0; ++i) {
    Msg& m = msgs[i];
    if (!m.used || m.pend_g == 0 || m.pend_g >= t.next_g() + t.window()) continue;
    const std::uint64_t g = m.pend_g;
    m.pend_g = 0;
    --n_pending_;
    if (g >= t.next_g() && m.g == 0 && t.at(g) == kNone) t.place(i, g, io);
  }
}

void NetworkSequencer::clear_pending(MsgTable& t) noexcept {
  if (n_pending_ == 0) return;
  for (Msg& m : t.msgs()) m.pend_g = 0;
  n_pending_ = 0;
}

// --- reliable: our own stamped copies ----------------------------------------------------------

void NetworkSequencer::keep_own(const Packet& p, std::uint64_t seq, StageIo& io) noexcept {
  OwnCopy& o = own_[seq % own_.size()];
  if (o.used) {
    // More than a window of own messages without their stamped copy: the sequencer is
    // far behind or gone; this one goes without a safety copy.
    io.count(Counter::full);
    return;
  }
  // A message fragmented below is not one datagram we could send to the sequencer again:
  // it is only timed, so that its stamped copy not coming back still leads to a failover
  // (after which it is re-sent to the members, fragmented like any large message).
  Packet* c = nullptr;
  if (p.payload_len + 64 <= env_.max_payload_bytes) {
    c = io.clone(p);
    if (c == nullptr) {
      io.count(Counter::full);
      return;
    }
  }
  const std::uint64_t now = io.now_ns();
  o = OwnCopy{.p = c, .used = true, .seq = seq, .due_ns = now + kRestampFirstNs, .wait_ns = kRestampFirstNs,
              .tries = 0};
  ++own_held_;
  if (own_low_ == 0 || own_held_ == 1) own_low_ = seq;
  if (own_due_ns_ == 0 || o.due_ns < own_due_ns_) own_due_ns_ = o.due_ns;
}

void NetworkSequencer::own_returned(std::uint64_t seq) noexcept {
  if (seq == 0 || own_.empty()) return;
  if (seq > own_back_max_) own_back_max_ = seq;
  OwnCopy& o = own_[seq % own_.size()];
  if (!o.used || o.seq != seq) return;
  release_own(o);
}

void NetworkSequencer::release_own(OwnCopy& o) noexcept {
  if (o.p != nullptr) o.p->release();
  o.p = nullptr;
  o.used = false;
  --own_held_;
}

bool NetworkSequencer::request_restamps(std::uint64_t own_seq, StageIo& io) noexcept {
  const std::uint64_t now = io.now_ns();
  own_due_ns_ = 0;
  if (own_held_ == 0) return false;
  // The oldest copy still held; everything below own_low_ came back or was given up.
  while (own_low_ <= own_seq) {
    const OwnCopy& o = own_[own_low_ % own_.size()];
    if (o.used && o.seq == own_low_) break;
    ++own_low_;
  }
  std::size_t left = own_held_;
  bool gone = false;
  for (std::uint64_t s = own_low_; s <= own_seq && left > 0; ++s) {
    OwnCopy& o = own_[s % own_.size()];
    if (!o.used || o.seq != s) continue;
    --left;
    if (o.due_ns <= now) {
      if (o.p == nullptr || s == own_low_ || s < own_back_max_) {
        if (o.tries >= kRestampFailoverTries) gone = true;
        if (o.tries >= kRestampTries) {
          io.count(own_restamp_gave_up);
          release_own(o);
          continue;
        }
        if (o.p != nullptr) send_restamp_request(o, io);  // (a large one is only timed)
        ++o.tries;
        o.wait_ns = std::min(o.wait_ns * 2, kRestampMaxNs);
      }
      // Not safe to ask yet: look again one wait later (an older copy returning makes
      // it safe), without spending a try.
      o.due_ns = now + o.wait_ns;
    }
    if (own_due_ns_ == 0 || o.due_ns < own_due_ns_) own_due_ns_ = o.due_ns;
  }
  return gone;  // the caller fails over after the loop: a failover releases the copies
}

void NetworkSequencer::send_restamp_request(const OwnCopy& o, StageIo& io) noexcept {
  Packet* c = io.clone(*o.p);
  if (c == nullptr) {
    io.count(Counter::full);  // the next try may find a buffer
    return;
  }
  std::uint8_t* body = c->push_ext(wire::Ext::seq, 8);
  if (body == nullptr) {
    io.count(Counter::full);
    c->release();
    return;
  }
  wire::put_u64(body, o.seq);
  c->sender = env_.sender;
  c->epoch = env_.epoch;
  c->channel = env_.channel;
  c->dst_ip = ip_;
  c->dst_port = port_;
  c->kind = wire::Kind::data;
  c->flags = static_cast<std::uint16_t>(o.p->flags & ~wire::kFlagReliable);
  c->seal();
  c->kind = wire::Kind::control;  // metadata only: the stages below pass it as it is
  io.count(own_restamp_requests);
  io.down(c);
}

}  // namespace tmc::detail::group_order
