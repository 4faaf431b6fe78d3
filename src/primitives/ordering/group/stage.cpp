// ordering.group's stage shell: the Stage entry points, the view (who sequences), the data
// path, and term switching in the unreliable modes; reliable terms and failover are in
// failover.cpp. See stage.hpp for the protocol and the file map.
#include "primitives/ordering/group/stage.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "primitives/common/endpoint.hpp"

namespace tmc::detail::group_order {
// The registry has checked every value against its ParamSpec (registration.cpp) and filled
// the defaults; the endpoint's spelling is the one thing left to check here.
bool GroupStage::configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) {
  env_ = env;
  sequencer_name_ = params.text("sequencer");
  const std::string& net = params.text("network_sequencer");
  std::uint32_t net_ip = 0;
  std::uint16_t net_port = 0;
  if (!net.empty()) {
    if (!parse_ip_port(net, net_ip, net_port)) {
      errors.push_back("parameter 'network_sequencer' must be \"a.b.c.d:port\", got \"" + net + "\"");
    }
    network_ = true;
  }
  reliable_ = params.boolean("reliable");
  const std::int64_t hold_us = params.integer("hold_us");
  const std::int64_t window = params.integer("window");
  const std::int64_t flush_us = params.integer("flush_us");
  if (!errors.empty()) return false;
  hold_ns_ = static_cast<std::uint64_t>(hold_us) * 1000;
  flush_ns_ = static_cast<std::uint64_t>(flush_us) * 1000;
  window_ = static_cast<std::uint32_t>(window);

  // Everything is sized here; the hot path never allocates.
  table_.configure(env, net_unrel() ? 0 : std::size_t{window_} * 2, window_, reliable_, net_unrel(), hold_ns_);
  seq_.configure(env, reliable_, hold_ns_, flush_ns_, *this);
  net_.configure(env, net_ip, net_port, reliable_, net_rel() ? window_ : 0);
  agreement_.configure(env, window_);
  return true;
}

void GroupStage::on_start(StageIo& io) noexcept {
  if (rel()) agreement_.note_status_change(io);  // announce our (empty) state: the first term needs it
  if (!net_unrel()) refresh_view(io);
  if (rel()) rearm(io);
}

void GroupStage::on_stop(StageIo& io) noexcept {
  if (seq_.batching()) seq_.flush(io);
}

void GroupStage::on_send(Packet* p, StageIo& io) noexcept {
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
    io.count(Counter::full);
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
    io.count(Counter::full);
    return;
  }
  own->sender = env_.sender;
  own->epoch = env_.epoch;
  own->seq = seq;
  own->channel = env_.channel;
  store_data(own, io);
  rearm(io);
}

void GroupStage::on_receive(Packet* p, StageIo& io) noexcept {
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
    io.count(Counter::unordered);
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

void GroupStage::on_tick(StageIo& io) noexcept {
  timer_.fired();
  const std::uint64_t now = io.now_ns();
  if (!net_unrel()) refresh_view(io);
  if (seq_.flush_at() != 0 && seq_.flush_at() <= now) seq_.flush(io);
  if (rel()) {
    const bool failover = failover_pending();
    if ((agreement_.status_due() != 0 && agreement_.status_due() <= now) ||
        (agreement_.tail_due() != 0 && agreement_.tail_due() <= now) ||
        (need_periodic() && agreement_.periodic_at(failover) <= now &&
         agreement_.periodic_status(table_, failover, now))) {
      agreement_.send_status(table_, io);
    }
    rel_check(io);
  }
  if (!reliable_ && table_.gap_at() != 0 && table_.gap_at() <= now) table_.skip_gap(io);
  if (!reliable_ && seq_.wait_at() != 0 && seq_.wait_at() <= now) {
    seq_.clear_wait();
    if (i_sequence_) seq_.give_up_waits(table_, io);
  }
  if (!reliable_ && table_.expire_at() != 0 && table_.expire_at() <= now) {
    table_.expire_unannounced(/*sequencing=*/i_sequence_, io);
  }
  if (own_check_at_ != 0 && own_check_at_ <= now) check_own_progress(io);
  if (net_.own_due_ns() != 0 && net_.own_due_ns() <= now && net_.request_restamps(own_seq_, io)) {
    net_fail(io);  // after the requests: a failover releases the copies
  }
  rearm(io);
}

std::size_t GroupStage::held_packets() const noexcept {
  return table_.held() + net_.own_held() + (seq_.holds_batch() ? 1 : 0);
}

// The hold table (2 x window messages, or the window of stamped messages in network
// mode, plus as many copies of our own messages awaiting their stamped copy when
// reliable) and the announcement being filled: the pool must have room for all of it,
// or a full table would starve the receive path of buffers.
std::size_t GroupStage::max_held_packets() const noexcept {
  return (net_unrel() ? window_ : table_.capacity() + 1) + net_.own_slots();
}

// A member keeps a copy of each of its ordered messages until it delivers it, and the
// hold table is shared by every member's messages: past an allowance of window / 8
// copies, further messages count as backlog, so the shell holds the application back
// (send() blocks or says WOULD_BLOCK) instead of letting one fast sender fill every
// member's table — a full table drops a message reliability has already acknowledged,
// which stalls stable delivery for good. Delivery (stability) is what drains it.
std::size_t GroupStage::send_backlog() const noexcept {
  const std::size_t allowance = std::max<std::size_t>(window_ / 8, 1);
  return table_.own_held() > allowance ? table_.own_held() - allowance : 0;
}

// Recompute who sequences when the view changed (one integer compare on the hot path).
void GroupStage::refresh_view(StageIo& io) noexcept {
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
    const gw::TermId& term = table_.term();
    // A view that knows the sequencer's incarnation and says the one we follow is gone.
    if (m.sender != 0 && term.sender != 0 && (m.sender != term.sender || m.epoch != term.epoch)) {
      change_term(0, 0, io);
    }
  }
}

// The sequencer of this view: the manifest's, or the smallest name among self and the
// alive or expected members.
int GroupStage::choose_sequencer(const Group& g) const noexcept {
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

void GroupStage::become_sequencer(StageIo& io) noexcept {
  // A new term with ourselves as its sequencer: numbers start at 1 again.
  change_term(env_.sender, env_.epoch, io);
  // Per-sender ordering continues after what this member already delivered.
  seq_.begin(table_);
  for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
    const Msg& m = table_.msg(i);
    if (m.used && m.p != nullptr) try_order(table_.find_sender(m.sender, m.epoch), io);
  }
}

// Follow a new term: deliver what the old one holds, in order, skipping its gaps.
void GroupStage::change_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
  const gw::TermId old = table_.term();
  if (sender == old.sender && epoch == old.epoch) return;
  if (old.sender != 0 || old.epoch != 0) {
    table_.drain(io);
    io.count(term_changes);
    io.notify(Event{.type = EventType::sequencer_changed, .sender = sender, .epoch = epoch, .stage = kKind});
  }
  table_.begin_term(gw::TermId{old.no, sender, epoch});
}

void GroupStage::store_data(Packet* p, StageIo& io) noexcept {
  if (rel() && !alive(io.group(), p->sender, p->epoch, /*unknown=*/true)) {
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
  const std::uint64_t order_next = s != kNone ? table_.sender(s).order_next : 0;
  if (orders() && order_next != 0 && p->seq < order_next && (idx == kNone || table_.msg(idx).p == nullptr)) {
    // Behind what we already ordered of this sender: we gave up on it (unreliable).
    io.count(stale);
    io.drop(p, DropReason::stale);
    return;
  }
  if (idx != kNone && table_.msg(idx).p != nullptr) {
    io.count(duplicates);
    io.drop(p, DropReason::duplicate);
    return;
  }
  if (idx == kNone) {
    idx = table_.insert(p->sender, p->epoch, p->seq, io.now_ns());
    if (idx == kNone) {
      io.count(Counter::full);
      io.drop(p, DropReason::buffer_full);
      return;
    }
    if (!reliable_) table_.arm_expiry(io.now_ns());
  }
  Msg& m = table_.msg(idx);
  m.p = p;
  table_.note_held(m, +1);
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
void GroupStage::note_unordered(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, StageIo& io) noexcept {
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
void GroupStage::try_order(std::uint32_t s, StageIo& io) noexcept {
  if (s == kNone) return;
  SenderState& st = table_.sender(s);
  if (st.order_next == 0) return;
  // Reliable mode: only a running term orders, and only the messages of senders the view
  // says are alive (a failed sender's messages are left to the next cut).
  if (rel() && (role_ != Role::running || agreement_.frozen() || !alive(io.group(), st.id, st.epoch))) return;
  const std::uint64_t limit =
      rel() ? agreement_.assign_limit(table_, io.group()) : std::numeric_limits<std::uint64_t>::max();
  if (seq_.order(table_, s, limit, io)) order_blocked_ = true;  // resumed when members report delivery (order_all)
}

// An announcement we send tells the members that we hold every global it names (we number
// only messages we hold, in order): it stands for our status (note_sequencer_holds).
void GroupStage::announced(std::uint32_t term_no, std::uint64_t top) noexcept {
  if (term_no == table_.term().no && my_term() && !agreement_.frozen()) agreement_.note_announced(top);
}

void GroupStage::on_announcement(Packet* p, StageIo& io) noexcept {
  std::uint8_t blen = 0;
  const std::uint8_t* body = p->ext(wire::Ext::order, &blen);
  if (network_ || body == nullptr || blen != gw::kLegacyAnnounceBody) {
    io.count(Counter::malformed);
    io.drop(p, DropReason::malformed);
    return;
  }
  const std::uint32_t n = wire::get_u32(body);
  if (p->payload_len != std::uint64_t{n} * gw::kEntryBytes) {
    io.count(Counter::malformed);
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
bool GroupStage::accept_term(std::uint32_t sender, std::uint32_t epoch, StageIo& io) noexcept {
  const gw::TermId& term = table_.term();
  if (sender == term.sender && epoch == term.epoch) return !i_sequence_;
  if (i_sequence_ || seq_slot_ == kNoSlot) return false;
  const MemberInfo& m = io.group().member(seq_slot_);
  if (m.sender != 0) {
    if (m.sender != sender || m.epoch != epoch) return false;
  } else if (term.sender != 0 && term.sender != sender) {
    // The view does not know the sequencer's id (no membership stage): follow the first
    // announcer, and a restart of it (new epoch), but no one else.
    return false;
  }
  change_term(sender, epoch, io);
  return true;
}

void GroupStage::deliver_ready(StageIo& io) noexcept {
  if (rel()) {
    rel_deliver(io);
  } else {
    table_.deliver_in_order(io);
  }
}

void GroupStage::receive_stamped(Packet* p, StageIo& io) noexcept {
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

void GroupStage::rearm(StageIo& io) noexcept {
  if (rel() && own_check_at_ == 0 && table_.own_held() != 0) {
    if (own_check_ns_ == 0) own_check_ns_ = agreement_.own_stall_ns();
    own_check_at_ = io.now_ns() + own_check_ns_;
  }
  const std::uint64_t periodic = rel() && need_periodic() ? agreement_.periodic_at(failover_pending()) : 0;
  timer_.arm_earliest(io, {seq_.flush_at(), reliable_ ? 0 : table_.gap_at(), reliable_ ? 0 : seq_.wait_at(),
                           reliable_ ? 0 : table_.expire_at(), rel() ? agreement_.status_due() : 0, periodic,
                           net_.own_due_ns(), own_check_at_, rel() ? agreement_.tail_due() : 0});
}

}  // namespace tmc::detail::group_order
