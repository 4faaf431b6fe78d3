// ordering.group — group (total) ordering: every member delivers the group's messages in
// one order (paper §2, Fig. 3's second channel; the OUM of §3 when the network sequences).
//
// Synopsis
//   A sequencer assigns each ordered data message a global sequence number; members deliver
//   in that order, their own messages included.
// Params
//   sequencer (string, "")          member name of the sequencer; "" = the member with the
//                                   smallest name among self and the view's alive or
//                                   expected members (recomputed when the view changes)
//   network_sequencer (string, "")  "ip:port" of an in-network sequencer (tmc-sequencer);
//                                   "" = a member sequences
//   reliable (bool, false)          reliability.arq sits below: announcements are flagged
//                                   reliable and gaps are never skipped by time
//   hold_us (int, 50000)            unreliable: how long a gap in the global order may stay
//                                   open before it is skipped (gap_skipped event)
//   window (int, 4096)              global sequence numbers held ahead of the next to deliver;
//                                   2 * window messages may wait for their order
//   flush_us (int, 100)             the sequencer sends its batched announcements at most
//                                   this long after the first entry of a batch
// Wire
//   Member sequencer: announcements are Kind::control packets with Ext::order (body 4 bytes:
//   u32 entry count) and a payload of entries {u32 sender, u32 epoch, u64 seq, u64 global}
//   (24 bytes each, big-endian). Global numbers start at 1 per sequencer incarnation; a
//   member follows one sequencer (sender, epoch) at a time — its "term".
//   Network sequencer: data is unicast to network_sequencer, which multicasts it with
//   Ext::group_seq (u64 global, u32 session; session random per sequencer start).
// Notes
//   Messages are named by (sender, epoch, Packet::seq); ordering.seq must sit below. The
//   member sequencer orders each sender's messages in their per-sender order (it waits for
//   a missing one; unreliable mode gives up after hold_us), so the total order extends FIFO.
//   Data flagged wire::kFlagUnordered bypasses total order and is delivered at once.
//   Self-delivery: the stage keeps a clone of each ordered message it sends and delivers it
//   when its global number comes (member sequencer); in network mode the stamped copy comes
//   back from the sequencer (the pipeline lets own packets carrying Ext::group_seq through)
//   and is delivered in its place. The clone's number is predicted by counting data packets
//   on the way down: ordering.seq numbers every data packet it passes, starting at 1.
//
//   Gap events (gap_skipped) of this stage are in global numbers: sender/epoch name the
//   term (sequencer sender id and epoch, or 0 and the session in network mode), seq the
//   first global number skipped, count how many. A data message that reached a member but
//   was never announced (its announcement lost, or the sequencer never got it) is dropped
//   after 4 * hold_us and reported as gap_skipped with its own sender, epoch and seq
//   (count 1). Reliable mode never skips by time.
//
//   Sequencer changes: a member follows a new term when the view names a new sequencer (or
//   a network sequencer starts a new session); what it holds of the old term is delivered
//   in order with gaps skipped and reported, and sequencer_changed is raised. Reliable-mode
//   failover with agreement on the old term's tail is NOT implemented (see docs).
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tmc/stage.hpp"

namespace tmc {
namespace {

constexpr std::string_view kKind = "ordering.group";
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint8_t kGroupSeqBytes = 12;
constexpr std::uint8_t kOrderBodyBytes = 4;
constexpr std::uint32_t kEntryBytes = 24;
constexpr std::size_t kMaxSenders = 256;
constexpr std::uint32_t kMaxBatchEntries = 256;
constexpr std::size_t kRetiredSessions = 4;

enum Counter : std::size_t {
  delivered,
  own_delivered,
  unordered_passed,
  assigned,
  announcements_sent,
  announcements_received,
  gaps_skipped,
  seqs_skipped,
  unannounced_dropped,
  duplicates,
  stale,
  foreign_announcements,
  window_overflows,
  full_drops,
  term_changes,
  no_seq,
  no_stamp,
};

struct Msg {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t g = 0;  ///< global number, 0 = not announced yet
  Packet* p = nullptr;  ///< the data, nullptr = announced but not arrived
  std::uint64_t since_ns = 0;
  bool used = false;
  bool unordered = false;  ///< sequencer: a number the sender spent on an unordered message
};

struct SenderState {
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  bool used = false;
  std::uint64_t done_seq = 0;    ///< member: highest per-sender seq delivered or passed in the order
  std::uint64_t order_next = 0;  ///< sequencer: next per-sender seq to order (0 = not seen)
  std::uint64_t wait_since_ns = 0;  ///< sequencer: a later message waits for order_next since
  std::uint64_t max_seen = 0;       ///< sequencer: highest per-sender seq stored for ordering
  std::uint64_t last_use = 0;
};

bool parse_ip_port(const std::string& s, std::uint32_t& ip, std::uint16_t& port) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  std::uint32_t parts[4] = {};
  std::size_t at = 0;
  for (int i = 0; i < 4; ++i) {
    std::size_t digits = 0;
    std::uint32_t v = 0;
    while (at < colon && s[at] >= '0' && s[at] <= '9' && digits < 4) {
      v = v * 10 + static_cast<std::uint32_t>(s[at] - '0');
      ++at;
      ++digits;
    }
    if (digits == 0 || v > 255) return false;
    parts[i] = v;
    if (i < 3) {
      if (at >= colon || s[at] != '.') return false;
      ++at;
    }
  }
  if (at != colon) return false;
  std::uint32_t p = 0;
  std::size_t digits = 0;
  for (std::size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9' || ++digits > 5) return false;
    p = p * 10 + static_cast<std::uint32_t>(s[i] - '0');
  }
  if (digits == 0 || p == 0 || p > 65535) return false;
  ip = (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3];
  port = static_cast<std::uint16_t>(p);
  return true;
}

class GroupStage final : public Stage {
 public:
  ~GroupStage() override {
    for (Msg& m : msgs_) {
      if (m.p != nullptr) m.p->release();
    }
    if (batch_ != nullptr) batch_->release();
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    env_ = env;
    sequencer_name_ = params.get_string("sequencer", "");
    const std::string net = params.get_string("network_sequencer", "");
    if (!net.empty()) {
      if (!parse_ip_port(net, net_ip_, net_port_)) {
        errors.push_back("parameter 'network_sequencer' must be \"a.b.c.d:port\", got \"" + net + "\"");
      }
      network_ = true;
    }
    reliable_ = params.get_bool("reliable", false);
    const std::int64_t hold_us = params.get_int("hold_us", 50000);
    if (hold_us < 1 || hold_us > 3'600'000'000) {
      errors.push_back("parameter 'hold_us' must be in 1..3600000000 (one hour), got " + std::to_string(hold_us));
    }
    const std::int64_t window = params.get_int("window", 4096);
    if (window < 1 || window > (1 << 20)) {
      errors.push_back("parameter 'window' must be in 1..1048576, got " + std::to_string(window));
    }
    const std::int64_t flush_us = params.get_int("flush_us", 100);
    if (flush_us < 0 || flush_us > 1'000'000) {
      errors.push_back("parameter 'flush_us' must be in 0..1000000, got " + std::to_string(flush_us));
    }
    if (!errors.empty()) return false;
    hold_ns_ = static_cast<std::uint64_t>(hold_us) * 1000;
    flush_ns_ = static_cast<std::uint64_t>(flush_us) * 1000;
    window_ = static_cast<std::uint32_t>(window);

    // Everything is sized here; the hot path never allocates.
    ring_.assign(window_, kNone);
    msgs_.resize(network_ ? 0 : std::size_t{window_} * 2);
    free_.reserve(msgs_.size());
    for (std::size_t i = msgs_.size(); i > 0; --i) free_.push_back(static_cast<std::uint32_t>(i - 1));
    std::uint32_t cap = 1;
    while (cap < 4 * std::max<std::size_t>(msgs_.size(), 1)) cap <<= 1;
    table_.assign(network_ ? 0 : cap, kNone);
    table_mask_ = cap - 1;
    net_ring_.assign(network_ ? window_ : 0, nullptr);
    senders_.resize(kMaxSenders);
    const std::uint32_t room = env.max_payload_bytes > 64 ? env.max_payload_bytes - 64 : kEntryBytes;
    batch_max_ = std::clamp<std::uint32_t>(room / kEntryBytes, 1, kMaxBatchEntries);
    return true;
  }

  void on_start(StageIo& io) noexcept override {
    if (!network_) refresh_view(io);
  }

  void on_stop(StageIo& io) noexcept override {
    if (batch_n_ > 0) flush_batch(io);
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data) {
      io.down(p);
      return;
    }
    // ordering.seq below numbers every data packet from 1, unordered ones too.
    const std::uint64_t seq = ++own_seq_;
    if ((p->flags & wire::kFlagUnordered) != 0) {
      io.down(p);
      if (!network_) note_unordered(env_.sender, env_.epoch, seq, io);
      return;
    }
    if (network_) {
      p->dst_ip = net_ip_;
      p->dst_port = net_port_;
      io.down(p);
      return;
    }
    refresh_view(io);
    Packet* own = io.clone(*p);
    io.down(p);
    if (own == nullptr) {
      io.count(full_drops);
      return;
    }
    own->sender = env_.sender;
    own->epoch = env_.epoch;
    own->seq = seq;
    own->channel = env_.channel;
    store_data(own, io);
    rearm(io);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (p->kind == wire::Kind::control && p->ext(wire::Ext::order) != nullptr) {
      if (!network_) refresh_view(io);
      on_announcement(p, io);
      rearm(io);
      return;
    }
    if (p->kind != wire::Kind::data) {
      io.up(p);
      return;
    }
    if ((p->flags & wire::kFlagUnordered) != 0) {
      io.count(unordered_passed);
      if (!network_ && p->seq != 0) note_unordered(p->sender, p->epoch, p->seq, io);
      io.up(p);
      return;
    }
    if (network_) {
      receive_stamped(p, io);
      rearm(io);
      return;
    }
    if (p->seq == 0) {
      io.count(no_seq);
      io.drop(p, DropReason::malformed);
      return;
    }
    refresh_view(io);
    store_data(p, io);
    rearm(io);
  }

  void on_tick(StageIo& io) noexcept override {
    armed_ns_ = 0;
    const std::uint64_t now = io.now_ns();
    if (!network_) refresh_view(io);
    if (flush_at_ != 0 && flush_at_ <= now) flush_batch(io);
    if (!reliable_ && gap_at_ != 0 && gap_at_ <= now) skip_gap(io);
    if (!reliable_ && wait_at_ != 0 && wait_at_ <= now) sequencer_give_up(io);
    if (!reliable_ && expire_at_ != 0 && expire_at_ <= now) expire_unannounced(io);
    rearm(io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override {
    return held_ + (batch_ != nullptr ? 1 : 0);
  }

 private:
  // --- view and sequencer --------------------------------------------------------------

  // Recompute who sequences when the view changed (one integer compare on the hot path).
  void refresh_view(StageIo& io) noexcept {
    Group& g = io.group();
    if (g.view_id() == view_id_) return;
    view_id_ = g.view_id();
    int best = kNoSlot;
    if (!sequencer_name_.empty()) {
      best = g.slot_of_name(sequencer_name_);
    } else {
      for (std::size_t i = 0; i < g.slots(); ++i) {
        const MemberInfo& m = g.member(static_cast<int>(i));
        if (i != 0 && m.state != MemberState::alive && m.state != MemberState::expected) continue;
        if (best == kNoSlot || m.name < g.member(best).name) best = static_cast<int>(i);
      }
    }
    const bool was_me = i_sequence_;
    seq_slot_ = best;
    i_sequence_ = best == g.self_slot();
    if (i_sequence_ && !was_me) become_sequencer(io);
    if (!i_sequence_ && was_me) {
      if (batch_n_ > 0) flush_batch(io);
    }
    if (!i_sequence_ && best != kNoSlot) {
      const MemberInfo& m = g.member(best);
      // A view that knows the sequencer's incarnation and says the one we follow is gone.
      if (m.sender != 0 && term_sender_ != 0 && (m.sender != term_sender_ || m.epoch != term_epoch_)) {
        change_term(0, 0, io);
      }
    }
  }

  void become_sequencer(StageIo& io) noexcept {
    // A new term with ourselves as its sequencer: numbers start at 1 again.
    change_term(env_.sender, env_.epoch, io);
    next_assign_ = 1;
    // Per-sender ordering continues after what this member already delivered.
    for (SenderState& s : senders_) {
      if (s.used) s.order_next = s.done_seq + 1;
    }
    for (std::uint32_t i = 0; i < msgs_.size(); ++i) {
      if (msgs_[i].used && msgs_[i].p != nullptr) try_order(find_sender(msgs_[i].sender, msgs_[i].epoch, io), io);
    }
  }

  // Follow a new term: deliver what the old one holds, in order, skipping its gaps.
  void change_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
    if (sender == term_sender_ && epoch == term_epoch_) return;
    if (term_sender_ != 0 || term_epoch_ != 0) {
      drain_term(io);
      io.count(term_changes);
      io.notify(Event{.type = EventType::sequencer_changed, .sender = sender, .epoch = epoch, .stage = kKind});
    }
    term_sender_ = sender;
    term_epoch_ = epoch;
    next_g_ = 1;
    max_known_g_ = 0;
    gap_at_ = 0;
  }

  void drain_term(StageIo& io) noexcept {
    while (next_g_ <= max_known_g_) {
      if (!deliverable(next_g_)) {
        skip_run(io);
      } else {
        deliver_ready(io);
      }
    }
    // Announced entries whose data never came belong to the old term: forget them.
    for (std::uint32_t i = 0; i < msgs_.size(); ++i) {
      if (msgs_[i].used && msgs_[i].g != 0) {
        msgs_[i].g = 0;
        if (msgs_[i].p == nullptr) erase(i);
      }
    }
    std::fill(ring_.begin(), ring_.end(), kNone);
  }

  // --- member sequencer: data ---------------------------------------------------------

  void store_data(Packet* p, StageIo& io) noexcept {
    const std::uint32_t s = find_sender(p->sender, p->epoch, io);
    if (s != kNone && p->seq <= senders_[s].done_seq) {
      io.count(stale);
      io.drop(p, DropReason::stale);
      return;
    }
    std::uint32_t idx = lookup(p->sender, p->epoch, p->seq);
    if (i_sequence_ && s != kNone && senders_[s].order_next != 0 && p->seq < senders_[s].order_next &&
        (idx == kNone || msgs_[idx].p == nullptr)) {
      // Behind what we already ordered of this sender: we gave up on it (unreliable).
      io.count(stale);
      io.drop(p, DropReason::stale);
      return;
    }
    if (idx != kNone) {
      if (msgs_[idx].p != nullptr) {
        io.count(duplicates);
        io.drop(p, DropReason::duplicate);
        return;
      }
      msgs_[idx].p = p;
      ++held_;
    } else {
      idx = insert(p->sender, p->epoch, p->seq, io.now_ns());
      if (idx == kNone) {
        io.count(full_drops);
        io.drop(p, DropReason::buffer_full);
        return;
      }
      msgs_[idx].p = p;
      ++held_;
      if (!reliable_ && expire_at_ == 0) expire_at_ = io.now_ns() + 4 * hold_ns_;
    }
    if (i_sequence_ && s != kNone) {
      SenderState& st = senders_[s];
      if (st.order_next == 0) {
        // First sight: a small number means we may have seen the sender's start.
        st.order_next = std::max<std::uint64_t>(st.done_seq + 1, p->seq <= 64 ? 1 : p->seq);
      }
      if (p->seq > st.max_seen) st.max_seen = p->seq;
      try_order(s, io);
    }
    deliver_ready(io);
  }

  // Sequencer: ordering.seq numbers unordered messages too, so their numbers are holes in
  // the sender's ordered stream; remember them so per-sender ordering steps over them.
  void note_unordered(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, StageIo& io) noexcept {
    refresh_view(io);
    if (!i_sequence_) return;
    const std::uint32_t s = find_sender(sender, epoch, io);
    if (s == kNone) return;
    SenderState& st = senders_[s];
    if (st.order_next != 0 && seq < st.order_next) return;
    if (lookup(sender, epoch, seq) != kNone) return;
    const std::uint32_t idx = insert(sender, epoch, seq, io.now_ns());
    if (idx == kNone) return;
    msgs_[idx].unordered = true;
    if (st.order_next == 0) st.order_next = std::max<std::uint64_t>(st.done_seq + 1, seq <= 64 ? 1 : seq);
    if (seq > st.max_seen) st.max_seen = seq;
    try_order(s, io);
    deliver_ready(io);
    rearm(io);
  }

  // Sequencer: give every message of sender `s` that is next in its per-sender order a
  // global number.
  void try_order(std::uint32_t s, StageIo& io) noexcept {
    if (s == kNone) return;
    SenderState& st = senders_[s];
    if (st.order_next == 0) return;
    bool progressed = false;
    for (;;) {
      const std::uint32_t idx = lookup(st.id, st.epoch, st.order_next);
      if (idx != kNone && msgs_[idx].unordered) {
        erase(idx);
        ++st.order_next;
        progressed = true;
        continue;
      }
      if (idx == kNone || msgs_[idx].p == nullptr || msgs_[idx].g != 0) break;
      const std::uint64_t g = next_assign_++;
      place(idx, g, io);
      add_to_batch(st.id, st.epoch, st.order_next, g, io);
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
  }

  // Sequencer, unreliable: a sender's next message has been missing for hold_us; order
  // from its earliest waiting one instead (the missing ones will never be ordered).
  void sequencer_give_up(StageIo& io) noexcept {
    wait_at_ = 0;
    if (!i_sequence_) return;
    const std::uint64_t now = io.now_ns();
    for (std::uint32_t s = 0; s < senders_.size(); ++s) {
      SenderState& st = senders_[s];
      if (!st.used || st.wait_since_ns == 0) continue;
      if (st.wait_since_ns + hold_ns_ <= now) {
        std::uint64_t first = 0;
        for (const Msg& m : msgs_) {
          if (m.used && (m.p != nullptr || m.unordered) && m.g == 0 && m.sender == st.id && m.epoch == st.epoch &&
              m.seq > st.order_next && (first == 0 || m.seq < first)) {
            first = m.seq;
          }
        }
        st.wait_since_ns = 0;
        if (first != 0) {
          st.order_next = first;
          try_order(s, io);
        } else {
          st.max_seen = st.order_next - 1;  // what waited was dropped meanwhile
        }
      }
      if (st.wait_since_ns != 0 && (wait_at_ == 0 || st.wait_since_ns + hold_ns_ < wait_at_)) {
        wait_at_ = st.wait_since_ns + hold_ns_;
      }
    }
    deliver_ready(io);
  }

  // Put message `idx` at global number g of the current term.
  void place(std::uint32_t idx, std::uint64_t g, StageIo& io) noexcept {
    if (g >= next_g_ + window_) overflow_to(g - window_ + 1, io);
    msgs_[idx].g = g;
    ring_[g % window_] = idx;
    if (g > max_known_g_) max_known_g_ = g;
  }

  // --- member sequencer: announcements ------------------------------------------------

  void add_to_batch(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t g,
                    StageIo& io) noexcept {
    if (batch_ == nullptr) {
      batch_ = io.alloc();
      if (batch_ == nullptr) {
        io.count(full_drops);
        return;  // members will see a gap (unreliable) — nothing else we can do
      }
      batch_->reset_for_send(batch_max_ * kEntryBytes);
      batch_n_ = 0;
      flush_at_ = std::max<std::uint64_t>(1, io.now_ns() + flush_ns_);  // 0 means "none"
    }
    std::uint8_t* e = batch_->payload() + std::size_t{batch_n_} * kEntryBytes;
    wire::put_u32(e, sender);
    wire::put_u32(e + 4, epoch);
    wire::put_u64(e + 8, seq);
    wire::put_u64(e + 16, g);
    if (++batch_n_ == batch_max_) flush_batch(io);
  }

  void flush_batch(StageIo& io) noexcept {
    flush_at_ = 0;
    Packet* p = batch_;
    batch_ = nullptr;
    if (p == nullptr) return;
    const std::uint32_t n = batch_n_;
    batch_n_ = 0;
    p->payload_len = n * kEntryBytes;
    p->len = p->payload_len;
    p->kind = wire::Kind::control;
    p->flags = reliable_ ? wire::kFlagReliable : 0;
    p->channel = env_.channel;
    p->sender = env_.sender;
    p->epoch = env_.epoch;
    std::uint8_t* body = p->push_ext(wire::Ext::order, kOrderBodyBytes);
    if (body == nullptr || n == 0) {
      p->release();
      return;
    }
    wire::put_u32(body, n);
    io.count(announcements_sent);
    io.down(p);
  }

  void on_announcement(Packet* p, StageIo& io) noexcept {
    std::uint8_t blen = 0;
    const std::uint8_t* body = p->ext(wire::Ext::order, &blen);
    if (network_ || body == nullptr || blen != kOrderBodyBytes) {
      io.drop(p, DropReason::malformed);
      return;
    }
    const std::uint32_t n = wire::get_u32(body);
    if (p->payload_len != std::uint64_t{n} * kEntryBytes) {
      io.drop(p, DropReason::malformed);
      return;
    }
    if (!accept_term(p->sender, p->epoch, io)) {
      io.count(foreign_announcements);
      io.drop(p, DropReason::not_in_view);
      return;
    }
    io.count(announcements_received);
    const std::uint8_t* e = p->payload();
    for (std::uint32_t i = 0; i < n; ++i, e += kEntryBytes) {
      const std::uint32_t sender = wire::get_u32(e);
      const std::uint32_t epoch = wire::get_u32(e + 4);
      const std::uint64_t seq = wire::get_u64(e + 8);
      const std::uint64_t g = wire::get_u64(e + 16);
      if (g < next_g_ || seq == 0 || g == 0) continue;  // old news or nonsense
      if (g < next_g_ + window_ && ring_[g % window_] != kNone) continue;  // duplicate
      std::uint32_t idx = lookup(sender, epoch, seq);
      if (idx != kNone && msgs_[idx].g != 0) continue;  // already placed
      if (idx == kNone) {
        const std::uint32_t s = find_sender(sender, epoch, io);
        if (s != kNone && seq <= senders_[s].done_seq) continue;
        idx = insert(sender, epoch, seq, io.now_ns());
        if (idx == kNone) {
          io.count(full_drops);
          continue;  // a gap; skipped (unreliable) like a lost announcement
        }
      }
      place(idx, g, io);
    }
    p->release();  // consumed: announcements are this stage's own traffic
    deliver_ready(io);
  }

  // Whether announcements from (sender, epoch) belong to the term we follow.
  bool accept_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
    if (sender == term_sender_ && epoch == term_epoch_) return !i_sequence_;
    if (i_sequence_ || seq_slot_ == kNoSlot) return false;
    const MemberInfo& m = io.group().member(seq_slot_);
    if (m.sender != 0) {
      if (m.sender != sender || m.epoch != epoch) return false;
    } else if (term_sender_ != 0 && term_sender_ != sender) {
      // The view does not know the sequencer's id (no membership stage): follow the first
      // announcer, and a restart of it (new epoch), but no one else.
      return false;
    }
    change_term(sender, epoch, io);
    return true;
  }

  // --- delivery -----------------------------------------------------------------------

  [[nodiscard]] bool deliverable(std::uint64_t g) const noexcept {
    if (network_) return net_ring_[g % window_] != nullptr;
    const std::uint32_t idx = ring_[g % window_];
    return idx != kNone && msgs_[idx].g == g && msgs_[idx].p != nullptr;
  }

  void deliver_ready(StageIo& io) noexcept {
    if (network_) {
      deliver_net(io);
      return;
    }
    while (deliverable(next_g_)) {
      const std::uint32_t idx = ring_[next_g_ % window_];
      ring_[next_g_ % window_] = kNone;
      Msg& m = msgs_[idx];
      Packet* p = m.p;
      m.p = nullptr;
      --held_;
      mark_done(m.sender, m.epoch, m.seq, io);
      const bool own = m.sender == env_.sender && m.epoch == env_.epoch;
      erase(idx);
      ++next_g_;
      io.count(delivered);
      if (own) io.count(own_delivered);
      io.up(p);
    }
    note_gap_state(io);
  }

  void mark_done(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, StageIo& io) noexcept {
    const std::uint32_t s = find_sender(sender, epoch, io);
    if (s != kNone && seq > senders_[s].done_seq) senders_[s].done_seq = seq;
  }

  // Arm (or clear) the gap timer: stuck when something later than next_g_ is known.
  void note_gap_state(StageIo& io) noexcept {
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

  // Unreliable: the gap at next_g_ stayed open hold_us; skip the run of undeliverable
  // numbers up to the next deliverable one, then deliver.
  void skip_gap(StageIo& io) noexcept {
    gap_at_ = 0;
    gap_g_ = 0;
    if (max_known_g_ < next_g_) return;
    skip_run(io);
    deliver_ready(io);
  }

  void skip_run(StageIo& io) noexcept {
    const std::uint64_t from = next_g_;
    while (next_g_ <= max_known_g_ && !deliverable(next_g_)) {
      if (!network_) {  // network mode holds nothing at an undeliverable number
        const std::uint32_t idx = ring_[next_g_ % window_];
        if (idx != kNone && msgs_[idx].g == next_g_) {
          const Msg& m = msgs_[idx];
          mark_done(m.sender, m.epoch, m.seq, io);
          erase(idx);  // announced, data never came
        }
        ring_[next_g_ % window_] = kNone;
      }
      ++next_g_;
    }
    report_gap(from, next_g_ - from, io);
  }

  void report_gap(std::uint64_t from, std::uint64_t count, StageIo& io) noexcept {
    if (count == 0) return;
    io.count(gaps_skipped);
    io.count(seqs_skipped, count);
    io.notify(Event{.type = EventType::gap_skipped,
                    .sender = term_sender_,
                    .epoch = term_epoch_,
                    .seq = from,
                    .count = count,
                    .stage = kKind});
  }

  // An announcement lies beyond the window: give up on everything before `to`.
  void overflow_to(std::uint64_t to, StageIo& io) noexcept {
    io.count(window_overflows);
    while (next_g_ < to) {
      if (deliverable(next_g_)) {
        deliver_ready(io);
        continue;
      }
      const std::uint64_t save_max = max_known_g_;
      if (max_known_g_ < to - 1) max_known_g_ = to - 1;
      const std::uint64_t from = next_g_;
      while (next_g_ < to && !deliverable(next_g_)) {
        if (!network_) {
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

  // Unreliable: data never announced within 4 * hold_us is dropped and reported.
  void expire_unannounced(StageIo& io) noexcept {
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
      if (i_sequence_) {
        // Ours to order: it waits for its sender's earlier messages (sequencer_give_up).
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
        --held_;
        erase(i);
        continue;
      }
      if (oldest == 0 || m.since_ns < oldest) oldest = m.since_ns;
    }
    // At least hold_us apart: the sequencer's own waiting messages are resolved by
    // sequencer_give_up, and must not make this timer spin.
    if (oldest != 0) expire_at_ = std::max(oldest + limit, now + hold_ns_);
  }

  // --- network sequencer (OUM) ---------------------------------------------------------

  void receive_stamped(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* body = p->ext(wire::Ext::group_seq, &len);
    if (body == nullptr || len != kGroupSeqBytes) {
      io.count(no_stamp);
      io.drop(p, DropReason::unsupported);
      return;
    }
    const std::uint64_t g = wire::get_u64(body);
    const std::uint32_t session = wire::get_u32(body + 8);
    if (g == 0 || session == 0) {
      io.count(no_stamp);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (session != term_epoch_) {
      for (std::size_t i = 0; i < n_retired_; ++i) {
        if (retired_[i] == session) {
          io.count(stale);
          io.drop(p, DropReason::stale_epoch);
          return;
        }
      }
      if (term_epoch_ != 0) {
        retired_[retired_pos_] = term_epoch_;
        retired_pos_ = (retired_pos_ + 1) % kRetiredSessions;
        if (n_retired_ < kRetiredSessions) ++n_retired_;
      }
      change_term(0, session, io);
      // First sight of a session: a small number means we may have seen its start.
      if (g > window_) {
        report_gap(1, g - 1, io);
        next_g_ = g;
      }
    }
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
    deliver_net(io);
  }

  void deliver_net(StageIo& io) noexcept {
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
      const std::uint32_t s = find_sender(p->sender, p->epoch, io);
      if (s != kNone) {
        if (p->seq <= senders_[s].done_seq) {
          io.count(stale);
          io.drop(p, DropReason::stale);
          continue;
        }
        senders_[s].done_seq = p->seq;
      }
      io.count(delivered);
      if (p->sender == env_.sender && p->epoch == env_.epoch) io.count(own_delivered);
      io.up(p);
    }
    note_gap_state(io);
  }

  // --- tables --------------------------------------------------------------------------

  [[nodiscard]] std::uint32_t hash(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept {
    std::uint64_t x = (std::uint64_t{sender} << 32 | epoch) ^ (seq * 0x9E3779B97F4A7C15ull) ^ salt_;
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return static_cast<std::uint32_t>(x) & table_mask_;
  }

  [[nodiscard]] std::uint32_t lookup(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) const noexcept {
    if (table_.empty()) return kNone;
    for (std::uint32_t h = hash(sender, epoch, seq);; h = (h + 1) & table_mask_) {
      const std::uint32_t idx = table_[h];
      if (idx == kNone) return kNone;
      const Msg& m = msgs_[idx];
      if (m.sender == sender && m.epoch == epoch && m.seq == seq) return idx;
    }
  }

  std::uint32_t insert(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t now) noexcept {
    if (free_.empty()) return kNone;
    const std::uint32_t idx = free_.back();
    free_.pop_back();
    Msg& m = msgs_[idx];
    m = Msg{.sender = sender, .epoch = epoch, .seq = seq, .g = 0, .p = nullptr, .since_ns = now, .used = true,
            .unordered = false};
    std::uint32_t h = hash(sender, epoch, seq);
    while (table_[h] != kNone) h = (h + 1) & table_mask_;
    table_[h] = idx;
    return idx;
  }

  void erase(std::uint32_t idx) noexcept {
    Msg& m = msgs_[idx];
    std::uint32_t h = hash(m.sender, m.epoch, m.seq);
    while (table_[h] != idx) h = (h + 1) & table_mask_;
    // Backward-shift deletion: no tombstones, so lookups stay short.
    std::uint32_t hole = h;
    std::uint32_t j = h;
    for (;;) {
      j = (j + 1) & table_mask_;
      if (table_[j] == kNone) break;
      const Msg& o = msgs_[table_[j]];
      const std::uint32_t home = hash(o.sender, o.epoch, o.seq);
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (!stays) {
        table_[hole] = table_[j];
        hole = j;
      }
    }
    table_[hole] = kNone;
    m.used = false;
    m.g = 0;
    free_.push_back(idx);
  }

  // The state of (sender, epoch); the least recently used is replaced when all are taken.
  std::uint32_t find_sender(std::uint32_t id, std::uint32_t epoch, StageIo& io) noexcept {
    (void)io;
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
    SenderState& s = senders_[victim];
    s = SenderState{.id = id, .epoch = epoch, .used = true, .last_use = use_clock_};
    if (i_sequence_) s.order_next = 0;
    return victim;
  }

  // --- timer ---------------------------------------------------------------------------

  void rearm(StageIo& io) noexcept {
    std::uint64_t d = 0;
    for (std::uint64_t x : {flush_at_, reliable_ ? 0 : gap_at_, reliable_ ? 0 : wait_at_,
                            reliable_ ? 0 : expire_at_}) {
      if (x != 0 && (d == 0 || x < d)) d = x;
    }
    if (d == armed_ns_) return;
    armed_ns_ = d;
    if (d == 0) {
      io.cancel_timer();
    } else {
      io.arm_timer(d);
    }
  }

  StageEnv env_;
  std::string sequencer_name_;
  bool network_ = false;
  std::uint32_t net_ip_ = 0;
  std::uint16_t net_port_ = 0;
  bool reliable_ = false;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint64_t flush_ns_ = 100'000;
  std::uint32_t window_ = 4096;
  std::uint64_t salt_ = 0x5bd1e9955bd1e995ull;

  // View.
  std::uint64_t view_id_ = 0;
  int seq_slot_ = kNoSlot;
  bool i_sequence_ = false;

  // Term: the sequencer incarnation (or network session) whose numbers we deliver.
  std::uint32_t term_sender_ = 0;
  std::uint32_t term_epoch_ = 0;
  std::uint64_t next_g_ = 1;
  std::uint64_t max_known_g_ = 0;
  std::uint64_t next_assign_ = 1;
  std::uint32_t retired_[kRetiredSessions] = {};
  std::size_t n_retired_ = 0;
  std::size_t retired_pos_ = 0;

  // Messages.
  std::vector<Msg> msgs_;
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> table_;
  std::uint32_t table_mask_ = 0;
  std::vector<std::uint32_t> ring_;
  std::vector<Packet*> net_ring_;
  std::vector<SenderState> senders_;
  std::uint64_t use_clock_ = 0;
  std::size_t held_ = 0;
  std::uint64_t own_seq_ = 0;

  // Announcement batch (sequencer).
  Packet* batch_ = nullptr;
  std::uint32_t batch_n_ = 0;
  std::uint32_t batch_max_ = 1;

  // Deadlines (0 = none).
  std::uint64_t flush_at_ = 0;
  std::uint64_t gap_at_ = 0;
  std::uint64_t gap_g_ = 0;
  std::uint64_t wait_at_ = 0;
  std::uint64_t expire_at_ = 0;
  std::uint64_t armed_ns_ = 0;
};

}  // namespace

void register_ordering_group(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Group ordering: a sequencer (a member, or the network) assigns a global order every member "
                  "delivers in, its own messages included.",
      .notes =
          "Needs ordering.seq below (messages are named by sender, epoch and per-sender number). Member "
          "sequencer: the sequencer orders each sender's messages in per-sender order, in arrival order across "
          "senders, and multicasts batched announcements (control packets with extension `order`, body u32 "
          "count; payload entries {u32 sender, u32 epoch, u64 seq, u64 global}, 24 bytes each, flagged "
          "reliable when `reliable` is set). Members deliver by global number, their own messages from a clone "
          "kept at send. Network sequencer (`network_sequencer` set, the paper's OUM): data is unicast to "
          "tmc-sequencer, which multicasts it with extension `group_seq` (u64 global, u32 session; 14 bytes); a "
          "new session means the sequencer restarted: what is held is delivered, `sequencer_changed` raised. "
          "Unreliable: a gap open for `hold_us` is skipped and reported (`gap_skipped`, in global numbers, "
          "sender/epoch naming the term), data never announced within 4 x hold_us is dropped and reported "
          "(`gap_skipped` with its own sender/epoch/seq); no two members deliver two messages in different "
          "relative orders while they follow the same sequencer term. Reliable: nothing is skipped by time; with "
          "no sequencer failure every member delivers the same sequence. Data flagged unordered is delivered "
          "at once. A sequencer change starts a new term (old term drained in order, gaps skipped); agreement "
          "on the old term's tail at failover is not implemented.",
      .params = {{"sequencer", ParamType::string, "",
                  "Member name of the sequencer; empty: the smallest name among this member and the view's alive "
                  "or expected members."},
                 {"network_sequencer", ParamType::string, "",
                  "\"ip:port\" of an in-network sequencer (tmc-sequencer); empty: a member sequences."},
                 {"reliable", ParamType::boolean, "false",
                  "reliability.arq sits below: announcements are flagged reliable and gaps never skipped by time."},
                 {"hold_us", ParamType::integer, "50000",
                  "Unreliable: how long a gap in the global order may stay open before it is skipped, in us."},
                 {"window", ParamType::integer, "4096",
                  "Global numbers held ahead of the next to deliver (2 x window messages may wait for order)."},
                 {"flush_us", ParamType::integer, "100",
                  "Sequencer: longest an order entry waits to share an announcement, in us."}},
      .counters = {{"ordering.group_delivered", "messages delivered in global order"},
                   {"ordering.group_own_delivered", "of those, this member's own messages"},
                   {"ordering.group_unordered", "data flagged unordered, delivered at once"},
                   {"ordering.group_assigned", "sequencer: global numbers assigned"},
                   {"ordering.group_announcements_sent", "sequencer: announcement packets sent"},
                   {"ordering.group_announcements_received", "announcement packets accepted"},
                   {"ordering.group_gaps_skipped", "gaps in the global order skipped (gap_skipped events)"},
                   {"ordering.group_seqs_skipped", "global numbers skipped"},
                   {"ordering.group_unannounced_dropped", "data never announced within 4 x hold_us, dropped"},
                   {"ordering.group_duplicates", "duplicate data or stamps dropped"},
                   {"ordering.group_stale", "data already passed in the order, or of a retired session"},
                   {"ordering.group_foreign_announcements", "announcements from a member that is not our sequencer"},
                   {"ordering.group_window_overflows", "numbers beyond the window forced a skip"},
                   {"ordering.group_full", "messages dropped: the hold table or pool was full"},
                   {"ordering.group_term_changes", "sequencer changes followed (sequencer_changed events)"},
                   {"ordering.group_no_seq", "data without a per-sender number (ordering.seq missing below)"},
                   {"ordering.group_no_stamp", "network mode: data without a valid group_seq stamp"}},
      .factory = [] { return std::make_unique<GroupStage>(); },
  });
}

}  // namespace tmc
