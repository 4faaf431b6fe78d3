#include "primitives/ordering/group/member_sequencer.hpp"

#include <algorithm>
#include <limits>

namespace tmc::detail::group_order {
namespace {
constexpr std::uint32_t kMaxBatchEntries = 256;
}  // namespace

MemberSequencer::~MemberSequencer() {
  if (batch_ != nullptr) batch_->release();
}

void MemberSequencer::configure(const StageEnv& env, bool reliable, std::uint64_t hold_ns, std::uint64_t flush_ns,
                                AnnounceSink& sink) noexcept {
  env_ = env;
  reliable_ = reliable;
  hold_ns_ = hold_ns;
  flush_ns_ = flush_ns;
  sink_ = &sink;
  const std::uint32_t room = env.max_payload_bytes > 64 ? env.max_payload_bytes - 64 : gw::kEntryBytes;
  batch_max_ = std::clamp<std::uint32_t>(room / gw::kEntryBytes, 1, kMaxBatchEntries);
}

// --- ordering ---------------------------------------------------------------------------

void MemberSequencer::begin(MsgTable& t) noexcept {
  next_assign_ = 1;
  for (SenderState& s : t.senders()) {
    if (s.used) s.order_next = s.done_seq + 1;
  }
}

bool MemberSequencer::order(MsgTable& t, std::uint32_t s, std::uint64_t limit, StageIo& io) noexcept {
  SenderState& st = t.sender(s);
  bool blocked = false;
  bool progressed = false;
  for (;;) {
    const std::uint32_t idx = t.lookup(st.id, st.epoch, st.order_next);
    if (idx != kNone && t.msg(idx).unordered) {
      t.erase(idx);
      ++st.order_next;
      progressed = true;
      continue;
    }
    if (idx == kNone || t.msg(idx).p == nullptr || t.msg(idx).g != 0) break;
    if (next_assign_ >= limit) {
      blocked = true;
      break;
    }
    const std::uint64_t g = next_assign_++;
    t.place(idx, g, io);
    add(st.id, st.epoch, st.order_next, g, t.term().no, io);
    io.count(assigned);
    ++st.order_next;
    progressed = true;
  }
  if (st.max_seen < st.order_next) {
    st.wait_since_ns = 0;  // nothing of this sender waits
  } else if (progressed || st.wait_since_ns == 0) {
    // A later message waits for order_next: start (or restart) its clock.
    st.wait_since_ns = io.now_ns();
    if (!reliable_ && (wait_at_ == 0 || st.wait_since_ns + hold_ns_ < wait_at_)) {
      wait_at_ = st.wait_since_ns + hold_ns_;
    }
  }
  return blocked;
}

void MemberSequencer::give_up_waits(MsgTable& t, StageIo& io) noexcept {
  const std::uint64_t now = io.now_ns();
  const std::span<SenderState> senders = t.senders();
  for (std::uint32_t s = 0; s < senders.size(); ++s) {
    SenderState& st = senders[s];
    if (!st.used || st.wait_since_ns == 0) continue;
    if (st.wait_since_ns + hold_ns_ <= now) {
      std::uint64_t first = 0;
      for (const Msg& m : t.msgs()) {
        if (m.used && (m.p != nullptr || m.unordered) && m.g == 0 && m.sender == st.id && m.epoch == st.epoch &&
            m.seq > st.order_next && (first == 0 || m.seq < first)) {
          first = m.seq;
        }
      }
      st.wait_since_ns = 0;
      if (first != 0) {
        st.order_next = first;
        order(t, s, std::numeric_limits<std::uint64_t>::max(), io);
      } else {
        st.max_seen = st.order_next - 1;  // what waited was dropped meanwhile
      }
    }
    if (st.wait_since_ns != 0 && (wait_at_ == 0 || st.wait_since_ns + hold_ns_ < wait_at_)) {
      wait_at_ = st.wait_since_ns + hold_ns_;
    }
  }
  t.deliver_in_order(io);
}

// --- announcements ------------------------------------------------------------------------

void MemberSequencer::add(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t g,
                          std::uint32_t term_no, StageIo& io) noexcept {
  if (batch_ == nullptr) {
    batch_ = io.alloc();
    if (batch_ == nullptr) {
      io.count(Counter::full);
      return;  // members will see a gap (unreliable) — nothing else we can do
    }
    batch_->reset_for_send(batch_max_ * gw::kEntryBytes);
    batch_n_ = 0;
    batch_term_no_ = term_no;
    // Reliable mode: from the tick due now, i.e. once the shell has fed the input batch in
    // hand, so the entries of one batch share an announcement. Every member waits for
    // this announcement and then for each other's statuses; a deadline flush_us ahead
    // would cost a whole timer period in a shell whose timers count milliseconds.
    flush_at_ = std::max<std::uint64_t>(1, io.now_ns() + (reliable_ ? 0 : flush_ns_));  // 0 means "none"
  }
  gw::put_entry(batch_->payload() + std::size_t{batch_n_} * gw::kEntryBytes, gw::Entry{sender, epoch, seq, g});
  if (++batch_n_ == batch_max_) flush(io);
}

void MemberSequencer::flush(StageIo& io) noexcept {
  flush_at_ = 0;
  Packet* p = batch_;
  batch_ = nullptr;
  if (p == nullptr) return;
  const std::uint32_t n = batch_n_;
  batch_n_ = 0;
  p->payload_len = n * gw::kEntryBytes;
  p->len = p->payload_len;
  p->kind = wire::Kind::control;
  p->flags = reliable_ ? wire::kFlagReliable : 0;
  p->channel = env_.channel;
  p->sender = env_.sender;
  p->epoch = env_.epoch;
  std::uint8_t* body = p->push_ext(wire::Ext::order, reliable_ ? gw::kAnnounceBody : gw::kLegacyAnnounceBody);
  if (body == nullptr || n == 0) {
    p->release();
    return;
  }
  if (reliable_) {
    body[0] = gw::kTypeAnnounce;
    wire::put_u32(body + 1, batch_term_no_);
    wire::put_u32(body + 5, n);
    // An announcement tells the members that we hold every global it names (we number
    // only messages we hold, in order): it stands for our status.
    sink_->announced(batch_term_no_, gw::get_entry(p->payload() + std::size_t{n - 1} * gw::kEntryBytes).global);
  } else {
    wire::put_u32(body, n);
  }
  io.count(announcements_sent);
  io.down(p);
}

void MemberSequencer::place_entries(MsgTable& t, const std::uint8_t* entries, std::uint32_t n, StageIo& io) noexcept {
  const std::uint8_t* e = entries;
  for (std::uint32_t i = 0; i < n; ++i, e += gw::kEntryBytes) {
    const gw::Entry en = gw::get_entry(e);
    const std::uint64_t g = en.global;
    if (g < t.next_g() || en.seq == 0 || g == 0) continue;  // old news or nonsense
    if (reliable_) {
      if (g >= t.next_g() + t.window()) {
        io.count(window_overflows);  // the sequencer keeps within our window; never expected
        continue;
      }
      if (t.at(g) != kNone) continue;  // duplicate
    } else if (g < t.next_g() + t.window() && t.at(g) != kNone) {
      continue;  // duplicate
    }
    // Unreliable: not placeable is a gap, skipped like a lost announcement.
    const std::uint32_t idx = t.entry_to_place(en.sender, en.epoch, en.seq, io);
    if (idx == kNone) continue;
    if (reliable_) t.msg(idx).unordered = false;
    t.place(idx, g, io);
  }
}

}  // namespace tmc::detail::group_order
