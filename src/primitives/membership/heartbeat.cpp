// membership.heartbeat — named members, failure detection, restarts (the Group's writer).
//
// Synopsis
//   Announces this member with periodic heartbeats, keeps the pipeline's Group view from
//   the heartbeats (and other packets) it hears, and reports joins, goodbyes, failures
//   and restarts as events.
// Params
//   interval_us (int, 100000)   time between two heartbeats of this member
//   timeout_us (int, 1000000)   an alive member not heard this long is failed; > interval_us
//   receives (bool, true)       false: this member is send-only (never in an ack set)
//   leave_copies (int, 3)       goodbye heartbeats sent at stop (each may be lost)
// Counters
//   membership.heartbeats_sent, heartbeats_received, early_heartbeats, joins, failures,
//   restarts, leaves, malformed, stale_heartbeats, name_conflicts, group_full,
//   alloc_failures (see register below)
// Wire
//   Kind::heartbeat with Ext::membership (see heartbeat_format.hpp): flags, name length,
//   and the member's name as payload.
// Notes
//   Identity is the name; (sender, epoch) is an incarnation of it. A heartbeat from a
//   known name with a new epoch is a restart: the old epoch is retired (the last
//   kRetiredEpochs of each slot are kept in a fixed array) and heartbeats still in flight
//   from it are dropped (stale_epoch), so the member is never confused with its former
//   self. A goodbye (leaving bit) marks the member left and retires that epoch too, so a
//   late ordinary heartbeat of the same incarnation cannot bring it back.
//
//   Every other packet from a known alive (sender, epoch) refreshes that member's
//   liveness (Group::touch) and passes unchanged; heartbeats are consumed here.
//
//   A manifest that names its members closes the group: heartbeats under any other name
//   are dropped (not_in_view) and never join the view or an ack set, and other packets
//   pass only from a sender id heard under a named slot or the id a named member's name
//   hashes to (FNV-1a, as the runtime derives it); once every named member has been heard
//   the rest are dropped (not_in_view). (Before that, a named member not heard yet may
//   use another id, as in the simulator, so other ids still pass.)
//
//   When a member appears (new, back from failure, or with a new epoch) this member sends
//   a heartbeat at once, at most one per interval_us / 4, so that the newcomer learns of
//   us within one round trip instead of one interval. Periodic heartbeats are spaced by
//   interval_us minus a seeded jitter of up to a tenth of it, which keeps members that
//   started together from sending in lockstep and never stretches the spacing.
//
//   A heartbeat lost on the way to one member is not repaired until the next one, an
//   interval later (32 s at 1,000 members with a 1 s interval), and meanwhile that member
//   cannot place its peer's other packets (an ordering status, an ack) in the view. So a
//   member of a closed view that still gets packets from an id the view does not know
//   interval_us / 2 after the first, while some named member is unheard, asks: it sends its
//   own heartbeat with the query flag by unicast to the packet's source address (at most
//   once per interval_us / 4 per id), and a member that gets a query answers with its
//   heartbeat by unicast to the querier. Its view then holds the peer half an interval and
//   a round trip after the peer's first packet, whatever the group's size. Members that
//   start together miss each other's first heartbeats (sent before the others listened):
//   the first early answer after a member's start is interval_us / 4 after it at any size
//   (the round of answers that forms the views), only later ones are spaced as above.
//
//   Failure: an alive member not heard for timeout_us is marked failed at exactly that
//   deadline (the stage's one timer covers both the next heartbeat and the earliest
//   failure deadline). A member named in the manifest but never heard is marked failed
//   timeout_us after start, so "ack from all" does not wait for it forever. A failed
//   member heard again (a partition healed) rejoins with member_joined. A tick that comes
//   more than interval_us after the deadline armed means this member itself was not
//   running (descheduled, or its loop blocked): the others' heartbeats may wait unread, and
//   an event loop may run the tick before it reads them. Then no member is failed until
//   timeout_us after that tick, so a pause of ours never fails the whole view at once.
//
//   Large groups: every heartbeat reaches every member, so with a fixed interval the
//   heartbeats arriving at each member would grow with the group (a million arrivals per
//   round at 1,000 members). Beyond kHeartbeatGroup members (32) each member's interval,
//   its jitter, the gap between early answers and the failure timeout all grow in
//   proportion to the slots in the view (ceil(slots / 32) times): the heartbeats a member
//   receives stay at most about 32 per interval_us whatever the size, and a failure is
//   detected after timeout_us * ceil(slots / 32) (a member that sends data is kept alive by
//   its data as well). Groups of up to 32 members behave exactly as before.
//
//   Events carry the member's slot bit in Event::members and its sender and epoch;
//   member_restarted also carries the retired epoch in Event::seq.
//
//   The hot path does not allocate; Group::heard allocates the name once per new slot.
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "primitives/membership/heartbeat_format.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

namespace hb = detail::membership;

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_HEARTBEAT_COUNTERS(X, P)                                                                                \
  X(P, heartbeats_sent, "heartbeats sent (periodic, early and goodbyes)")                                           \
  X(P, heartbeats_received, "well-formed heartbeats received")                                                      \
  X(P, early_heartbeats, "heartbeats sent or brought forward because a member appeared")                            \
  X(P, joins, "members heard for the first time, or again after failing or leaving")                                \
  X(P, failures, "members declared failed (not heard within timeout_us)")                                           \
  X(P, restarts, "members heard with a new epoch")                                                                  \
  X(P, leaves, "members that said goodbye")                                                                         \
  X(P, malformed, "heartbeats dropped: bad body, name length or name bytes")                                        \
  X(P, stale_heartbeats, "heartbeats dropped: from a retired epoch of their member")                                \
  X(P, name_conflicts, "heartbeats dropped: they carry this member's own name")                                     \
  X(P, group_full, "heartbeats dropped: no free Group slot for a new member")                                       \
  X(P, alloc_failures, "heartbeats not sent: no packet buffer")                                          \
  X(P, queries, "heartbeats sent by unicast to ask an unknown id's sender for its heartbeat")             \
  X(P, query_answers, "heartbeats sent by unicast to answer a query")
TMC_STAGE_COUNTERS("membership.", TMC_HEARTBEAT_COUNTERS);

constexpr std::string_view kKind = "membership.heartbeat";
constexpr std::size_t kRetiredEpochs = 4;

// What this stage remembers per Group slot beyond the Group itself.
struct SlotExtra {
  std::array<std::uint32_t, kRetiredEpochs> retired{};
  std::uint8_t n_retired = 0;
  std::uint8_t next_retired = 0;  ///< ring position of the next retirement
};

class HeartbeatStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    // The registry checked each range; what relates two parameters is checked here.
    const std::int64_t interval_us = params.integer("interval_us");
    const std::int64_t timeout_us = params.integer("timeout_us");
    if (timeout_us <= interval_us) {
      errors.push_back("parameter 'timeout_us' (" + std::to_string(timeout_us) +
                       ") must be larger than 'interval_us' (" + std::to_string(interval_us) +
                       "), or members are declared failed between two of their heartbeats");
      return false;
    }
    interval_ns_ = static_cast<std::uint64_t>(interval_us) * 1000;
    timeout_ns_ = static_cast<std::uint64_t>(timeout_us) * 1000;
    reply_gap_ns_ = interval_ns_ / 4;
    jitter_ns_ = interval_ns_ / 10;
    receives_ = params.boolean("receives");
    leave_copies_ = static_cast<int>(params.integer("leave_copies"));
    env_ = env;
    rng_ = env.seed ^ 0x6A09E667F3BCC909ull;
    return true;
  }

  void on_start(StageIo& io) noexcept override {
    started_ = true;
    start_ns_ = io.now_ns();
    set_self_name(io.group());
    note_named_members(io.group());
    send_heartbeat(io, 0);
    rearm(io);
  }

  void on_stop(StageIo& io) noexcept override {
    if (!started_ || stopped_) return;
    stopped_ = true;
    for (int i = 0; i < leave_copies_; ++i) send_heartbeat(io, hb::kFlagLeaving);
    io.cancel_timer();
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::heartbeat) {
      Group& g = io.group();
      if (!g.touch(p->sender, p->epoch, io.now_ns())) {
        if (!admits_sender(g, p->sender)) {
          io.drop(p, DropReason::not_in_view);  // a closed view: not a named member's id
          return;
        }
        if (closed_ && !stopped_ && p->src_ip != 0 && g.slot_of_sender(p->sender) == kNoSlot) {
          query(p->sender, p->src_ip, p->src_port, io);  // a named member whose heartbeat we lost
        }
      }
      io.up(p);
      return;
    }
    on_heartbeat(p, io);
  }

  void on_tick(StageIo& io) noexcept override {
    if (stopped_) return;
    const std::uint64_t now = io.now_ns();
    Group& g = io.group();
    // A tick a whole interval past the deadline we armed means this member was not running
    // (its process descheduled or its loop blocked): what the others sent meanwhile may
    // still wait unread, and the loop may tick before it reads. Nobody is failed for a
    // silence we could not hear: each gets a full timeout from now.
    if (armed_ns_ != 0 && now > armed_ns_ + interval_ns_ * scale_) grace_until_ns_ = now + timeout_ns_ * scale_;
    for (std::size_t s = 1; s < g.slots(); ++s) {
      const int slot = static_cast<int>(s);
      const MemberInfo& m = g.member(slot);
      const std::uint64_t due = failure_deadline(m);
      if (due == 0 || due > now) continue;
      g.mark(slot, MemberState::failed);
      io.count(failures);
      notify(io, EventType::member_failed, slot, g.member(slot));
    }
    if (now >= next_heartbeat_ns_) send_heartbeat(io, 0);
    rearm(io);
  }

 private:
  // The instant `m` is declared failed unless heard before (0: not watched).
  std::uint64_t failure_deadline(const MemberInfo& m) const noexcept {
    if (m.state == MemberState::alive) return std::max(m.last_heard_ns + timeout_ns_ * scale_, grace_until_ns_);
    if (m.state == MemberState::expected) return std::max(start_ns_ + timeout_ns_ * scale_, grace_until_ns_);
    return 0;
  }

  void rearm(StageIo& io) noexcept {
    if (stopped_) return;
    const Group& g = io.group();
    update_scale(g);
    std::uint64_t d = next_heartbeat_ns_;
    for (std::size_t s = 1; s < g.slots(); ++s) {
      const std::uint64_t due = failure_deadline(g.member(static_cast<int>(s)));
      if (due != 0 && due < d) d = due;
    }
    armed_ns_ = d;
    io.arm_timer(d);
  }

  // The name this member announces: the Group's (from the plan), or one made from the
  // sender id when the plan has none or one that cannot travel in a heartbeat.
  // The manifest's named members are the slots still expected at start. With any, the
  // view is closed: no other name joins, and data enters only from a member heard under a
  // named slot or from the id a named member's name hashes to (its FNV-1a).
  void note_named_members(const Group& g) noexcept {
    named_ids_.clear();
    for (std::size_t i = 1; i < g.slots(); ++i) {
      const MemberInfo& m = g.member(static_cast<int>(i));
      if (m.state == MemberState::expected) named_ids_.push_back(wire::channel_hash(m.name.data(), m.name.size()));
    }
    std::sort(named_ids_.begin(), named_ids_.end());
    closed_ = !named_ids_.empty();
    extra_.resize(g.slots());
    if (closed_) {
      std::size_t cap = 16;
      while (cap < named_ids_.size() * 2) cap *= 2;
      queried_.assign(cap, QueryMemo{});
      n_queried_ = 0;
    }
  }

  [[nodiscard]] bool admits_sender(const Group& g, std::uint32_t sender) const noexcept {
    if (!closed_ || g.slot_of_sender(sender) != kNoSlot) return true;
    if (std::binary_search(named_ids_.begin(), named_ids_.end(), sender)) return true;
    // A named member not heard yet may send under an id that is not its name's hash (the
    // simulator's are random): until every named member has been heard, admit the rest.
    for (std::size_t i = 1; i < g.slots(); ++i) {
      if (g.member(static_cast<int>(i)).sender == 0) return true;
    }
    return false;
  }

  void set_self_name(const Group& g) noexcept {
    const std::string& name = g.member(g.self_slot()).name;
    if (hb::valid_name(name)) {
      name_len_ = name.size();
      std::memcpy(name_.data(), name.data(), name_len_);
      return;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    const char prefix[] = "member-";
    name_len_ = 0;
    for (std::size_t i = 0; prefix[i] != '\0'; ++i) name_[name_len_++] = prefix[i];
    for (int shift = 28; shift >= 0; shift -= 4) name_[name_len_++] = kHex[(env_.sender >> shift) & 0xF];
  }

  [[nodiscard]] std::string_view self_name() const noexcept { return {name_.data(), name_len_}; }

  void send_heartbeat(StageIo& io, std::uint8_t extra_flags) noexcept {
    const std::uint64_t now = io.now_ns();
    // Whatever happens below, the next periodic heartbeat is one interval away; an
    // exhausted pool is retried then rather than in a tight loop.
    update_scale(io.group());
    const std::uint64_t jitter = jitter_ns_ * scale_;
    next_heartbeat_ns_ = now + interval_ns_ * scale_ - (jitter == 0 ? 0 : next_random() % (jitter + 1));
    if (!put_heartbeat(io, extra_flags, 0, 0)) return;
    last_sent_ns_ = now;
    sent_any_ = true;
  }

  // One heartbeat to the group (dst_ip 0) or by unicast; the periodic schedule is the
  // caller's. False when no packet buffer was free.
  bool put_heartbeat(StageIo& io, std::uint8_t extra_flags, std::uint32_t dst_ip, std::uint16_t dst_port) noexcept {
    Packet* p = io.alloc();
    if (p == nullptr) {
      io.count(alloc_failures);
      return false;
    }
    const auto flags = static_cast<std::uint8_t>((receives_ ? hb::kFlagReceives : 0) | extra_flags);
    if (!hb::write(*p, flags, self_name())) {
      io.count(alloc_failures);
      p->release();
      return false;
    }
    p->channel = env_.channel;
    p->sender = env_.sender;
    p->epoch = env_.epoch;
    p->dst_ip = dst_ip;
    p->dst_port = dst_port;
    io.count(heartbeats_sent);
    io.down(p);
    return true;
  }

  // A packet came from `sender`, an id the view does not know while a named member is
  // unheard: most likely that member, whose heartbeat was lost on the way here, or is
  // still on its way (members that start together send their heartbeats and their first
  // packets at once). So the first packet of an id only starts a clock: if the id is still
  // unknown 2 x reply_gap_ns_ later (past the first round of early heartbeats), its next
  // packet makes us ask it for a heartbeat (ours, query flag, by unicast), and again at
  // most once per reply_gap_ns_. The ids are kept in an open-addressing table sized at
  // start for the named members (the hot path never allocates); when it is full, ids not
  // in it are not asked.
  void query(std::uint32_t sender, std::uint32_t ip, std::uint16_t port, StageIo& io) noexcept {
    if (queried_.empty() || sender == 0) return;
    const std::uint64_t now = std::max<std::uint64_t>(io.now_ns(), 1);
    const std::size_t mask = queried_.size() - 1;
    std::size_t i = (sender * 0x9E3779B1u) & mask;
    for (std::size_t probes = 0; probes < queried_.size(); ++probes, i = (i + 1) & mask) {
      QueryMemo& q = queried_[i];
      if (q.sender == 0) {
        if (n_queried_ * 4 >= queried_.size() * 3) return;  // full enough
        q.sender = sender;
        q.at_ns = now + reply_gap_ns_;  // first sight: ask from 2 x reply_gap_ns_ on
        ++n_queried_;
        return;
      }
      if (q.sender != sender) continue;
      if (now < q.at_ns + reply_gap_ns_) return;
      q.at_ns = now;
      if (put_heartbeat(io, hb::kFlagQuery, ip, port)) io.count(queries);
      return;
    }
  }

  // Someone new was heard: answer with our own heartbeat soon, so that it learns of us in
  // one round trip. At most one such answer per reply_gap_ns_.
  // The first such answer after our start comes reply_gap_ns_ after our start heartbeat,
  // whatever the group's size: members that start together miss each other's first
  // heartbeats (sent before the others listened), and one round of answers soon is what
  // forms their views; later answers are spaced by the scaled gap.
  void request_early_heartbeat(StageIo& io) noexcept {
    const std::uint64_t now = io.now_ns();
    const std::uint64_t gap = early_round_ ? reply_gap_ns_ * scale_ : reply_gap_ns_;
    early_round_ = true;
    const std::uint64_t earliest = sent_any_ ? last_sent_ns_ + gap : now;
    if (earliest <= now) {
      io.count(early_heartbeats);
      send_heartbeat(io, 0);
    } else if (earliest < next_heartbeat_ns_) {
      io.count(early_heartbeats);
      next_heartbeat_ns_ = earliest;
    }
  }

  void on_heartbeat(Packet* p, StageIo& io) noexcept {
    hb::Heartbeat h;
    if (hb::parse(*p, h) != hb::ParseError::none || p->sender == 0) {
      io.count(malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    io.count(heartbeats_received);
    Group& g = io.group();
    const int known = g.slot_of_name(h.name);
    if (known == g.self_slot()) {
      // Our own name from another incarnation: our former self (same sender id, old
      // epoch) whose heartbeats are still in flight, or an impostor. Never overwrite self.
      io.count(name_conflicts);
      io.drop(p, p->sender == env_.sender ? DropReason::stale_epoch : DropReason::not_in_view);
      return;
    }
    if (known != kNoSlot && is_retired(known, p->epoch)) {
      io.count(stale_heartbeats);
      io.drop(p, DropReason::stale_epoch);
      return;
    }
    if (known == kNoSlot && closed_) {  // the manifest named the members: not one of them
      io.drop(p, DropReason::not_in_view);
      return;
    }
    if (stopped_) {  // a retired pipeline keeps its last view
      p->release();
      return;
    }
    if (h.leaving()) {
      on_goodbye(known, h, p, io);
    } else {
      on_alive(known, h, p, io);
    }
  }

  void on_alive(int known, const hb::Heartbeat& h, Packet* p, StageIo& io) noexcept {
    Group& g = io.group();
    MemberState before = MemberState::expected;
    std::uint32_t old_epoch = 0;
    if (known != kNoSlot) {
      before = g.member(known).state;
      old_epoch = g.member(known).epoch;
    }
    // A new epoch of a member we knew (alive or failed) is a restart; after a goodbye the
    // same name coming back is a fresh join.
    const bool restart = old_epoch != 0 && old_epoch != p->epoch && before != MemberState::left;
    const int slot = g.heard(h.name, p->sender, p->epoch, h.receives(), io.now_ns(), p->src_ip, p->src_port);
    if (slot == kNoSlot) {
      // Every slot of the view ('max members') is taken: never silently. Reported once per
      // failure timeout, so a crowd outside the view does not flood the application.
      io.count(group_full);
      if (last_refused_ns_ == 0 || io.now_ns() >= last_refused_ns_ + timeout_ns_) {
        last_refused_ns_ = io.now_ns();
        io.notify(Event{.type = EventType::member_refused, .sender = p->sender, .epoch = p->epoch, .stage = kKind});
      }
      io.drop(p, DropReason::not_in_view);
      return;
    }
    if (old_epoch != 0 && old_epoch != p->epoch) retire(slot, old_epoch);
    const MemberInfo& m = g.member(slot);
    if (restart) {
      io.count(restarts);
      Event e = make_event(EventType::member_restarted, slot, m);
      e.seq = old_epoch;
      io.notify(e);
      request_early_heartbeat(io);
    } else if (known == kNoSlot || before != MemberState::alive) {
      io.count(joins);
      notify(io, EventType::member_joined, slot, m);
      request_early_heartbeat(io);
    }
    // It has not heard our heartbeat (see query()): answer it alone.
    if (h.query() && p->src_ip != 0 && put_heartbeat(io, 0, p->src_ip, p->src_port)) io.count(query_answers);
    p->release();
    rearm(io);
  }

  void on_goodbye(int known, const hb::Heartbeat& h, Packet* p, StageIo& io) noexcept {
    Group& g = io.group();
    // A goodbye from a name we never heard needs no slot: there is nothing to forget.
    if (known == kNoSlot || g.member(known).epoch == 0) {
      p->release();
      return;
    }
    const MemberInfo& m = g.member(known);
    const bool news = m.state != MemberState::left || m.epoch != p->epoch;
    if (m.epoch != p->epoch) {
      // The goodbye of an incarnation we never heard alive: its predecessor is gone too.
      retire(known, m.epoch);
      (void)g.heard(h.name, p->sender, p->epoch, h.receives(), io.now_ns(), p->src_ip, p->src_port);
    }
    retire(known, p->epoch);
    if (news) {
      g.mark(known, MemberState::left);
      io.count(leaves);
      notify(io, EventType::member_left, known, g.member(known));
    }
    p->release();
    rearm(io);
  }

  bool is_retired(int slot, std::uint32_t epoch) const noexcept {
    if (static_cast<std::size_t>(slot) >= extra_.size()) return false;
    const SlotExtra& x = extra_[static_cast<std::size_t>(slot)];
    for (std::uint8_t i = 0; i < x.n_retired; ++i) {
      if (x.retired[i] == epoch) return true;
    }
    return false;
  }

  void retire(int slot, std::uint32_t epoch) noexcept {
    if (epoch == 0 || is_retired(slot, epoch)) return;
    // Cold: a slot added since the last retirement gets its record here (a new member).
    if (static_cast<std::size_t>(slot) >= extra_.size()) extra_.resize(static_cast<std::size_t>(slot) + 1);
    SlotExtra& x = extra_[static_cast<std::size_t>(slot)];
    x.retired[x.next_retired] = epoch;
    x.next_retired = static_cast<std::uint8_t>((x.next_retired + 1) % kRetiredEpochs);
    if (x.n_retired < kRetiredEpochs) ++x.n_retired;
  }

  static Event make_event(EventType type, int slot, const MemberInfo& m) noexcept {
    return Event{.type = type,
                 .sender = m.sender,
                 .epoch = m.epoch,
                 .seq = 0,
                 .count = 0,
                 .stage = kKind,
                 .token = 0,
                 .members = MemberSet::of(slot)};
  }

  static void notify(StageIo& io, EventType type, int slot, const MemberInfo& m) noexcept {
    io.notify(make_event(type, slot, m));
  }

  // splitmix64 over the stage's seed: deterministic per endpoint, never global.
  std::uint64_t next_random() noexcept {
    std::uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  StageEnv env_;
  // Large groups (see the top of this file): the factor the interval, the jitter, the gap
  // between early answers and the failure timeout are multiplied by.
  static constexpr std::size_t kHeartbeatGroup = 32;
  void update_scale(const Group& g) noexcept {
    scale_ = std::max<std::uint64_t>(1, (g.slots() + kHeartbeatGroup - 1) / kHeartbeatGroup);
  }
  std::uint64_t scale_ = 1;
  std::uint64_t interval_ns_ = 0;
  std::uint64_t timeout_ns_ = 0;
  std::uint64_t reply_gap_ns_ = 0;
  std::uint64_t jitter_ns_ = 0;
  bool receives_ = true;
  int leave_copies_ = 3;
  std::uint64_t rng_ = 0;

  bool started_ = false;
  bool stopped_ = false;
  bool closed_ = false;  ///< the manifest named the members: nobody else is admitted
  std::vector<std::uint32_t> named_ids_;  ///< the named members' id hashes, sorted
  std::uint64_t last_refused_ns_ = 0;     ///< when member_refused was last reported
  std::uint64_t start_ns_ = 0;
  std::uint64_t next_heartbeat_ns_ = 0;
  std::uint64_t armed_ns_ = 0;        ///< the deadline our timer was last armed for
  std::uint64_t grace_until_ns_ = 0;  ///< no failure before this (after a pause of ours)
  std::uint64_t last_sent_ns_ = 0;
  bool sent_any_ = false;
  std::array<char, hb::kMaxNameBytes> name_{};
  std::size_t name_len_ = 0;
  std::vector<SlotExtra> extra_;  ///< per slot; grows with the view (cold)
  // Unknown ids seen (and when they were last asked for a heartbeat, or may first be):
  // query(). Sized at start to twice the named members, a power of two.
  struct QueryMemo {
    std::uint32_t sender = 0;
    std::uint64_t at_ns = 0;
  };
  std::vector<QueryMemo> queried_;
  std::size_t n_queried_ = 0;
  bool early_round_ = false;  ///< an early heartbeat was asked for since our start
};

constexpr std::int64_t kHourUs = 3'600'000'000;

}  // namespace

void register_membership_heartbeat(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Named group membership: heartbeats, failure detection, restarts (writes the Group view)",
      .notes =
          "Sends Kind::heartbeat packets (Ext::membership: u8 flags bit0 receives / bit1 leaving / bit2 query, "
          "u8 name_len, u16 reserved; payload = the member's name) at start, every interval_us (minus a seeded "
          "jitter of up to a tenth), at once when a new member or a new epoch is heard (at most one per interval_us/4), and "
          "leave_copies goodbyes with the leaving bit at stop. In a closed view (named members), a packet from "
          "an id still unknown interval_us/2 after its first one, while a named member is unheard, is answered "
          "with a query heartbeat by unicast to its source (at most one per interval_us/4 per id), and a query "
          "is answered with a heartbeat by unicast: a lost heartbeat is repaired in a round trip, not an "
          "interval. Every heartbeat updates the Group (the only "
          "writer); every other packet from a known alive (sender, epoch) refreshes its liveness and passes "
          "unchanged. Heartbeats are consumed. An alive member not heard for timeout_us is marked failed "
          "(member_failed), as is a manifest-named member never heard within timeout_us of start; a new epoch "
          "of a known name is a restart (member_restarted, Event::seq = the retired epoch) and heartbeats of "
          "the last 4 retired epochs of a member are dropped (stale_epoch); a goodbye marks the member left "
          "(member_left) and retires its epoch. Events carry the member's slot bit, sender and epoch. "
          "Malformed heartbeats (wrong body length, name_len != payload_len, empty name, control bytes in "
          "the name) are dropped as malformed.",
      .params = {{.name = "interval_us",
                  .type = ParamType::integer,
                  .default_value = "100000",
                  .doc = "time between two heartbeats of this member",
                  .min = 1,
                  .max = kHourUs},
                 {.name = "timeout_us",
                  .type = ParamType::integer,
                  .default_value = "1000000",
                  .doc = "an alive member not heard this long is failed; must exceed interval_us",
                  .min = 1,
                  .max = kHourUs},
                 {"receives", ParamType::boolean, "true",
                  "false: this member is send-only and is never waited for in an ack set"},
                 {.name = "leave_copies",
                  .type = ParamType::integer,
                  .default_value = "3",
                  .doc = "goodbye heartbeats sent when the pipeline stops (each may be lost)",
                  .min = 0,
                  .max = 16}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<HeartbeatStage>(); },
      .serves = "reliability",
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::membership),
                      .name = "membership",
                      .body_bytes = detail::membership::kBodyBytes,
                      .carried_on = "kind heartbeat",
                      .body = "u8 flags (bit 0 receives, bit 1 leaving, bit 2 query), u8 name length (equal to "
                              "the payload length), u16 reserved (4 bytes); the payload is the member's name"}},
  });
}

}  // namespace tmc
