// ordering.group, reliable mode: terms, freezing, the cut and failover — the stage shell's
// part that decides when a term ends and which one follows, over the message table, the
// agreement's statuses and the sequencer parts (see the file map in stage.hpp).
#include <algorithm>

#include "primitives/ordering/group/stage.hpp"

namespace tmc::detail::group_order {

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
// kRestampFailoverTries times (network_sequencer.cpp) without its stamped copy coming
// back (the sequencer is gone or cut off from us), when a receiver fails (a message only it held, and whose sender's
// reliability stops repairing it, could never become stable), or when a peer reports it
// frozen or another network session.

void GroupStage::receive_stamped_rel(Packet* p, StageIo& io) noexcept {
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

void GroupStage::net_fail(StageIo& io) noexcept {
  if (!net_active() || net_.gone()) return;
  net_.set_gone();
  io.count(net_failovers);
  if (table_.term().no != 0) {
    freeze(io);
  } else {
    agreement_.note_status_change(io);
  }
  rel_check(io);
}

// With sparse statuses, a member that has not heard an announcement of its term yet (a
// group that has sent nothing) repeats its status at the stall period, not every 10 ms:
// an idle group of n members would otherwise send n statuses every 10 ms.
bool GroupStage::failover_pending() const noexcept {
  return agreement_.frozen() || role_ == Role::collecting || role_ == Role::adopting ||
         (!term_heard_ && agreement_.stride() <= 1);
}

bool GroupStage::need_periodic() const noexcept {
  // Held messages count too: our timer is then how a view change (the sequencer failed
  // while nothing else moved) is noticed.
  return failover_pending() || !term_heard_ || table_.next_g() <= table_.max_known_g() || table_.held() != 0;
}

void GroupStage::freeze(StageIo& io) noexcept {
  if (agreement_.frozen()) return;
  if (net_active() && table_.term().sender == 0) {
    if (!net_.gone()) io.count(net_failovers);
    net_.set_gone();  // a frozen network term ends in a member term
  }
  if (seq_.batching()) seq_.flush(io);
  agreement_.freeze(table_);
  agreement_.note_status_change(io);
}

void GroupStage::rel_refresh(StageIo& io) noexcept {
  Group& g = io.group();
  if (g.view_id() != view_id_) {
    view_id_ = g.view_id();
    seq_slot_ = choose_sequencer(g);
    i_sequence_ = seq_slot_ == g.self_slot();
    agreement_.forget_stale_peers(g);
    const MemberSet& rx = g.receivers();
    agreement_.fit_receivers(static_cast<std::uint32_t>(rx.count()));
    // A receiver failed and heard again since the last view we saw is both lost and
    // gained: reliability gave up our messages (and announcements) to it meanwhile.
    if (prev_outages_.size() < g.slots()) prev_outages_.resize(g.slots(), 0);  // cold: a view change
    bool bounced = false;
    for (std::size_t i = 0; i < g.slots(); ++i) {
      const int slot = static_cast<int>(i);
      const std::uint32_t outages = g.member(slot).outages;
      const bool back = outages != prev_outages_[i] && rx.contains(slot) && prev_rx_.contains(slot);
      if (back) bounced = true;
      // A receiver that comes back (a partition healed) may have run terms of its own
      // meanwhile: the status we hold from before is stale, and a cut taken with it would
      // lack its per-sender cut-offs. Wait for one it sends from now on.
      if (back || (rx.contains(slot) && !prev_rx_.contains(slot))) agreement_.forget_peer(slot);
      prev_outages_[i] = outages;
    }
    const bool lost = bounced || !prev_rx_.subset_of(rx);
    const bool gained = bounced || !rx.subset_of(prev_rx_);
    prev_rx_ = rx;  // cold: a view change
    // The term is re-cut when a receiver is gone: what only it held can then never become
    // stable, and the cut resolves it. Every member freezes, not only the sequencer: a
    // member whose view lost a receiver the sequencer's view kept (or that was out and
    // back before the sequencer noticed) would otherwise deliver, stable in its own view,
    // numbers that receiver never gets, and nothing would end the term.
    if (lost && table_.term().no != 0) freeze(io);
    drop_dead(io);
    // A receiver back in the view (a partition healed) missed what we sent while it was
    // failed here: reliability left it out of those messages' ack sets.
    if (lost || gained) resend_own(io);
    if (role_ == Role::running) order_all(io);  // senders heard for the first time
  }
  rel_check(io);
}

// Freeze rules and the sequencer's role; called on every input.
void GroupStage::rel_check(StageIo& io) noexcept {
  const Group& g = io.group();
  if (table_.term().no != 0 && !agreement_.frozen()) {
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
  if (!my_term() || agreement_.frozen()) {
    role_ = Role::collecting;
    try_collect(io);
    return;
  }
  if (role_ == Role::adopting) try_run(io);
}

void GroupStage::rel_deliver(StageIo& io) noexcept {
  if (agreement_.frozen() || table_.term().no == 0) return;
  const std::uint64_t stable = agreement_.update_stable(table_, io.group());
  const std::uint64_t before = table_.next_g();
  while (table_.next_g() <= stable && table_.deliverable(table_.next_g())) {
    table_.deliver_one(io, steps_over_unordered());
  }
  if (net_.pending() > 0 && table_.next_g() != before) {
    net_.place_pending(table_, io);
    const std::uint64_t more = agreement_.update_stable(table_, io.group());
    while (table_.next_g() <= more && table_.deliverable(table_.next_g())) {
      table_.deliver_one(io, steps_over_unordered());
    }
  }
  // Compared with what our last status said, not with the held point on entry:
  // held_through() advances it wherever it is called (update_stable() above, a status
  // check), and a peer's delivery waits for exactly this news. The running sequencer's
  // holdings go out in its announcements (announced()).
  const std::uint64_t told = my_term() && role_ == Role::running
                                 ? std::max(agreement_.sent_held(), seq_.next_assign() - 1)
                                 : agreement_.sent_held();
  agreement_.note_progress(table_, told, io);
  if (table_.next_g() != before && order_blocked_ && role_ == Role::running) order_all(io);
}

void GroupStage::rel_malformed(Packet* p, StageIo& io) noexcept {
  io.count(Counter::malformed);
  io.drop(p, DropReason::malformed);
}

void GroupStage::on_order_reliable(Packet* p, StageIo& io) noexcept {
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

void GroupStage::on_announce_rel(Packet* p, std::uint32_t term_no, std::uint32_t n, StageIo& io) noexcept {
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
  agreement_.note_sequencer_holds(io.group(), p->sender, p->epoch, top, cur_term());
  seq_.place_entries(table_, p->payload(), n, io);
  p->release();
  rel_deliver(io);
}

void GroupStage::on_status(Packet* p, const gw::Status& s, StageIo& io) noexcept {
  const Group& g = io.group();
  const int slot = g.slot_of_sender(p->sender);
  const PeerStatus* rec = agreement_.on_status(p, s, io);  // consumes p
  if (rec == nullptr) return;
  const PeerStatus& ps = *rec;
  const gw::TermId mine = cur_term();
  if (net_active() && mine.no != 0 && mine.sender == 0 && ps.st.term.no != 0 && ps.st.term.sender == 0 &&
      ps.st.term.epoch != mine.epoch) {
    net_fail(io);  // it follows another session of the network sequencer: ours restarted
  }
  if (table_.term().no != 0 && !agreement_.frozen()) {
    const bool in_rx = g.receivers().contains(slot);
    if (gw::term_after(ps.st.term, mine) && ps.st.term.no != 0) {
      freeze(io);  // a newer term exists
    } else if (gw::same_term(ps.st.term, mine) && ps.st.frozen) {
      freeze(io);  // someone froze our term: a cut is coming
    } else if (my_term() && in_rx && gw::term_after(mine, ps.st.term) &&
               (role_ == Role::running || !start_mask_.contains(slot))) {
      freeze(io);  // a receiver that never adopted our term (a newcomer): re-cut to bring it in
    } else if (my_term() && in_rx && !start_mask_.contains(slot)) {
      // A receiver our cut did not count (failed in our view when we started the term, or
      // never heard) adopted our term start anyway: what it delivered of each sender is
      // missing from the cut-offs we order from, so we would wait for messages it and its
      // senders no longer hold. Re-cut with it (its frozen status brings its cut-offs).
      freeze(io);
    }
  }
  agreement_.repair_if_behind(ps, mine, table_, io);  // it may have lost our last status
  rel_check(io);
  rel_deliver(io);
  if (order_blocked_ && role_ == Role::running) order_all(io);
}

void GroupStage::on_term_start(Packet* p, const gw::Start& s, StageIo& io) noexcept {
  const gw::TermId n{s.term_no, p->sender, p->epoch};
  if (gw::same_term(n, cur_term()) && !my_term()) {
    // Another packet of the term start we adopted (a group with more senders than one
    // datagram's cut-offs): its slice of the cut-offs.
    apply_cutoffs(s.cutoffs, s.n_cutoffs, io);
    p->release();
    rel_check(io);
    rel_deliver(io);
    return;
  }
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
void GroupStage::try_collect(StageIo& io) noexcept {
  const Group& g = io.group();
  gw::CutRecord out[gw::kMaxRecords];
  std::uint32_t nout = 0;
  std::uint32_t max_no = 0;
  if (!agreement_.choose_cuts(table_, g, out, nout, max_no)) return;  // wait (statuses are periodic)
  // Build the term start first: without a packet we stay collecting and retry.
  Packet* start = io.alloc();
  if (start == nullptr) {
    io.count(Counter::full);
    return;
  }
  const gw::TermId nt{max_no + 1, env_.sender, env_.epoch};
  adopt(nt, out, nout, nullptr, 0, io);
  // Per-sender cut-offs: the last number of each alive sender in the delivered prefix, the
  // largest any receiver reports (Agreement::merge_cutoffs); ours are raised to them too.
  agreement_.merge_cutoffs(table_, g, merged_);  // cold: a term start
  const auto ncut = static_cast<std::uint32_t>(merged_.size());
  bool raised = false;
  for (const gw::Cutoff& c : merged_) raised = table_.raise_done(c.sender, c.epoch, c.last_seq) || raised;
  if (raised) drop_below_done(io);
  role_ = Role::adopting;
  start_mask_ = g.receivers();  // cold: a term start
  seq_.restart_numbering();
  io.count(term_starts);
  // One packet holds every cut record and as many cut-offs as fit; a larger group's
  // cut-offs follow in further start packets of the same term (members adopt the term at
  // whichever comes first and apply each one's slice).
  const std::uint32_t room = agreement_.start_cutoff_room(nout);
  std::uint32_t from = 0;
  do {
    const std::uint32_t k = std::min(room, ncut - from);
    Packet* pk = start != nullptr ? start : io.alloc();
    start = nullptr;
    if (pk == nullptr) {
      // The members would miss these cut-offs: cut again (the next start carries them all).
      io.count(Counter::full);
      freeze(io);
      break;
    }
    pk->reset_for_send(nout * gw::kRecordBytes + k * gw::kCutoffBytes);
    for (std::uint32_t i = 0; i < nout; ++i) {
      gw::put_record(pk->payload() + std::size_t{i} * gw::kRecordBytes, out[i]);
    }
    std::uint8_t* cut_bytes = pk->payload() + std::size_t{nout} * gw::kRecordBytes;
    for (std::uint32_t i = 0; i < k; ++i) {
      gw::put_cutoff(cut_bytes + std::size_t{i} * gw::kCutoffBytes, merged_[from + i]);
    }
    std::uint8_t* body = agreement_.as_order_control(pk, /*reliable=*/true, gw::kStartBody);
    if (body == nullptr) {  // released
      freeze(io);
      break;
    }
    gw::write_start_body(body, nt.no, nout, k);
    io.down(pk);
    from += k;
  } while (from < ncut);
  try_run(io);
}

// Sequencer: every receiver reports the new term: order what waits.
void GroupStage::try_run(StageIo& io) noexcept {
  const Group& g = io.group();
  const MemberSet& rx = g.receivers();
  for (int slot = rx.first(); slot >= 0; slot = rx.next(slot)) {
    const PeerStatus* ps = agreement_.peer(g, slot);
    if (ps != nullptr && gw::same_term(ps->st.term, cur_term())) continue;
    if (ps != nullptr && ps->st.frozen && !start_mask_.contains(slot)) freeze(io);  // a newcomer
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

void GroupStage::order_all(StageIo& io) noexcept {
  order_blocked_ = false;
  for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
    const Msg& m = table_.msg(i);
    if (m.used && m.p != nullptr && m.g == 0) try_order(table_.find_sender(m.sender, m.epoch), io);
  }
  rel_deliver(io);
}

// Finish the current term at its cut in `recs` (or where we are, if it has none), then
// follow term `nt`.
void GroupStage::adopt(const gw::TermId& nt, const gw::CutRecord* recs, std::uint32_t nrec,
                       const std::uint8_t* cutoffs, std::uint32_t ncut, StageIo& io) noexcept {
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
  agreement_.begin_term(nt, recs, nrec);
  term_heard_ = my_term();
  if (changed) {
    io.count(term_changes);
    io.notify(Event{.type = EventType::sequencer_changed, .sender = nt.sender, .epoch = nt.epoch, .stage = kKind});
  }
  apply_cutoffs(cutoffs, ncut, io);
  drop_dead(io);
  agreement_.note_status_change(io);
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
void GroupStage::resend_own(StageIo& io) noexcept {
  for (const Msg& m : table_.msgs()) {
    if (!m.used || m.p == nullptr || m.sender != env_.sender || m.epoch != env_.epoch) continue;
    Packet* c = io.clone(*m.p);
    if (c == nullptr) {
      io.count(Counter::full);
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

// Views are each member's own, and they disagree for a while around a partition and its
// heal: a message sent while a peer was failed in our view never reached it
// (reliability's ack set left it out), and a copy that reached a peer while we were failed
// in its view was dropped there (store_data: a failed sender's messages are never
// ordered). The re-sends on our own view changes cannot cover the second case (the peer's
// view changes, ours does not), so a member also watches its own messages: when the
// oldest one it holds was not delivered within kOwnStallNs, it sends its undelivered
// messages again, backing off (doubling up to kOwnStallMaxNs) while nothing moves.
// Delivery of a message is stable delivery, so "delivered here" means every receiver of
// our view held it: nothing else needs repair.
void GroupStage::check_own_progress(StageIo& io) noexcept {
  own_check_at_ = 0;
  std::uint64_t oldest = 0;
  for (const Msg& m : table_.msgs()) {
    if (m.used && m.p != nullptr && m.sender == env_.sender && m.epoch == env_.epoch &&
        (oldest == 0 || m.seq < oldest)) {
      oldest = m.seq;
    }
  }
  if (oldest == 0 || oldest != own_oldest_) {
    own_check_ns_ = agreement_.own_stall_ns();  // moved (or nothing held): watch from here
  } else if (!net_active()) {
    // A network term asks the sequencer for its stamped copies instead (keep_own).
    resend_own(io);
    // The running sequencer also re-cuts: an announcement a member never got (its
    // reliable copy given up while views disagreed) is repaired only by a new term, which
    // orders again everything beyond the longest prefix every member holds.
    if (my_term() && role_ == Role::running) freeze(io);
    own_check_ns_ = std::min(own_check_ns_ * 2, std::max(kOwnStallMaxNs, agreement_.own_stall_ns()));
  }
  own_oldest_ = oldest;
}

// A re-sent message: back to the data message it was.
void GroupStage::on_resend(Packet* p, StageIo& io) noexcept {
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

void GroupStage::apply_cutoffs(const std::uint8_t* cutoffs, std::uint32_t ncut, StageIo& io) noexcept {
  bool raised = false;
  for (std::uint32_t i = 0; i < ncut; ++i) {
    const gw::Cutoff c = gw::cutoff_at(cutoffs, i);
    if (table_.raise_done(c.sender, c.epoch, c.last_seq)) raised = true;
  }
  if (raised) drop_below_done(io);
}

// Held messages at or below their sender's cut-off were ordered before: drop them.
void GroupStage::drop_below_done(StageIo& io) noexcept {
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
void GroupStage::drop_dead(StageIo& io) noexcept {
  const Group& g = io.group();
  bool strangers = true;
  for (std::size_t i = 0; i < g.slots(); ++i) {
    if (g.member(static_cast<int>(i)).state == MemberState::expected) strangers = false;
  }
  for (std::uint32_t i = 0; i < table_.capacity(); ++i) {
    Msg& m = table_.msg(i);
    if (!m.used || m.g != 0 || alive(g, m.sender, m.epoch, /*unknown=*/!strangers)) continue;
    if (m.p != nullptr) {
      io.count(failed_sender_dropped);
      io.drop(m.p, DropReason::not_in_view);
      m.p = nullptr;
      table_.note_held(m, -1);
    }
    table_.erase(i);
  }
}

}  // namespace tmc::detail::group_order
