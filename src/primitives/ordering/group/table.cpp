#include "primitives/ordering/group/table.hpp"

#include <algorithm>

namespace tmc::detail::group_order {
namespace {
constexpr std::size_t kMaxSenders = 256;
}  // namespace

MsgTable::~MsgTable() {
  for (Msg& m : msgs_) {
    if (m.p != nullptr) m.p->release();
  }
}

void MsgTable::configure(const StageEnv& env, std::size_t entries, std::uint32_t window, bool reliable, bool direct,
                         std::uint64_t hold_ns) {
  self_sender_ = env.sender;
  self_epoch_ = env.epoch;
  window_ = window;
  reliable_ = reliable;
  direct_ = direct;
  hold_ns_ = hold_ns;
  ring_.assign(window_, kNone);
  msgs_.resize(entries);
  free_.reserve(msgs_.size());
  for (std::size_t i = msgs_.size(); i > 0; --i) free_.push_back(static_cast<std::uint32_t>(i - 1));
  std::uint32_t cap = 1;
  while (cap < 4 * std::max<std::size_t>(msgs_.size(), 1)) cap <<= 1;
  index_.reset(cap);
  net_ring_.assign(direct ? window_ : 0, nullptr);
  senders_.resize(kMaxSenders);
}

// --- messages by (sender, epoch, seq) --------------------------------------------------

std::uint32_t MsgTable::hash(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept {
  std::uint64_t x = (std::uint64_t{sender} << 32 | epoch) ^ (seq * 0x9E3779B97F4A7C15ull) ^ salt_;
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

// The index is keyed by the hash itself (its tag); the entry's full key decides a match.
std::uint32_t MsgTable::lookup(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept {
  const std::uint32_t h = hash(sender, epoch, seq);
  return index_.find(h, h, [&](std::uint32_t idx) {
    const Msg& m = msgs_[idx];
    return m.sender == sender && m.epoch == epoch && m.seq == seq;
  });
}

std::uint32_t MsgTable::insert(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq,
                               std::uint64_t now) noexcept {
  if (free_.empty()) return kNone;
  const std::uint32_t idx = free_.back();
  free_.pop_back();
  Msg& m = msgs_[idx];
  m = Msg{.sender = sender, .epoch = epoch, .seq = seq, .g = 0, .p = nullptr, .since_ns = now, .used = true,
          .unordered = false};
  const std::uint32_t h = hash(sender, epoch, seq);
  index_.insert(h, h, idx);
  return idx;
}

void MsgTable::erase(std::uint32_t idx) noexcept {
  Msg& m = msgs_[idx];
  index_.erase(hash(m.sender, m.epoch, m.seq), idx, [](std::uint32_t tag, std::uint32_t) { return tag; });
  m.used = false;
  m.g = 0;
  free_.push_back(idx);
}

std::uint32_t MsgTable::find_sender(std::uint32_t id, std::uint32_t epoch) noexcept {
  ++use_clock_;
  std::uint32_t victim = 0;
  for (std::uint32_t i = 0; i < senders_.size(); ++i) {
    SenderState& s = senders_[i];
    if (s.used && s.id == id && s.epoch == epoch) {
      s.last_use = use_clock_;
      return i;
    }
    if (!s.used) {
      victim = i;
      break;
    }
    if (s.last_use < senders_[victim].last_use) victim = i;
  }
  senders_[victim] = SenderState{.id = id, .epoch = epoch, .used = true, .last_use = use_clock_};
  return victim;
}

bool MsgTable::raise_done(std::uint32_t sender, std::uint32_t epoch, std::uint64_t last) noexcept {
  const std::uint32_t s = find_sender(sender, epoch);
  if (s == kNone || last <= senders_[s].done_seq) return false;
  senders_[s].done_seq = last;
  return true;
}

void MsgTable::note_held(const Msg& m, int delta) noexcept {
  const bool mine = own(m.sender, m.epoch);
  if (delta > 0) {
    ++held_;
    if (mine) ++own_held_;
  } else {
    --held_;
    if (mine) --own_held_;
  }
}

std::uint32_t MsgTable::entry_to_place(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq,
                                       StageIo& io) noexcept {
  std::uint32_t idx = lookup(sender, epoch, seq);
  if (idx != kNone) return msgs_[idx].g != 0 ? kNone : idx;
  const std::uint32_t s = find_sender(sender, epoch);
  const bool done = s != kNone && seq <= senders_[s].done_seq;
  if (done && !reliable_) return kNone;
  idx = insert(sender, epoch, seq, io.now_ns());
  if (idx == kNone) {
    io.count(Counter::full);
  } else if (done) {
    // Reliable mode: the sequencer orders a message we delivered already. That happens
    // only when views disagreed: the sequencer was cut off from a term we delivered in
    // (e.g. we declared it failed before ever hearing it, while it lived), so its
    // per-sender cut-offs are behind ours. We pass over this number instead of leaving
    // a hole that nobody could fill, so the members that shared that term stay live and
    // in step (they all pass over the same numbers); the sequencer's own sequence then
    // differs from theirs, as docs/manifest.md allows for a member that was separated.
    msgs_[idx].skip = true;
    io.count(cut_missing);
  }
  return idx;
}

// --- the current term's global order ---------------------------------------------------

void MsgTable::begin_term(const gw::TermId& t) noexcept {
  term_ = t;
  next_g_ = 1;
  max_known_g_ = 0;
  gap_at_ = 0;
}

void MsgTable::place(std::uint32_t idx, std::uint64_t g, StageIo& io) noexcept {
  if (g >= next_g_ + window_) overflow_to(g - window_ + 1, io);  // never in reliable mode (callers check)
  msgs_[idx].g = g;
  ring_[g % window_] = idx;
  if (g > max_known_g_) max_known_g_ = g;
}

void MsgTable::deliver_one(StageIo& io, bool step_unordered) noexcept {
  const std::uint32_t idx = ring_[next_g_ % window_];
  ring_[next_g_ % window_] = kNone;
  Msg& m = msgs_[idx];
  if (m.skip) {  // delivered here before (entry_to_place)
    if (m.p != nullptr) {
      m.p->release();
      m.p = nullptr;
      note_held(m, -1);
    }
    erase(idx);
    ++next_g_;
    io.count(stale);
    return;
  }
  Packet* p = m.p;
  m.p = nullptr;
  note_held(m, -1);
  mark_done(m.sender, m.epoch, m.seq, step_unordered);
  const bool mine = own(m.sender, m.epoch);
  erase(idx);
  ++next_g_;
  io.count(delivered);
  if (mine) io.count(own_delivered);
  io.up(p);
}

void MsgTable::mark_done(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, bool step_unordered) noexcept {
  const std::uint32_t s = find_sender(sender, epoch);
  if (s == kNone) return;
  SenderState& st = senders_[s];
  if (seq > st.done_seq) st.done_seq = seq;
  if (!step_unordered) return;
  for (;;) {
    const std::uint32_t idx = lookup(sender, epoch, st.done_seq + 1);
    if (idx == kNone || !msgs_[idx].unordered) break;
    erase(idx);
    ++st.done_seq;
  }
}

void MsgTable::deliver_through(std::uint64_t end, bool step_unordered, StageIo& io) noexcept {
  if (end < next_g_ - 1) io.count(cut_missing);  // we delivered beyond the cut: views disagreed
  while (next_g_ <= end) {
    if (deliverable(next_g_)) {
      deliver_one(io, step_unordered);
      continue;
    }
    // Not held although the cut says every survivor holds it (views disagreed).
    io.count(cut_missing);
    const std::uint64_t from = next_g_;
    while (next_g_ <= end && !deliverable(next_g_)) ++next_g_;
    report_gap(from, next_g_ - from, io);
  }
}

void MsgTable::void_numbers(bool keep_unordered) noexcept {
  for (std::uint32_t i = 0; i < msgs_.size(); ++i) {
    if (msgs_[i].used && msgs_[i].g != 0) {
      msgs_[i].g = 0;
      if (msgs_[i].p == nullptr && !(keep_unordered && msgs_[i].unordered)) erase(i);
    }
  }
  std::fill(ring_.begin(), ring_.end(), kNone);
}

// --- unreliable delivery ----------------------------------------------------------------

void MsgTable::deliver_in_order(StageIo& io) noexcept {
  if (direct_) {
    deliver_direct(io);
    return;
  }
  while (deliverable(next_g_)) deliver_one(io, /*step_unordered=*/false);
  note_gap_state(io);
}

// Arm (or clear) the gap timer: stuck when something later than next_g_ is known.
void MsgTable::note_gap_state(StageIo& io) noexcept {
  if (max_known_g_ < next_g_) {
    gap_at_ = 0;
    gap_g_ = 0;
    return;
  }
  if (gap_g_ != next_g_) {
    gap_g_ = next_g_;
    gap_at_ = io.now_ns() + hold_ns_;
  }
}

void MsgTable::skip_gap(StageIo& io) noexcept {
  gap_at_ = 0;
  gap_g_ = 0;
  if (max_known_g_ < next_g_) return;
  skip_run(io);
  deliver_in_order(io);
}

void MsgTable::skip_run(StageIo& io) noexcept {
  const std::uint64_t from = next_g_;
  while (next_g_ <= max_known_g_ && !deliverable(next_g_)) {
    if (!direct_) {  // the direct ring holds nothing at an undeliverable number
      const std::uint32_t idx = ring_[next_g_ % window_];
      if (idx != kNone && msgs_[idx].g == next_g_) {
        const Msg& m = msgs_[idx];
        mark_done(m.sender, m.epoch, m.seq, /*step_unordered=*/false);
        erase(idx);  // announced, data never came
      }
      ring_[next_g_ % window_] = kNone;
    }
    ++next_g_;
  }
  report_gap(from, next_g_ - from, io);
}

void MsgTable::report_gap(std::uint64_t from, std::uint64_t count, StageIo& io) noexcept {
  if (count == 0) return;
  io.count(gaps_skipped);
  io.count(seqs_skipped, count);
  io.notify(Event{.type = EventType::gap_skipped,
                  .sender = term_.sender,
                  .epoch = term_.epoch,
                  .seq = from,
                  .count = count,
                  .stage = kKind});
}

void MsgTable::overflow_to(std::uint64_t to, StageIo& io) noexcept {
  io.count(window_overflows);
  while (next_g_ < to) {
    if (deliverable(next_g_)) {
      deliver_in_order(io);
      continue;
    }
    const std::uint64_t save_max = max_known_g_;
    if (max_known_g_ < to - 1) max_known_g_ = to - 1;
    const std::uint64_t from = next_g_;
    while (next_g_ < to && !deliverable(next_g_)) {
      if (!direct_) {
        const std::uint32_t idx = ring_[next_g_ % window_];
        if (idx != kNone && msgs_[idx].g == next_g_) erase(idx);
        ring_[next_g_ % window_] = kNone;
      }
      ++next_g_;
    }
    report_gap(from, next_g_ - from, io);
    max_known_g_ = std::max(save_max, next_g_ - 1);
  }
}

void MsgTable::drain(StageIo& io) noexcept {
  while (next_g_ <= max_known_g_) {
    if (!deliverable(next_g_)) {
      skip_run(io);
    } else {
      deliver_in_order(io);
    }
  }
  // Announced entries whose data never came belong to the old term: forget them.
  void_numbers(/*keep_unordered=*/false);
}

void MsgTable::expire_unannounced(bool sequencing, StageIo& io) noexcept {
  expire_at_ = 0;
  const std::uint64_t now = io.now_ns();
  const std::uint64_t limit = 4 * hold_ns_;
  std::uint64_t oldest = 0;
  for (std::uint32_t i = 0; i < msgs_.size(); ++i) {
    Msg& m = msgs_[i];
    if (m.used && m.unordered) {
      if (m.since_ns + limit <= now) erase(i);  // its sender's stream moved on without us
      else if (oldest == 0 || m.since_ns < oldest) oldest = m.since_ns;
      continue;
    }
    if (!m.used || m.g != 0 || m.p == nullptr) continue;
    if (sequencing) {
      // Ours to order: it waits for its sender's earlier messages (MemberSequencer::give_up_waits).
      if (oldest == 0 || m.since_ns < oldest) oldest = m.since_ns;
      continue;
    }
    if (m.since_ns + limit <= now) {
      io.count(unannounced_dropped);
      io.notify(Event{.type = EventType::gap_skipped,
                      .sender = m.sender,
                      .epoch = m.epoch,
                      .seq = m.seq,
                      .count = 1,
                      .stage = kKind});
      io.drop(m.p, DropReason::stale);
      m.p = nullptr;
      note_held(m, -1);
      erase(i);
      continue;
    }
    if (oldest == 0 || m.since_ns < oldest) oldest = m.since_ns;
  }
  // At least hold_us apart: the sequencer's own waiting messages are resolved by
  // MemberSequencer::give_up_waits, and must not make this timer spin.
  if (oldest != 0) expire_at_ = std::max(oldest + limit, now + hold_ns_);
}

// --- network mode without reliability ---------------------------------------------------

void MsgTable::first_stamp(std::uint64_t g, StageIo& io) noexcept {
  if (g > window_) {
    report_gap(1, g - 1, io);
    next_g_ = g;
  }
}

void MsgTable::put_direct(std::uint64_t g, Packet* p, StageIo& io) noexcept {
  if (g < next_g_) {
    io.count(duplicates);
    io.drop(p, DropReason::duplicate);
    return;
  }
  if (g >= next_g_ + window_) overflow_to(g - window_ + 1, io);
  Packet*& slot = net_ring_[g % window_];
  if (slot != nullptr) {
    io.count(duplicates);
    io.drop(p, DropReason::duplicate);
    return;
  }
  slot = p;
  ++held_;
  if (g > max_known_g_) max_known_g_ = g;
  deliver_direct(io);
}

void MsgTable::deliver_direct(StageIo& io) noexcept {
  for (;;) {
    Packet*& slot = net_ring_[next_g_ % window_];
    if (slot == nullptr) break;
    Packet* p = slot;
    slot = nullptr;
    --held_;
    ++next_g_;
    // Within a session the sequencer keeps each sender's order and stamps a message once;
    // across a restart a copy in flight may be stamped again, so never deliver a sender's
    // number that is not above the last delivered (no duplicates, FIFO kept).
    const std::uint32_t s = find_sender(p->sender, p->epoch);
    if (s != kNone) {
      if (p->seq <= senders_[s].done_seq) {
        io.count(stale);
        io.drop(p, DropReason::stale);
        continue;
      }
      senders_[s].done_seq = p->seq;
    }
    io.count(delivered);
    if (own(p->sender, p->epoch)) io.count(own_delivered);
    io.up(p);
  }
  note_gap_state(io);
}

}  // namespace tmc::detail::group_order
