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
//   reliable (bool, false)          reliability.arq (ack from all) and membership.heartbeat
//                                   sit below: stability-based delivery and sequencer
//                                   failover with agreement (below); nothing is skipped by time
//   hold_us (int, 50000)            unreliable: how long a gap in the global order may stay
//                                   open before it is skipped (gap_skipped event)
//   window (int, 4096)              global sequence numbers held ahead of the next to deliver;
//                                   2 * window messages may wait for their order
//   flush_us (int, 100)             the sequencer sends its batched announcements at most
//                                   this long after the first entry of a batch (reliable
//                                   mode sends them sooner: from the tick after the input
//                                   batch that produced them, see below)
// Wire
//   Member sequencer, unreliable: announcements are Kind::control packets with Ext::order
//   (body 4 bytes: u32 entry count) and a payload of entries {u32 sender, u32 epoch, u64 seq,
//   u64 global} (24 bytes each, big-endian). Global numbers start at 1 per sequencer
//   incarnation; a member follows one sequencer (sender, epoch) at a time — its "term".
//   Member sequencer, reliable: typed Ext::order bodies (announce with a term number,
//   status, term start, re-sent message); layouts in group/wire.hpp and docs/wire-format.md.
//   Network sequencer: data is unicast to network_sequencer, which multicasts it with
//   Ext::group_seq (u64 global, u32 session; session random per sequencer start).
// Notes
//   Messages are named by (sender, epoch, Packet::seq); ordering.seq must sit below. The
//   member sequencer orders each sender's messages in their per-sender order (it waits for
//   a missing one; unreliable mode gives up after hold_us), so the total order extends FIFO.
//   Data flagged wire::kFlagUnordered bypasses total order and is delivered at once.
//   Self-delivery: the stage keeps a clone of each ordered message it sends and delivers it
//   when its global number comes (member sequencer, and network mode with reliability,
//   where the stamped copy says where); in unreliable network mode the stamped copy comes
//   back from the sequencer (the pipeline lets own packets carrying Ext::group_seq through)
//   and is delivered in its place. The clone's number is predicted by counting data packets
//   on the way down: ordering.seq numbers every data packet it passes, starting at 1.
//   Network mode, reliable: the member also keeps a second clone until the stamped copy
//   comes back, and sends it to the sequencer again (with backoff) when it does not, so
//   that the sequencer multicasts it again with the same number (see "our own stamped
//   copies"). Delivery is stable delivery as with a member sequencer, and when the network
//   sequencer restarts or goes silent the members cut its term with agreement and fail
//   over to a member sequencer for good (see receive_stamped_rel()).
//
//   Gap events (gap_skipped) of this stage are in global numbers: sender/epoch name the
//   term (sequencer sender id and epoch, or 0 and the session in network mode), seq the
//   first global number skipped, count how many. A data message that reached a member but
//   was never announced (its announcement lost, or the sequencer never got it) is dropped
//   after 4 * hold_us and reported as gap_skipped with its own sender, epoch and seq
//   (count 1). Reliable mode never skips by time.
//
//   Sequencer changes, unreliable modes: a member follows a new term when the
//   view names a new sequencer (or a network sequencer starts a new session); what it holds
//   of the old term is delivered in order with gaps skipped and reported, and
//   sequencer_changed is raised.
//
//   Reliable mode (virtual-synchrony style flush, see the block above rel_refresh()): a
//   member delivers global g of its term only once g is stable — it and every receiver of
//   its view hold announcement and data for every global <= g, as their status packets say.
//   When the view loses the sequencer (or any receiver), the term is frozen; the view's
//   sequencer collects every receiver's frozen status, cuts the old term at E = the least
//   held_through (>= anything anyone delivered), and starts a new term with a reliable term
//   start carrying the cut and the per-sender cut-offs; members deliver the old term to E,
//   and the new sequencer re-sequences everything else from alive senders. Survivors that
//   stay connected deliver identical sequences; messages of a failed sender beyond the cut
//   are dropped. Members re-send their own undelivered messages after a view change
//   (reliability gives a message up when a member of its ack set fails). Reliable mode
//   needs the view's identities (membership.heartbeat below): a member never heard blocks
//   delivery until it is heard or declared failed.
//
//   Reliable mode, latency and load. Stable delivery costs three one-way hops (data to
//   everyone, the announcement, every member's status), so nothing on that path waits for a
//   timer: the sequencer's announcement batch and a member's status both leave from a tick
//   armed for "now", which a shell runs once it has fed the input batch in hand (the entries
//   and holdings that batch advanced share one packet; under load batches grow, packets per
//   message shrink). A deadline even 50 us ahead would cost a whole timer period in a shell
//   with millisecond timers (libuv), and a status left to the periodic one (every 10 ms
//   while something is unstable; it repairs lost statuses) made the median latency half
//   that period. A member sends a status when its held_through moves, or its delivered
//   point moved by a quarter window (the sequencer's window check needs no more); the
//   running sequencer sends none for its holdings: an announcement up to g tells the members
//   it holds every global <= g. Each member keeps a copy of its ordered messages until it
//   delivers them, in a hold table (2 x window) that every member's messages share: past
//   window / 8 undelivered copies of its own, further messages are send backlog
//   (send_backlog(): the shell holds the application back), so one fast sender cannot fill
//   the tables, where a dropped message (already acknowledged by reliability) would stall
//   stable delivery for good; if the table or the pool is full anyway, the message is not
//   sent at all. max_held_packets() tells the shell to size its pool for the full table.
#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "primitives/ordering/group/member_sequencer.hpp"
#include "primitives/ordering/group/network_sequencer.hpp"
#include "primitives/ordering/group/table.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

using namespace detail::group_order;

// Reliable mode: the status period while something is unstable or a failover is pending.
constexpr std::uint64_t kStatusPeriodNs = 10'000'000;
// Reliable mode: the least spacing of two statuses sent to repair a peer's stale view.
constexpr std::uint64_t kStatusRepairNs = 2'000'000;

enum class Role : std::uint8_t { follower, collecting, adopting, running };

struct PeerStatus {
  bool have = false;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  gw::Status st;
  gw::Cutoff cutoffs[gw::kMaxCutoffs];  ///< from its last frozen status (st.n_cutoffs)
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

class GroupStage final : public Stage, private MemberSequencer::AnnounceSink {
 public:

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    env_ = env;
    sequencer_name_ = params.get_string("sequencer", "");
    const std::string net = params.get_string("network_sequencer", "");
    std::uint32_t net_ip = 0;
    std::uint16_t net_port = 0;
    if (!net.empty()) {
      if (!parse_ip_port(net, net_ip, net_port)) {
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
    table_.configure(env, net_unrel() ? 0 : std::size_t{window_} * 2, window_, reliable_, net_unrel(), hold_ns_);
    seq_.configure(env, reliable_, hold_ns_, flush_ns_, *this);
    net_.configure(env, net_ip, net_port, reliable_, net_rel() ? window_ : 0);
    peers_.resize(kMaxGroupMembers);
    return true;
  }

  void on_start(StageIo& io) noexcept override {
    if (rel()) note_status_change(io);  // announce our (empty) state: the first term needs it
    if (!net_unrel()) refresh_view(io);
    if (rel()) rearm(io);
  }

  void on_stop(StageIo& io) noexcept override {
    if (seq_.batching()) seq_.flush(io);
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
      if (!net_unrel()) note_unordered(env_.sender, env_.epoch, seq, io);
      return;
    }
    if (net_unrel()) {
      net_.address(*p);
      io.down(p);
      return;
    }
    refresh_view(io);
    Packet* own = io.clone(*p);
    if (rel() && (own == nullptr || table_.full())) {
      // Reliable mode: a message we do not hold can never become stable, and every member
      // would wait for it for good; not sending it at all is the lesser harm (send_backlog
      // holds the application back long before this). Its number is not spent: ordering.seq
      // below never sees it.
      if (own != nullptr) own->release();
      --own_seq_;
      io.count(full_drops);
      io.drop(p, own == nullptr ? DropReason::pool_exhausted : DropReason::buffer_full);
      return;
    }
    if (net_active()) {
      // To the network sequencer, which multicasts it stamped; the clone kept below is
      // delivered when its stamped copy says where, and keep_own() asks again for a copy
      // that does not come back.
      net_.address(*p);
      net_.keep_own(*p, seq, io);
    }
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
      if (!net_unrel()) refresh_view(io);
      if (rel()) {
        on_order_reliable(p, io);
      } else {
        on_announcement(p, io);
      }
      rearm(io);
      return;
    }
    if (p->kind != wire::Kind::data) {
      io.up(p);
      return;
    }
    if ((p->flags & wire::kFlagUnordered) != 0) {
      io.count(unordered_passed);
      if (!net_unrel() && p->seq != 0) note_unordered(p->sender, p->epoch, p->seq, io);
      io.up(p);
      return;
    }
    if (net_unrel()) {
      receive_stamped(p, io);
      rearm(io);
      return;
    }
    if (network_ && p->ext(wire::Ext::group_seq) != nullptr) {
      refresh_view(io);
      receive_stamped_rel(p, io);
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
    if (!net_unrel()) refresh_view(io);
    if (seq_.flush_at() != 0 && seq_.flush_at() <= now) seq_.flush(io);
    if (rel()) {
      if ((status_due_ != 0 && status_due_ <= now) ||
          (need_periodic() && last_status_ns_ + kStatusPeriodNs <= now)) {
        send_status(io);
      }
      rel_check(io);
    }
    if (!reliable_ && table_.gap_at() != 0 && table_.gap_at() <= now) table_.skip_gap(io);
    if (!reliable_ && seq_.wait_at() != 0 && seq_.wait_at() <= now) {
      seq_.clear_wait();
      if (i_sequence_) seq_.give_up_waits(table_, io);
    }
    if (!reliable_ && table_.expire_at() != 0 && table_.expire_at() <= now) table_.expire_unannounced(i_sequence_, io);
    if (net_.own_due_ns() != 0 && net_.own_due_ns() <= now && net_.request_restamps(own_seq_, io)) {
      net_fail(io);  // after the requests: a failover releases the copies
    }
    rearm(io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override {
    return table_.held() + net_.own_held() + (seq_.holds_batch() ? 1 : 0);
  }

  // The hold table (2 x window messages, or the window of stamped messages in network
  // mode, plus as many copies of our own messages awaiting their stamped copy when
  // reliable) and the announcement being filled: the pool must have room for all of it,
  // or a full table would starve the receive path of buffers.
  [[nodiscard]] std::size_t max_held_packets() const noexcept override {
    return (net_unrel() ? window_ : table_.capacity() + 1) + net_.own_slots();
  }

  // A member keeps a copy of each of its ordered messages until it delivers it, and the
  // hold table is shared by every member's messages: past an allowance of window / 8
  // copies, further messages count as backlog, so the shell holds the application back
  // (send() blocks or says WOULD_BLOCK) instead of letting one fast sender fill every
  // member's table — a full table drops a message reliability has already acknowledged,
  // which stalls stable delivery for good. Delivery (stability) is what drains it.
  [[nodiscard]] std::size_t send_backlog() const noexcept override {
    const std::size_t allowance = std::max<std::size_t>(window_ / 8, 1);
    return table_.own_held() > allowance ? table_.own_held() - allowance : 0;
  }

 private:
  // --- view and sequencer --------------------------------------------------------------

  // Recompute who sequences when the view changed (one integer compare on the hot path).
  void refresh_view(StageIo& io) noexcept {
    if (rel()) {
      rel_refresh(io);
      return;
    }
    Group& g = io.group();
    if (g.view_id() == view_id_) return;
    view_id_ = g.view_id();
    const int best = choose_sequencer(g);
    const bool was_me = i_sequence_;
    seq_slot_ = best;
    i_sequence_ = best == g.self_slot();
    if (i_sequence_ && !was_me) become_sequencer(io);
    if (!i_sequence_ && was_me) {
      if (seq_.batching()) seq_.flush(io);
    }
    if (!i_sequence_ && best != kNoSlot) {
      const MemberInfo& m = g.member(best);
      // A view that knows the sequencer's incarnation and says the one we follow is gone.
      if (m.sender != 0 && table_.term().sender != 0 && (m.sender != table_.term().sender || m.epoch != table_.term().epoch)) {
        change_term(0, 0, io);
      }
    }
  }

  // The sequencer of this view: the manifest's, or the smallest name among self and the
  // alive or expected members.
  [[nodiscard]] int choose_sequencer(const Group& g) const noexcept {
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
    return best;
  }

  void become_sequencer(StageIo& io) noexcept {
    // A new term with ourselves as its sequencer: numbers start at 1 again.
    change_term(env_.sender, env_.epoch, io);
    // Per-sender ordering continues after what this member already delivered.
    seq_.begin(table_);
    for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
      if (table_.msg(i).used && table_.msg(i).p != nullptr) try_order(table_.find_sender(table_.msg(i).sender, table_.msg(i).epoch), io);
    }
  }

  // Follow a new term: deliver what the old one holds, in order, skipping its gaps.
  void change_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
    if (sender == table_.term().sender && epoch == table_.term().epoch) return;
    if (table_.term().sender != 0 || table_.term().epoch != 0) {
      table_.drain(io);
      io.count(term_changes);
      io.notify(Event{.type = EventType::sequencer_changed, .sender = sender, .epoch = epoch, .stage = kKind});
    }
    table_.begin_term(gw::TermId{table_.term().no, sender, epoch});
  }

  // --- member sequencer: data ---------------------------------------------------------

  void store_data(Packet* p, StageIo& io) noexcept {
    if (rel() && !sender_alive(io.group(), p->sender, p->epoch, /*unknown=*/true)) {
      // The view says its sender failed or left: it will never be ordered (drop_dead).
      io.count(failed_sender_dropped);
      io.drop(p, DropReason::not_in_view);
      return;
    }
    const std::uint32_t s = table_.find_sender(p->sender, p->epoch);
    if (s != kNone && p->seq <= table_.sender(s).done_seq) {
      io.count(stale);
      io.drop(p, DropReason::stale);
      return;
    }
    std::uint32_t idx = table_.lookup(p->sender, p->epoch, p->seq);
    if (orders() && s != kNone && table_.sender(s).order_next != 0 && p->seq < table_.sender(s).order_next &&
        (idx == kNone || table_.msg(idx).p == nullptr)) {
      // Behind what we already ordered of this sender: we gave up on it (unreliable).
      io.count(stale);
      io.drop(p, DropReason::stale);
      return;
    }
    if (idx != kNone) {
      if (table_.msg(idx).p != nullptr) {
        io.count(duplicates);
        io.drop(p, DropReason::duplicate);
        return;
      }
      table_.msg(idx).p = p;
      table_.note_held(table_.msg(idx), +1);
    } else {
      idx = table_.insert(p->sender, p->epoch, p->seq, io.now_ns());
      if (idx == kNone) {
        io.count(full_drops);
        io.drop(p, DropReason::buffer_full);
        return;
      }
      table_.msg(idx).p = p;
      table_.note_held(table_.msg(idx), +1);
      if (!reliable_) table_.arm_expiry(io.now_ns());
    }
    if (orders() && s != kNone) {
      SenderState& st = table_.sender(s);
      if (st.order_next == 0) {
        // First sight: a small number means we may have seen the sender's start. Reliable
        // mode loses nothing, so the sender's order continues right after what we delivered.
        st.order_next = rel() ? st.done_seq + 1 : std::max<std::uint64_t>(st.done_seq + 1, p->seq <= 64 ? 1 : p->seq);
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
    // Reliable mode: every member records the hole, since any member may sequence after a
    // failover (mark_done steps over it once the sender's order reaches it).
    if (!orders() && !rel()) return;
    const std::uint32_t s = table_.find_sender(sender, epoch);
    if (s == kNone) return;
    SenderState& st = table_.sender(s);
    if (st.order_next != 0 && seq < st.order_next) return;
    if (seq <= st.done_seq) return;
    if (table_.lookup(sender, epoch, seq) != kNone) return;
    const std::uint32_t idx = table_.insert(sender, epoch, seq, io.now_ns());
    if (idx == kNone) return;
    table_.msg(idx).unordered = true;
    if (rel() && !orders()) {
      table_.mark_done(sender, epoch, st.done_seq, steps_over_unordered());  // steps over it if it is next
      return;
    }
    if (st.order_next == 0) {
      st.order_next = rel() ? st.done_seq + 1 : std::max<std::uint64_t>(st.done_seq + 1, seq <= 64 ? 1 : seq);
    }
    if (seq > st.max_seen) st.max_seen = seq;
    try_order(s, io);
    deliver_ready(io);
    rearm(io);
  }

  // Sequencer: give every message of sender `s` that is next in its per-sender order a
  // global number.
  void try_order(std::uint32_t s, StageIo& io) noexcept {
    if (s == kNone) return;
    SenderState& st = table_.sender(s);
    if (st.order_next == 0) return;
    // Reliable mode: only a running term orders, and only the messages of senders the view
    // says are alive (a failed sender's messages are left to the next cut).
    if (rel() && (role_ != Role::running || frozen_ || !sender_alive(io.group(), st.id, st.epoch))) return;
    const std::uint64_t limit = rel() ? assign_limit(io) : std::numeric_limits<std::uint64_t>::max();
    if (seq_.order(table_, s, limit, io)) order_blocked_ = true;  // resumed when members report delivery (order_all)
  }

  // --- member sequencer: announcements ------------------------------------------------

  // An announcement we send tells the members that we hold every global it names (we number
  // only messages we hold, in order): it stands for our status (note_sequencer_holds).
  void announced(std::uint32_t term_no, std::uint64_t top) noexcept override {
    if (term_no == table_.term().no && my_term() && !frozen_) sent_held_ = std::max(sent_held_, top);
  }

  void on_announcement(Packet* p, StageIo& io) noexcept {
    std::uint8_t blen = 0;
    const std::uint8_t* body = p->ext(wire::Ext::order, &blen);
    if (network_ || body == nullptr || blen != gw::kLegacyAnnounceBody) {
      io.count(malformed_c);
      io.drop(p, DropReason::malformed);
      return;
    }
    const std::uint32_t n = wire::get_u32(body);
    if (p->payload_len != std::uint64_t{n} * gw::kEntryBytes) {
      io.count(malformed_c);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (!accept_term(p->sender, p->epoch, io)) {
      io.count(foreign_announcements);
      io.drop(p, DropReason::not_in_view);
      return;
    }
    io.count(announcements_received);
    seq_.place_entries(table_, p->payload(), n, io);
    p->release();  // consumed: announcements are this stage's own traffic
    deliver_ready(io);
  }

  // Whether announcements from (sender, epoch) belong to the term we follow.
  bool accept_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
    if (sender == table_.term().sender && epoch == table_.term().epoch) return !i_sequence_;
    if (i_sequence_ || seq_slot_ == kNoSlot) return false;
    const MemberInfo& m = io.group().member(seq_slot_);
    if (m.sender != 0) {
      if (m.sender != sender || m.epoch != epoch) return false;
    } else if (table_.term().sender != 0 && table_.term().sender != sender) {
      // The view does not know the sequencer's id (no membership stage): follow the first
      // announcer, and a restart of it (new epoch), but no one else.
      return false;
    }
    change_term(sender, epoch, io);
    return true;
  }

  // --- delivery -----------------------------------------------------------------------

  void deliver_ready(StageIo& io) noexcept {
    if (rel()) {
      rel_deliver(io);
    } else {
      table_.deliver_in_order(io);
    }
  }

  // --- network sequencer (OUM) ---------------------------------------------------------

  void receive_stamped(Packet* p, StageIo& io) noexcept {
    std::uint64_t g = 0;
    std::uint32_t session = 0;
    if (!net_.read_stamp(p, g, session, io)) return;
    if (session != table_.term().epoch) {
      if (net_.retired(session)) {
        io.count(stale);
        io.drop(p, DropReason::stale_epoch);
        return;
      }
      net_.retire(table_.term().epoch);
      change_term(0, session, io);
      // First sight of a session: a small number means we may have seen its start.
      table_.first_stamp(g, io);
    }
    table_.put_direct(g, p, io);
  }

  [[nodiscard]] bool net_rel() const noexcept { return network_ && reliable_; }
  /// Network mode without reliability: stamped messages are delivered from the direct ring as
  /// they come (NOPaxos-style, gaps skipped).
  [[nodiscard]] bool net_unrel() const noexcept { return network_ && !reliable_; }
  /// Network mode, reliable, still on the network sequencer (no member term adopted yet).
  [[nodiscard]] bool net_active() const noexcept { return network_ && net_.active(); }
  /// Whether this member assigns global numbers itself (a member sequencer); in a network
  /// term the view's chosen member only coordinates the cut when the term ends.
  [[nodiscard]] bool orders() const noexcept { return i_sequence_ && !net_active(); }
  /// Reliable mode, when this member does not order: delivery steps over the unordered
  /// numbers that follow a sender's delivered one (see MsgTable::mark_done).
  [[nodiscard]] bool steps_over_unordered() const noexcept {
    return rel() && !(i_sequence_ && role_ == Role::running);
  }

  // --- network sequencer, reliable: stable delivery and failover to a member -----------
  //
  // The network sequencer's session is a term like a member sequencer's: (term number, 0,
  // session). Every member adopts term (1, 0, S) at the first stamp of session S it sees
  // and holds messages in the same tables as with a member sequencer: a stamp places its
  // message at global g (as an announcement entry would), the data comes in the same
  // datagram, and our own messages are delivered from the clone kept at send. Delivery is
  // stable delivery (every receiver holds g and all before it, per statuses), so that when
  // the network sequencer is lost every member can cut its term at the same point: the
  // view's chosen member collects every receiver's frozen status, cuts at the least held
  // point (at least anything anyone delivered) and starts a member term, exactly as after a
  // member sequencer's failure; everything after the cut is re-sequenced by that member
  // from the data the members hold and re-send, and the group stays on the member sequencer
  // (falling back is one-way: the network sequencer's new session starts no new network
  // term, because its per-sender order would begin wherever each sender's first datagram
  // to it happens to fall).
  //
  // The network term is given up (net_fail) when a stamp of another session arrives (the
  // sequencer restarted and lost its state), when an own message was asked for
  // kRestampFailoverTries times without its stamped copy coming back (the sequencer is gone
  // or cut off from us), when a receiver fails (a message only it held, and whose sender's
  // reliability stops repairing it, could never become stable), or when a peer reports it
  // frozen or another network session.

  void receive_stamped_rel(Packet* p, StageIo& io) noexcept {
    std::uint64_t g = 0;
    std::uint32_t session = 0;
    if (!net_.read_stamp(p, g, session, io)) return;
    if (p->sender == env_.sender && p->epoch == env_.epoch) net_.own_returned(p->seq);
    if (net_active() && !net_.gone() && table_.term().no == 0) {
      adopt(gw::TermId{1, 0, session}, nullptr, 0, nullptr, 0, io);
    }
    if (!net_active() || table_.term().no == 0 || table_.term().sender != 0) {
      // A member sequencer orders now (or is being chosen): the stamp means nothing, but the
      // data may be a message that still waits to be re-sequenced.
      store_data(p, io);
      return;
    }
    if (session != table_.term().epoch) {
      net_fail(io);  // the sequencer restarted: what it stamped before is lost to it
      store_data(p, io);
      return;
    }
    term_heard_ = true;
    net_.place_stamp(table_, p, g, io);
    rel_deliver(io);
  }

  void net_fail(StageIo& io) noexcept {
    if (!net_active() || net_.gone()) return;
    net_.set_gone();
    io.count(net_failovers);
    if (table_.term().no != 0) {
      freeze(io);
    } else {
      note_status_change(io);
    }
    rel_check(io);
  }


  // --- reliable mode: stability, terms and failover with agreement ---------------------
  //
  // A term is (term number, sequencer sender, sequencer epoch); numbers grow across
  // failovers. A member delivers global g of its term only when g is stable: it and every
  // receiver of its view hold announcement and data for every global <= g (status packets
  // report each member's held_through). A member freezes its term — stops delivering it and
  // from then on reports the same held_through — when the term's sequencer is gone from its
  // view, when another member reports the term frozen or a newer term, or (the term's own
  // sequencer) when a receiver fails, leaves or shows up at an older term. The chosen
  // sequencer of a view whose term is frozen collects a frozen status from every receiver,
  // picks a cut E per term the survivors are at (min held_through when all are at one term,
  // or a cut an earlier term start already fixed), starts a new term with a reliable term
  // start carrying those cuts and the per-sender cut-offs, waits until every receiver
  // reports the new term, then orders everything not yet delivered. E is at least every
  // member's delivered point (a member delivers only stable globals, and a frozen member
  // never reports more than it held when it froze) and at most what every survivor holds.

  [[nodiscard]] bool rel() const noexcept { return reliable_; }
  [[nodiscard]] gw::TermId cur_term() const noexcept { return table_.term(); }
  [[nodiscard]] bool my_term() const noexcept {
    return table_.term().no != 0 && table_.term().sender == env_.sender && table_.term().epoch == env_.epoch;
  }

  std::uint64_t held_through() noexcept {
    if (table_.term().no == 0) return 0;
    if (held_h_ < table_.next_g() - 1) held_h_ = table_.next_g() - 1;
    while (held_h_ + 1 < table_.next_g() + window_ && table_.deliverable(held_h_ + 1)) ++held_h_;
    return held_h_;
  }
  std::uint64_t reported_held() noexcept { return frozen_ ? frozen_h_ : held_through(); }

  // The status of the member in `slot`, if it came from its current incarnation.
  [[nodiscard]] const PeerStatus* peer(const Group& g, int slot) const noexcept {
    const PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
    const MemberInfo& m = g.member(slot);
    if (!ps.have || m.sender == 0 || ps.sender != m.sender || ps.epoch != m.epoch) return nullptr;
    return &ps;
  }

  // Whether the view counts (sender, epoch) as alive. A sender the view does not know (no
  // heartbeat heard from it) counts as `unknown`: the sequencer orders only known senders
  // (another member may already have dropped a dead stranger's messages), while a view
  // change keeps a stranger's messages (a newcomer is often heard before its heartbeat).
  [[nodiscard]] bool sender_alive(const Group& g, std::uint32_t sender, std::uint32_t epoch,
                                  bool unknown = false) const noexcept {
    if (sender == env_.sender && epoch == env_.epoch) return true;
    const int slot = g.slot_of_sender(sender);
    if (slot == kNoSlot) return unknown;
    if (slot == g.self_slot()) return false;  // a former incarnation of ourselves
    const MemberInfo& m = g.member(slot);
    if (m.epoch != 0 && m.epoch != epoch) return false;  // a retired incarnation
    return m.state != MemberState::failed && m.state != MemberState::left;
  }

  std::uint64_t stable_through(StageIo& io) noexcept {
    const Group& g = io.group();
    std::uint64_t s = held_through();
    for (MemberMask rx = g.receivers(); rx != 0; rx &= rx - 1) {
      const int slot = __builtin_ctzll(rx);
      const PeerStatus* ps = peer(g, slot);
      if (ps == nullptr || !gw::same_term(ps->st.term, cur_term())) return 0;
      s = std::min(s, ps->st.held);
    }
    return s;
  }

  // Sequencer: the first global it may not assign yet, so that no member receives an entry
  // beyond its window.
  std::uint64_t assign_limit(StageIo& io) noexcept {
    const Group& g = io.group();
    std::uint64_t low = table_.next_g();
    for (MemberMask rx = g.receivers(); rx != 0; rx &= rx - 1) {
      const PeerStatus* ps = peer(g, __builtin_ctzll(rx));
      const std::uint64_t next = ps != nullptr && gw::same_term(ps->st.term, cur_term()) ? ps->st.delivered + 1 : 1;
      low = std::min(low, next);
    }
    return low + window_;
  }

  [[nodiscard]] bool need_periodic() const noexcept {
    // Held messages count too: our timer is then how a view change (the sequencer failed
    // while nothing else moved) is noticed.
    return frozen_ || role_ == Role::collecting || role_ == Role::adopting || !term_heard_ || table_.next_g() <= table_.max_known_g() ||
           table_.held() != 0;
  }

  // Something a peer waits for changed: send a status at once — from the tick that is due
  // now, which a shell runs after the input batch in hand, so that every change one batch
  // of packets makes shares one status. Stability costs one one-way hop on top of the
  // announcement only if this status leaves without delay: a deadline in the future would
  // cost a whole timer period in a shell whose timers count milliseconds (libuv).
  void note_status_change(StageIo& io) noexcept {
    const std::uint64_t at = std::max<std::uint64_t>(io.now_ns(), 1);
    if (status_due_ == 0 || at < status_due_) status_due_ = at;
  }

  void send_status(StageIo& io) noexcept {
    status_due_ = 0;
    last_status_ns_ = io.now_ns();
    Packet* p = io.alloc();
    if (p == nullptr) {
      io.count(full_drops);
      return;
    }
    // A frozen status also says how far this member delivered each sender (the next term
    // start takes the largest: see try_collect).
    std::uint32_t ncut = 0;
    if (frozen_) {
      const std::uint32_t used = 64 + n_adopted_ * gw::kRecordBytes;
      const std::uint32_t room = env_.max_payload_bytes > used ? (env_.max_payload_bytes - used) / gw::kCutoffBytes : 0;
      const std::uint32_t max_cut = std::min<std::uint32_t>(gw::kMaxCutoffs, room);
      for (const SenderState& st : table_.senders()) {
        if (st.used && st.done_seq > 0 && ncut < max_cut) ++ncut;
      }
    }
    p->reset_for_send(n_adopted_ * gw::kRecordBytes + ncut * gw::kCutoffBytes);
    for (std::uint32_t i = 0; i < n_adopted_; ++i) gw::put_record(p->payload() + std::size_t{i} * gw::kRecordBytes, adopted_[i]);
    std::uint32_t k = 0;
    for (const SenderState& st : table_.senders()) {
      if (k >= ncut) break;
      if (!st.used || st.done_seq == 0) continue;
      gw::put_cutoff(p->payload() + std::size_t{n_adopted_} * gw::kRecordBytes + std::size_t{k} * gw::kCutoffBytes,
                     gw::Cutoff{st.id, st.epoch, st.done_seq});
      ++k;
    }
    // Unreliable: the next status repairs a lost one.
    std::uint8_t* body = as_order_control(p, /*reliable=*/false, gw::kStatusBody);
    if (body == nullptr) return;
    gw::Status s;
    s.frozen = frozen_;
    s.term = cur_term();
    s.held = reported_held();
    s.delivered = table_.next_g() - 1;
    s.stable = std::min(last_stable_, s.held);
    s.n_records = n_adopted_;
    s.n_cutoffs = ncut;
    gw::write_status_body(body, s);
    sent_held_ = s.held;
    sent_delivered_ = s.delivered;
    io.count(statuses_sent);
    io.down(p);
  }

  // Make `p` one of this stage's control packets with an Ext::order body of `body_len`
  // bytes; the body to fill, or nullptr (p released) when there was no room.
  std::uint8_t* as_order_control(Packet* p, bool reliable, std::uint8_t body_len) noexcept {
    p->kind = wire::Kind::control;
    p->flags = reliable ? wire::kFlagReliable : 0;
    p->channel = env_.channel;
    p->sender = env_.sender;
    p->epoch = env_.epoch;
    std::uint8_t* body = p->push_ext(wire::Ext::order, body_len);
    if (body == nullptr) p->release();
    return body;
  }

  void freeze(StageIo& io) noexcept {
    if (frozen_) return;
    if (net_active() && table_.term().sender == 0) {
      if (!net_.gone()) io.count(net_failovers);
      net_.set_gone();  // a frozen network term ends in a member term
    }
    if (seq_.batching()) seq_.flush(io);
    frozen_h_ = held_through();
    frozen_ = true;
    note_status_change(io);
  }

  void rel_refresh(StageIo& io) noexcept {
    Group& g = io.group();
    if (g.view_id() != view_id_) {
      view_id_ = g.view_id();
      seq_slot_ = choose_sequencer(g);
      i_sequence_ = seq_slot_ == g.self_slot();
      for (std::size_t i = 0; i < g.slots(); ++i) {
        PeerStatus& ps = peers_[i];
        const MemberInfo& m = g.member(static_cast<int>(i));
        if (ps.have && (ps.sender != m.sender || ps.epoch != m.epoch)) ps.have = false;
      }
      const MemberMask rx = g.receivers();
      const MemberMask lost = prev_rx_ & ~rx;
      prev_rx_ = rx;
      // The term's sequencer re-cuts when a receiver is gone: what only it held can then
      // never become stable, and the cut resolves it.
      if (lost != 0 && (my_term() || (net_active() && table_.term().no != 0))) freeze(io);
      drop_dead(io);
      if (lost != 0) resend_own(io);
      if (role_ == Role::running) order_all(io);  // senders heard for the first time
    }
    rel_check(io);
  }

  // Freeze rules and the sequencer's role; called on every input.
  void rel_check(StageIo& io) noexcept {
    const Group& g = io.group();
    if (table_.term().no != 0 && !frozen_) {
      bool gone = false;
      if (table_.term().sender == 0) {
        gone = net_.gone();  // a network term: see net_fail()
      } else if (my_term()) {
        gone = !i_sequence_;
      } else {
        const int slot = g.slot_of_sender(table_.term().sender);
        if (slot != kNoSlot && slot != g.self_slot()) {
          const MemberInfo& m = g.member(slot);
          gone = (m.epoch != 0 && m.epoch != table_.term().epoch) || m.state == MemberState::failed ||
                 m.state == MemberState::left;
        } else if (slot == kNoSlot && seq_slot_ != kNoSlot) {
          // A sequencer we never heard a heartbeat from (all lost before it crashed): gone
          // once the view names a known member as sequencer instead.
          const MemberInfo& chosen = g.member(seq_slot_);
          gone = chosen.sender != 0 && chosen.sender != table_.term().sender;
        }
      }
      if (gone) freeze(io);
    }
    if (!i_sequence_ || (net_active() && !net_.gone())) {
      role_ = Role::follower;
      return;
    }
    if (!my_term() || frozen_) {
      role_ = Role::collecting;
      try_collect(io);
      return;
    }
    if (role_ == Role::adopting) try_run(io);
  }

  void rel_deliver(StageIo& io) noexcept {
    if (frozen_ || table_.term().no == 0) return;
    const std::uint64_t stable = stable_through(io);
    last_stable_ = stable;
    const std::uint64_t before = table_.next_g();
    while (table_.next_g() <= stable && table_.deliverable(table_.next_g())) table_.deliver_one(io, steps_over_unordered());
    if (net_.pending() > 0 && table_.next_g() != before) {
      net_.place_pending(table_, io);
      const std::uint64_t more = stable_through(io);
      last_stable_ = more;
      while (table_.next_g() <= more && table_.deliverable(table_.next_g())) table_.deliver_one(io, steps_over_unordered());
    }
    // Compared with what our last status said, not with held_h_ on entry: held_through()
    // advances held_h_ wherever it is called (stable_through() above, a status check), and
    // a peer's delivery waits for exactly this news.
    // Delivery alone is news only for the sequencer's window (assign_limit): reported in
    // steps of a quarter window; the statuses that report holdings carry it meanwhile, and
    // a member that holds anything also reports periodically.
    // The running sequencer's holdings go out in its announcements (flush_batch).
    const std::uint64_t told = my_term() && role_ == Role::running ? std::max(sent_held_, seq_.next_assign() - 1) : sent_held_;
    if (held_through() != told || table_.next_g() - 1 >= sent_delivered_ + std::max<std::uint32_t>(window_ / 4, 1)) {
      note_status_change(io);
    }
    if (table_.next_g() != before && order_blocked_ && role_ == Role::running) order_all(io);
  }

  void rel_malformed(Packet* p, StageIo& io) noexcept {
    io.count(malformed_c);
    io.drop(p, DropReason::malformed);
  }

  void on_order_reliable(Packet* p, StageIo& io) noexcept {
    std::uint8_t blen = 0;
    const std::uint8_t* body = p->ext(wire::Ext::order, &blen);
    if (body == nullptr || blen == 0) {
      rel_malformed(p, io);
      return;
    }
    if (blen == gw::kResendBody) {
      on_resend(p, io);
      return;
    }
    if (blen == gw::kLegacyAnnounceBody) {
      // An unreliable-mode sequencer's announcement: not part of our protocol.
      io.count(foreign_announcements);
      io.drop(p, DropReason::not_in_view);
      return;
    }
    switch (body[0]) {
      case gw::kTypeAnnounce: {
        std::uint32_t term_no = 0;
        std::uint32_t count = 0;
        if (!gw::parse_announce(body, blen, p->payload_len, term_no, count)) break;
        on_announce_rel(p, term_no, count, io);
        rel_check(io);
        return;
      }
      case gw::kTypeStatus: {
        gw::Status s;
        if (!gw::parse_status(body, blen, p->payload(), p->payload_len, s)) break;
        on_status(p, s, io);
        return;
      }
      case gw::kTypeStart: {
        gw::Start s;
        if (!gw::parse_start(body, blen, p->payload(), p->payload_len, s)) break;
        on_term_start(p, s, io);
        return;
      }
      default:
        break;
    }
    rel_malformed(p, io);
  }

  void on_announce_rel(Packet* p, std::uint32_t term_no, std::uint32_t n, StageIo& io) noexcept {
    const gw::TermId t{term_no, p->sender, p->epoch};
    if (!gw::same_term(t, cur_term()) || my_term()) {
      io.count(foreign_announcements);
      io.drop(p, DropReason::not_in_view);
      return;
    }
    io.count(announcements_received);
    term_heard_ = true;
    std::uint64_t top = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      top = std::max(top, gw::get_entry(p->payload() + std::size_t{i} * gw::kEntryBytes).global);
    }
    note_sequencer_holds(p->sender, p->epoch, top, io);
    seq_.place_entries(table_, p->payload(), n, io);
    p->release();
    rel_deliver(io);
  }

  // The term's sequencer numbers only messages it holds, and in order: an announcement up
  // to `top` says it holds every global <= top, as a status would (it sends no status for
  // that). Not once its status says frozen: its frozen held is final.
  void note_sequencer_holds(std::uint32_t sender, std::uint32_t epoch, std::uint64_t top, StageIo& io) noexcept {
    const Group& g = io.group();
    const int slot = g.slot_of_sender(sender);
    if (slot == kNoSlot || slot == g.self_slot() || g.member(slot).epoch != epoch) return;
    PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
    if (!ps.have || ps.sender != sender || ps.epoch != epoch || ps.st.frozen) return;
    if (!gw::same_term(ps.st.term, cur_term())) return;
    ps.st.held = std::max(ps.st.held, top);
  }

  void on_status(Packet* p, const gw::Status& s, StageIo& io) noexcept {
    const Group& g = io.group();
    const int slot = g.slot_of_sender(p->sender);
    const std::uint32_t from_sender = p->sender;
    const std::uint32_t from_epoch = p->epoch;
    gw::Cutoff cut[gw::kMaxCutoffs];
    const std::uint8_t* cut_bytes = p->payload() + std::size_t{s.n_records} * gw::kRecordBytes;
    for (std::uint32_t i = 0; i < s.n_cutoffs; ++i) cut[i] = gw::cutoff_at(cut_bytes, i);
    p->release();  // consumed: statuses are this stage's own traffic
    if (slot == kNoSlot || slot == g.self_slot() || g.member(slot).epoch != from_epoch) {
      io.count(stale);  // not (yet) in our view: its next status will count
      return;
    }
    io.count(statuses_received);
    term_no_seen_ = std::max(term_no_seen_, s.term.no);
    PeerStatus& ps = peers_[static_cast<std::size_t>(slot)];
    const bool fresh = !ps.have || ps.sender != from_sender || ps.epoch != from_epoch;
    if (fresh || gw::term_after(s.term, ps.st.term)) {
      ps.have = true;
      ps.sender = from_sender;
      ps.epoch = from_epoch;
      ps.st = s;
      std::copy(cut, cut + s.n_cutoffs, ps.cutoffs);
    } else if (gw::same_term(s.term, ps.st.term)) {
      if (s.frozen && !ps.st.frozen) {
        ps.st = s;
        std::copy(cut, cut + s.n_cutoffs, ps.cutoffs);
      } else if (!s.frozen && !ps.st.frozen) {
        // Reordered statuses of one term: the numbers only grow.
        ps.st.held = std::max(ps.st.held, s.held);
        ps.st.delivered = std::max(ps.st.delivered, s.delivered);
        ps.st.stable = std::max(ps.st.stable, s.stable);
      }
    }
    const gw::TermId mine = cur_term();
    if (net_active() && table_.term().no != 0 && table_.term().sender == 0 && ps.st.term.no != 0 && ps.st.term.sender == 0 &&
        ps.st.term.epoch != table_.term().epoch) {
      net_fail(io);  // it follows another session of the network sequencer: ours restarted
    }
    if (table_.term().no != 0 && !frozen_) {
      const bool in_rx = (g.receivers() & slot_bit(slot)) != 0;
      if (gw::term_after(ps.st.term, mine) && ps.st.term.no != 0) {
        freeze(io);  // a newer term exists
      } else if (gw::same_term(ps.st.term, mine) && ps.st.frozen) {
        freeze(io);  // someone froze our term: a cut is coming
      } else if (my_term() && in_rx && gw::term_after(mine, ps.st.term) &&
                 (role_ == Role::running || (start_mask_ & slot_bit(slot)) == 0)) {
        freeze(io);  // a receiver that never adopted our term (a newcomer): re-cut to bring it in
      }
    }
    if (gw::same_term(ps.st.term, mine) && ps.st.stable < reported_held() &&
        io.now_ns() >= last_status_ns_ + kStatusRepairNs) {
      note_status_change(io);  // it may have lost our last status
    }
    rel_check(io);
    rel_deliver(io);
    if (order_blocked_ && role_ == Role::running) order_all(io);
  }

  void on_term_start(Packet* p, const gw::Start& s, StageIo& io) noexcept {
    const gw::TermId n{s.term_no, p->sender, p->epoch};
    if (!gw::term_after(n, cur_term())) {
      io.count(stale);
      io.drop(p, DropReason::duplicate);
      return;
    }
    io.count(term_starts);
    adopt(n, s.records, s.n_records, s.cutoffs, s.n_cutoffs, io);
    p->release();
    rel_check(io);
    rel_deliver(io);
  }

  // Sequencer: once every receiver reported a frozen status, choose the cuts and start a
  // new term.
  void try_collect(StageIo& io) noexcept {
    const Group& g = io.group();
    struct Part {
      gw::TermId t;
      std::uint64_t h;
      std::uint64_t d;
      const gw::CutRecord* recs;
      std::uint32_t nrec;
    };
    Part parts[kMaxGroupMembers + 1];
    std::size_t n = 0;
    parts[n++] = Part{cur_term(), reported_held(), table_.next_g() - 1, adopted_, n_adopted_};
    for (MemberMask rx = g.receivers(); rx != 0; rx &= rx - 1) {
      const PeerStatus* ps = peer(g, __builtin_ctzll(rx));
      if (ps == nullptr || !ps->st.frozen) return;  // wait (its status is periodic)
      parts[n++] = Part{ps->st.term, ps->st.held, ps->st.delivered, ps->st.records, ps->st.n_records};
    }
    std::uint32_t max_no = term_no_seen_;
    for (std::size_t i = 0; i < n; ++i) {
      max_no = std::max(max_no, parts[i].t.no);
      for (std::uint32_t r = 0; r < parts[i].nrec; ++r) max_no = std::max(max_no, parts[i].recs[r].term.no);
    }
    gw::CutRecord out[gw::kMaxRecords];
    std::uint32_t nout = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const gw::TermId t = parts[i].t;
      if (t.no == 0) continue;  // a newcomer: nothing to finish
      bool done = false;
      for (std::uint32_t r = 0; r < nout; ++r) done = done || gw::same_term(out[r].term, t);
      if (done) continue;
      // A cut an earlier term start already fixed for t is kept: members that adopted it
      // have delivered t up to it.
      bool fixed = false;
      std::uint64_t end = 0;
      for (std::size_t j = 0; j < n && !fixed; ++j) {
        for (std::uint32_t r = 0; r < parts[j].nrec; ++r) {
          if (gw::same_term(parts[j].recs[r].term, t)) {
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
          if (!gw::same_term(parts[j].t, t)) {
            all_at = false;
            continue;
          }
          min_h = std::min(min_h, parts[j].h);
          max_d = std::max(max_d, parts[j].d);
        }
        // Everyone at t: the longest prefix every survivor holds. Survivors at several
        // terms: nobody could deliver beyond what members at t already delivered (the
        // others never reported t), so t ends there.
        end = all_at ? min_h : max_d;
      }
      if (nout < gw::kMaxRecords) out[nout++] = gw::CutRecord{t, end};
    }
    // Build the term start first: without a packet we stay collecting and retry.
    Packet* start = io.alloc();
    if (start == nullptr) {
      io.count(full_drops);
      return;
    }
    const gw::TermId nt{max_no + 1, env_.sender, env_.epoch};
    adopt(nt, out, nout, nullptr, 0, io);
    // Per-sender cut-offs: the last number of each alive sender in the delivered prefix —
    // the largest any receiver reports. Members that stayed together agree on it already
    // (the cut covers what any of them delivered); a member that was cut off from a term
    // the others delivered in (views split, e.g. a member declared failed before it was
    // ever heard) reports less, and ordering again from its own numbers would wait for
    // messages their senders delivered and no longer hold. It skips them instead (it
    // missed them: docs/manifest.md, Guarantees).
    const std::uint32_t room = env_.max_payload_bytes > 64 + nout * gw::kRecordBytes
                                   ? (env_.max_payload_bytes - 64 - nout * gw::kRecordBytes) / gw::kCutoffBytes
                                   : 0;
    const std::uint32_t max_cut = std::min<std::uint32_t>(gw::kMaxCutoffs, room);
    gw::Cutoff merged[gw::kMaxCutoffs];
    std::uint32_t ncut = 0;
    const auto merge = [&](std::uint32_t id, std::uint32_t epoch, std::uint64_t last) {
      if (last == 0 || !sender_alive(g, id, epoch)) return;
      for (std::uint32_t i = 0; i < ncut; ++i) {
        if (merged[i].sender == id && merged[i].epoch == epoch) {
          merged[i].last_seq = std::max(merged[i].last_seq, last);
          return;
        }
      }
      if (ncut < max_cut) merged[ncut++] = gw::Cutoff{id, epoch, last};
    };
    for (const SenderState& st : table_.senders()) {
      if (st.used) merge(st.id, st.epoch, st.done_seq);
    }
    for (MemberMask rx = g.receivers(); rx != 0; rx &= rx - 1) {
      const PeerStatus* ps = peer(g, __builtin_ctzll(rx));
      if (ps == nullptr || !ps->st.frozen) continue;
      for (std::uint32_t i = 0; i < ps->st.n_cutoffs; ++i) {
        merge(ps->cutoffs[i].sender, ps->cutoffs[i].epoch, ps->cutoffs[i].last_seq);
      }
    }
    bool raised = false;
    for (std::uint32_t i = 0; i < ncut; ++i) {
      const std::uint32_t si = table_.find_sender(merged[i].sender, merged[i].epoch);
      if (si != kNone && merged[i].last_seq > table_.sender(si).done_seq) {
        table_.sender(si).done_seq = merged[i].last_seq;
        raised = true;
      }
    }
    if (raised) drop_below_done(io);
    start->reset_for_send(nout * gw::kRecordBytes + ncut * gw::kCutoffBytes);
    for (std::uint32_t i = 0; i < nout; ++i) gw::put_record(start->payload() + std::size_t{i} * gw::kRecordBytes, out[i]);
    for (std::uint32_t k = 0; k < ncut; ++k) {
      gw::put_cutoff(start->payload() + std::size_t{nout} * gw::kRecordBytes + std::size_t{k} * gw::kCutoffBytes,
                     merged[k]);
    }
    std::uint8_t* body = as_order_control(start, /*reliable=*/true, gw::kStartBody);
    if (body == nullptr) return;
    gw::write_start_body(body, nt.no, nout, ncut);
    role_ = Role::adopting;
    start_mask_ = g.receivers();
    seq_.restart_numbering();
    io.count(term_starts);
    io.down(start);
    try_run(io);
  }

  // Sequencer: every receiver reports the new term: order what waits.
  void try_run(StageIo& io) noexcept {
    const Group& g = io.group();
    for (MemberMask rx = g.receivers(); rx != 0; rx &= rx - 1) {
      const int slot = __builtin_ctzll(rx);
      const PeerStatus* ps = peer(g, slot);
      if (ps != nullptr && gw::same_term(ps->st.term, cur_term())) continue;
      if (ps != nullptr && ps->st.frozen && (start_mask_ & slot_bit(slot)) == 0) freeze(io);  // a newcomer
      return;
    }
    role_ = Role::running;
    term_heard_ = true;
    for (SenderState& s : table_.senders()) {
      if (s.used) {
        s.order_next = s.done_seq + 1;
        s.wait_since_ns = 0;
      }
    }
    order_all(io);
  }

  void order_all(StageIo& io) noexcept {
    order_blocked_ = false;
    for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
      if (table_.msg(i).used && table_.msg(i).p != nullptr && table_.msg(i).g == 0) {
        try_order(table_.find_sender(table_.msg(i).sender, table_.msg(i).epoch), io);
      }
    }
    rel_deliver(io);
  }

  // Finish the current term at its cut in `recs` (or where we are, if it has none), then
  // follow term `nt`.
  void adopt(const gw::TermId& nt, const gw::CutRecord* recs, std::uint32_t nrec, const std::uint8_t* cutoffs,
             std::uint32_t ncut, StageIo& io) noexcept {
    if (seq_.batching()) seq_.flush(io);
    const gw::TermId old = cur_term();
    // Network mode: a member term ends the network sequencer's part for good (see
    // receive_stamped_rel); the copies kept to ask it again are no longer needed.
    const bool to_member = net_active() && nt.sender != 0;
    if (to_member) {
      // Reliability still repairs messages sent to the sequencer; they go to the members.
      io.redirect_to_group(net_.ip(), net_.port());
      net_.fall_back();
    }
    if (old.no != 0) {
      std::uint64_t end = table_.next_g() - 1;
      for (std::uint32_t r = 0; r < nrec; ++r) {
        if (gw::same_term(recs[r].term, old)) end = recs[r].end;
      }
      table_.deliver_through(end, steps_over_unordered(), io);
      // The old term's numbers are void; data beyond the cut stays for re-sequencing.
      table_.void_numbers(/*keep_unordered=*/true);
    }
    net_.clear_pending(table_);
    const bool changed = old.no != 0 && (old.sender != nt.sender || old.epoch != nt.epoch);
    table_.begin_term(nt);
    term_no_seen_ = std::max(term_no_seen_, nt.no);
    held_h_ = 0;
    last_stable_ = 0;
    sent_held_ = 0;  // what our statuses said was about the old term
    sent_delivered_ = 0;
    frozen_ = false;
    frozen_h_ = 0;
    term_heard_ = my_term();
    n_adopted_ = 0;
    for (std::uint32_t r = 0; r < nrec && n_adopted_ < gw::kMaxRecords; ++r) adopted_[n_adopted_++] = recs[r];
    if (changed) {
      io.count(term_changes);
      io.notify(Event{.type = EventType::sequencer_changed, .sender = nt.sender, .epoch = nt.epoch, .stage = kKind});
    }
    bool raised = false;
    for (std::uint32_t i = 0; i < ncut; ++i) {
      const gw::Cutoff c = gw::cutoff_at(cutoffs, i);
      if (table_.raise_done(c.sender, c.epoch, c.last_seq)) raised = true;
    }
    if (raised) drop_below_done(io);
    drop_dead(io);
    note_status_change(io);
    // After a network term, or with none yet, our messages that the sequencer never
    // stamped are held by nobody else: they go out again too.
    if (old.no != 0 || to_member) resend_own(io);
  }

  // reliability.arq gives a message up as a whole when a member of its ack set fails, so
  // survivors that missed it would wait for it forever: after a view change every member
  // re-sends its own messages not delivered yet. The copy is a reliable control packet
  // (ordering.seq below would give a data packet a new number) with an 8-byte Ext::order
  // body carrying the message's per-sender number; receivers turn it back into the data
  // message (duplicates are dropped by (sender, epoch, seq)). One larger than a datagram
  // is split by fragment.split below like a data message and reassembled at the members.
  void resend_own(StageIo& io) noexcept {
    for (const Msg& m : table_.msgs()) {
      if (!m.used || m.p == nullptr || m.sender != env_.sender || m.epoch != env_.epoch) continue;
      Packet* c = io.clone(*m.p);
      if (c == nullptr) {
        io.count(full_drops);
        return;
      }
      c->kind = wire::Kind::control;
      c->flags = static_cast<std::uint16_t>((m.p->flags & ~wire::kFlagFragment) | wire::kFlagReliable);
      std::uint8_t* body = c->push_ext(wire::Ext::order, gw::kResendBody);
      if (body == nullptr) {
        c->release();
        continue;
      }
      wire::put_u64(body, m.seq);
      io.count(resent);
      io.down(c);
    }
  }

  // A re-sent message: back to the data message it was.
  void on_resend(Packet* p, StageIo& io) noexcept {
    std::uint8_t blen = 0;
    const std::uint8_t* body = p->ext(wire::Ext::order, &blen);
    const std::uint64_t seq = wire::get_u64(body);
    if (seq == 0) {
      rel_malformed(p, io);
      return;
    }
    p->kind = wire::Kind::data;
    p->seq = seq;
    p->flags = static_cast<std::uint16_t>(p->flags & ~wire::kFlagReliable);
    store_data(p, io);
  }

  // Held messages at or below their sender's cut-off were ordered before: drop them.
  void drop_below_done(StageIo& io) noexcept {
    for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
      Msg& m = table_.msg(i);
      if (!m.used || m.g != 0) continue;
      const std::uint32_t s = table_.find_sender(m.sender, m.epoch);
      if (s == kNone || m.seq > table_.sender(s).done_seq) continue;
      if (m.p != nullptr) {
        io.count(stale);
        io.drop(m.p, DropReason::stale);
        m.p = nullptr;
        table_.note_held(m, -1);
      }
      table_.erase(i);
    }
  }

  // Unplaced messages of senders the view says failed or left are never ordered (the
  // sequencer orders alive senders only): release them. Once every named member has been
  // heard or declared failed, the messages of senders the view still does not know go too
  // (a member that died before any of its heartbeats reached us).
  void drop_dead(StageIo& io) noexcept {
    const Group& g = io.group();
    bool strangers = true;
    for (std::size_t i = 0; i < g.slots(); ++i) {
      if (g.member(static_cast<int>(i)).state == MemberState::expected) strangers = false;
    }
    for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
      Msg& m = table_.msg(i);
      if (!m.used || m.g != 0 || sender_alive(g, m.sender, m.epoch, /*unknown=*/!strangers)) continue;
      if (m.p != nullptr) {
        io.count(failed_sender_dropped);
        io.drop(m.p, DropReason::not_in_view);
        m.p = nullptr;
        table_.note_held(m, -1);
      }
      table_.erase(i);
    }
  }

  // --- tables --------------------------------------------------------------------------

  // --- timer ---------------------------------------------------------------------------

  void rearm(StageIo& io) noexcept {
    std::uint64_t d = 0;
    const std::uint64_t periodic = rel() && need_periodic() ? std::max<std::uint64_t>(1, last_status_ns_ + kStatusPeriodNs) : 0;
    for (std::uint64_t x : {seq_.flush_at(), reliable_ ? 0 : table_.gap_at(), reliable_ ? 0 : seq_.wait_at(),
                            reliable_ ? 0 : table_.expire_at(), rel() ? status_due_ : 0, periodic, net_.own_due_ns()}) {
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
  bool reliable_ = false;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint64_t flush_ns_ = 100'000;
  std::uint32_t window_ = 4096;

  // View.
  std::uint64_t view_id_ = 0;
  int seq_slot_ = kNoSlot;
  bool i_sequence_ = false;

  // Term: the sequencer incarnation (or network session) whose numbers we deliver.

  // Messages, the current term and its delivery cursor.
  MsgTable table_;
  std::uint64_t own_seq_ = 0;

  // The parts (see the dependency graph above).
  MemberSequencer seq_;
  NetworkSequencer net_;

  std::uint64_t armed_ns_ = 0;  ///< the timer's deadline (0 = none)

  // Reliable mode (agreement): see the block comment above rel_refresh().
  std::uint32_t term_no_seen_ = 0;
  bool frozen_ = true;  ///< term 0 (none yet) counts as frozen: nothing to deliver
  std::uint64_t frozen_h_ = 0;
  std::uint64_t held_h_ = 0;
  std::uint64_t last_stable_ = 0;
  bool term_heard_ = false;  ///< an announcement of the current term arrived (or we sequence it)
  Role role_ = Role::follower;
  bool order_blocked_ = false;
  MemberMask start_mask_ = 0;
  MemberMask prev_rx_ = 0;
  std::uint32_t n_adopted_ = 0;
  gw::CutRecord adopted_[gw::kMaxRecords];
  std::vector<PeerStatus> peers_;
  std::uint64_t status_due_ = 0;
  std::uint64_t last_status_ns_ = 0;
  std::uint64_t sent_held_ = 0;       ///< held_through in our last status
  std::uint64_t sent_delivered_ = 0;  ///< delivered_through in our last status
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
          "tmc-sequencer, which multicasts it with extension `group_seq` (u64 global, u32 session; 14 bytes); "
          "unreliable, a new session means the sequencer restarted: what is held is delivered, "
          "`sequencer_changed` raised. Network sequencer with `reliable`: the session is a term like a member "
          "sequencer's, delivered stably; when the sequencer restarts (a new session), stops returning a "
          "member's own messages (8 requests, about 1 s), or a receiver fails, the members cut its term as "
          "below and a member sequencer takes over for good (`net_failovers`); what reliability still "
          "repairs toward the sequencer's address goes to the group from then on. Unreliable: a gap open for `hold_us` is skipped and reported (`gap_skipped`, in global numbers, "
          "sender/epoch naming the term), data never announced within 4 x hold_us is dropped and reported "
          "(`gap_skipped` with its own sender/epoch/seq); no two members deliver two messages in different "
          "relative orders while they follow the same sequencer term; a sequencer change starts a new term (old "
          "term drained in order, gaps skipped). Reliable (needs reliability.arq acked by all and "
          "membership.heartbeat below): nothing is skipped by time; a message is delivered only once it is "
          "stable (every receiver of the view holds it and everything before it, per unreliable status packets, "
          "`order` body type 2); when the view loses the sequencer or a receiver, members freeze the term, the "
          "view's sequencer collects every receiver's frozen status, cuts the old term at the least held point "
          "and starts a new term (reliable term start, type 3, with the cuts and per-sender cut-offs); "
          "everything after the cut from alive senders is re-sequenced, a failed sender's messages after it "
          "are dropped, and members re-send their own undelivered messages (8-byte `order` body). Members that "
          "stay connected deliver identical sequences across sequencer failures. Data flagged unordered is "
          "delivered at once.",
      .params = {{"sequencer", ParamType::string, "",
                  "Member name of the sequencer; empty: the smallest name among this member and the view's alive "
                  "or expected members."},
                 {"network_sequencer", ParamType::string, "",
                  "\"ip:port\" of an in-network sequencer (tmc-sequencer); empty: a member sequences."},
                 {"reliable", ParamType::boolean, "false",
                  "reliability.arq (ack from all) and membership.heartbeat sit below: stable delivery, sequencer "
                  "failover with agreement, nothing skipped by time."},
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
                   {"ordering.group_no_stamp", "network mode: data without a valid group_seq stamp"},
                   {"ordering.group_malformed", "order control packets refused (bad body, counts or lengths)"},
                   {"ordering.group_resent", "reliable: own undelivered messages re-sent after a view change"},
                   {"ordering.group_statuses_sent", "reliable: ordering status packets sent"},
                   {"ordering.group_statuses_received", "reliable: ordering status packets accepted"},
                   {"ordering.group_term_starts", "reliable: term starts sent (sequencer) or adopted"},
                   {"ordering.group_cut_missing", "reliable: a cut disagreed with what this member held or "
                                                  "delivered, or a sequencer ordered a message delivered here "
                                                  "already (views disagreed: stays 0 without a split)"},
                   {"ordering.group_failed_sender_dropped",
                    "reliable: unordered messages of a failed or departed sender released"},
                   {"ordering.group_own_restamp_requests",
                    "network mode, reliable: own messages sent to the sequencer again because their stamped copy "
                    "did not come back in time"},
                   {"ordering.group_own_restamp_gave_up",
                    "network mode, reliable: own messages whose stamped copy never came back after every request "
                    "(the sequencer is taken as gone)"},
                   {"ordering.group_net_failovers",
                    "network mode, reliable: the network sequencer's term given up (it restarted, own messages "
                    "stopped coming back, or a receiver failed); a member sequencer takes over"}},
      .factory = [] { return std::make_unique<GroupStage>(); },
  });
}

}  // namespace tmc
