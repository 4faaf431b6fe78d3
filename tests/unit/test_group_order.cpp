// ordering.group: member sequencer (self-delivery, announcements, gap skipping, unordered
// opt-out), network sequencer stamps (group_seq, sessions), and the shared stamping code.
#include <doctest/doctest.h>

#include <limits>
#include <map>
#include <memory>

#include "../support/recording_sink.hpp"
#include "primitives/checksum/crc32c_impl.hpp"
#include "sequencer/stamp.hpp"
#include "primitives/reliability/ack_format.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

Plan group_plan(std::string self, std::initializer_list<std::pair<const std::string, std::string>> params) {
  Plan p = make_plan({stage("ordering.group", params), stage("ordering.seq")});
  for (const auto& [k, v] : params) p.traits.network_sequenced |= k == "network_sequencer" && !v.empty();
  p.member = std::move(self);
  p.members = {"a", "b", "c"};
  return p;
}

// An announcement from (sender, epoch) with entries {s, e, seq, g}.
struct Entry {
  std::uint32_t sender, epoch;
  std::uint64_t seq, g;
};
Packet* announcement(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::vector<Entry> entries) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(entries.size() * 24));
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::uint8_t* e = s->payload() + i * 24;
    wire::put_u32(e, entries[i].sender);
    wire::put_u32(e + 4, entries[i].epoch);
    wire::put_u64(e + 8, entries[i].seq);
    wire::put_u64(e + 16, entries[i].g);
  }
  s->kind = wire::Kind::control;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  std::uint8_t* body = s->push_ext(wire::Ext::order, 4);
  REQUIRE(body != nullptr);
  wire::put_u32(body, static_cast<std::uint32_t>(entries.size()));
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

// A data datagram as tmc-sequencer would multicast it.
Packet* stamped(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t g,
                std::uint32_t session, std::string_view payload) {
  Packet* d = datagram(pool, sender, epoch, seq, payload);
  REQUIRE(wire::decode(*d) == wire::DecodeError::none);
  Packet* out = pool.alloc();
  REQUIRE(out != nullptr);
  out->reset_for_receive();
  out->len = static_cast<std::uint32_t>(detail::stamp_group_seq(*d, g, session, out->buf, out->cap));
  REQUIRE(out->len != 0);
  d->release();
  return out;
}

// Kinds other than data are never stamped.
void ctl_release_check(PacketPool& pool) {
  detail::SequencerAdmission adm;
  Packet* ctl = datagram(pool, 7, 3, 0, "c", 0, wire::Kind::control);
  REQUIRE(wire::decode(*ctl) == wire::DecodeError::none);
  int emitted = 0;
  CHECK(adm.admit(*ctl, [](void* c, const std::uint8_t*, std::size_t) { ++*static_cast<int*>(c); }, &emitted) ==
        detail::SequencerAdmission::Verdict::not_data);
  CHECK(emitted == 0);
  ctl->release();
}

}  // namespace

TEST_CASE("ordering.group: the sequencer orders, announces, and every member delivers one order, own included") {
  PacketPool pool(2048, 64, 4096);
  Endpoint a(pool, group_plan("a", {{"flush_us", "0"}}), make_env(1));
  Endpoint b(pool, group_plan("b", {{"flush_us", "0"}}), make_env(2));
  a->start(0);
  b->start(0);
  a.send("a1");
  b.send("b1");
  b.send("b2");
  // The sequencer (a: the smallest name) delivers its own message at once.
  CHECK(a.sink.payloads() == std::vector<std::string>{"a1"});
  CHECK(b.sink.payloads().empty());  // b waits for the order
  CHECK(carry(b, a, 10) == 2);
  CHECK(a.sink.payloads() == std::vector<std::string>{"a1", "b1", "b2"});
  a->tick(a->next_deadline_ns());  // flush the announcement batch
  CHECK(a->counters().get("ordering.group_assigned") == 3);
  CHECK(a->counters().get("ordering.group_announcements_sent") >= 1);
  carry(a, b, 20);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1", "b1", "b2"});
  CHECK(b->counters().get("ordering.group_own_delivered") == 2);
  CHECK(b->held_packets() == 0);
  CHECK(a->held_packets() == 0);
}

TEST_CASE("ordering.group: unreliable, a missing message is skipped after hold_us and reported") {
  PacketPool pool(2048, 64, 4096);
  Endpoint b(pool, group_plan("b", {{"hold_us", "1000"}}), make_env(2));
  b->start(0);
  // Sequencer 9 (epoch 5) announces 7:1 at g1 and 7:2 at g2; only 7:2's data arrives.
  b->receive(datagram(pool, 7, 3, 2, "second"), 100);
  b->receive(announcement(pool, 9, 5, {{7, 3, 1, 1}, {7, 3, 2, 2}}), 200);
  CHECK(b.sink.delivered.empty());
  REQUIRE(b->next_deadline_ns() != 0);
  CHECK(b->next_deadline_ns() <= 200 + 1'000'000);
  b->tick(b->next_deadline_ns());
  CHECK(b.sink.payloads() == std::vector<std::string>{"second"});
  REQUIRE(b.sink.count_events(EventType::gap_skipped) == 1);
  CHECK(b.sink.events[0].seq == 1);
  CHECK(b.sink.events[0].count == 1);
  CHECK(b.sink.events[0].sender == 9);
  // The late data of the skipped message is stale now.
  b->receive(datagram(pool, 7, 3, 1, "first"), 2'000'000);
  CHECK(b.sink.payloads() == std::vector<std::string>{"second"});
  CHECK(b->counters().get("ordering.group_stale") == 1);
  // Announcements from another sequencer are refused while we follow 9.
  b->receive(announcement(pool, 8, 1, {{7, 3, 3, 3}}), 2'000'100);
  CHECK(b->counters().get("ordering.group_foreign_announcements") == 1);
  CHECK(b->held_packets() == 0);
}

// Reliable mode (stability, term starts, failover) is tested in test_group_failover_wire.cpp.

TEST_CASE("ordering.group: network sequencer mode orders by group_seq and follows a new session") {
  PacketPool pool(2048, 64, 4096);
  Endpoint m(pool, group_plan("b", {{"network_sequencer", "10.0.0.9:4000"}, {"hold_us", "1000"}}), make_env(2));
  m->start(0);
  // Sends go to the sequencer by unicast.
  m.send("mine");
  REQUIRE(m.sink.transmitted.size() == 1);
  CHECK(m.sink.transmitted[0]->dst_ip == 0x0A000009);
  CHECK(m.sink.transmitted[0]->dst_port == 4000);
  // Our own datagram comes back stamped (the pipeline lets it through) and is delivered.
  Packet* own = pool.alloc();
  own->reset_for_receive();
  {
    Packet* d = as_received(pool, *m.sink.transmitted[0]);
    REQUIRE(wire::decode(*d) == wire::DecodeError::none);
    own->len = static_cast<std::uint32_t>(detail::stamp_group_seq(*d, 2, 77, own->buf, own->cap));
    d->release();
  }
  m->receive(own, 10);
  m->receive(stamped(pool, 7, 3, 1, 1, 77, "first"), 20);  // g1 arrives after g2
  CHECK(m.sink.payloads() == std::vector<std::string>{"first", "mine"});
  CHECK(m->counters().get("ordering.group_own_delivered") == 1);
  // Duplicate stamp: dropped.
  m->receive(stamped(pool, 7, 3, 1, 1, 77, "first"), 30);
  CHECK(m.sink.delivered.size() == 2);
  // The sequencer restarted: session 78 numbers from 1 again.
  m->receive(stamped(pool, 7, 3, 2, 1, 78, "after restart"), 40);
  CHECK(m.sink.payloads().back() == "after restart");
  CHECK(m.sink.count_events(EventType::sequencer_changed) == 1);
  // A straggler of the retired session is stale.
  m->receive(stamped(pool, 7, 3, 3, 3, 77, "old"), 50);
  CHECK(m.sink.delivered.size() == 3);
  // Unstamped ordered data cannot be placed in the order.
  m->receive(datagram(pool, 7, 3, 4, "raw"), 60);
  CHECK(m->counters().get("ordering.group_no_stamp") == 1);
  CHECK(m->held_packets() == 0);
}

TEST_CASE("ordering.group: bad parameters are refused by name") {
  PacketPool pool(2048, 16, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(group_plan("a", {{"network_sequencer", "not-an-address"}}), Registry::builtin(),
                                    make_env(1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  CHECK(st.message().find("network_sequencer") != std::string::npos);
  const Status st2 =
      Pipeline::build(group_plan("a", {{"window", "0"}}), Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(st2.message().find("parameter 'window' must be in 1..1048576, got 0") != std::string::npos);
  const Status st3 =
      Pipeline::build(group_plan("a", {{"flush_us", "-1"}}), Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(st3.message().find("parameter 'flush_us' must be in 0..1000000, got -1") != std::string::npos);
  const Status st4 = Pipeline::build(group_plan("a", {{"network_sequencer", "10.0.0.256:4000"}}),
                                     Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(st4.message().find("network_sequencer") != std::string::npos);
}

TEST_CASE("stamp_group_seq: inserts or replaces group_seq, keeps the rest, recomputes the CRC") {
  PacketPool pool(2048, 16, 64);
  Packet* d = datagram(pool, 7, 3, 5, "payload!", wire::kFlagCrc);
  // datagram() sealed with the CRC flag but no trailer: append a valid one the way the
  // checksum stage does, so decode accepts it.
  wire::put_u32(d->buf + d->len, detail::crc32c(d->buf, d->len));
  d->len += 4;
  REQUIRE(wire::decode(*d) == wire::DecodeError::none);
  std::vector<std::uint8_t> out(2048);
  const std::size_t n = detail::stamp_group_seq(*d, 42, 9, out.data(), out.size());
  REQUIRE(n == d->len + 14);
  Packet* r = pool.alloc();
  r->reset_for_receive();
  std::memcpy(r->buf, out.data(), n);
  r->len = static_cast<std::uint32_t>(n);
  REQUIRE(wire::decode(*r) == wire::DecodeError::none);
  std::uint8_t len = 0;
  const std::uint8_t* g = r->ext(wire::Ext::group_seq, &len);
  REQUIRE(g != nullptr);
  CHECK(len == 12);
  CHECK(wire::get_u64(g) == 42);
  CHECK(wire::get_u32(g + 8) == 9);
  REQUIRE(r->ext(wire::Ext::seq) != nullptr);
  CHECK(wire::get_u64(r->ext(wire::Ext::seq)) == 5);
  CHECK(std::string(reinterpret_cast<const char*>(r->payload()), r->payload_len) == "payload!");
  CHECK(detail::crc32c(r->buf, n - 4) == wire::get_u32(r->buf + n - 4));
  // Stamping a stamped datagram replaces the number instead of adding a second extension.
  const std::size_t n2 = detail::stamp_group_seq(*r, 43, 9, out.data(), out.size());
  CHECK(n2 == n);
  // No room: refused, never overrun.
  CHECK(detail::stamp_group_seq(*r, 44, 9, out.data(), 10) == 0);
  ctl_release_check(pool);
  r->release();
  d->release();
}

// --- the network sequencer's admission (SequencerAdmission) ---------------------------------

namespace {

using Adm = detail::SequencerAdmission;
using V = Adm::Verdict;

// A data datagram from (sender, epoch) with per-sender number `seq`, and when `rseq` != 0
// the reliability extension (reliable number `rseq`, trailing edge `trail`), decoded.
struct Raw {
  std::vector<std::uint8_t> bytes;
  Packet p;
};
std::unique_ptr<Raw> raw(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq,
                         std::uint64_t rseq = 0, std::uint64_t trail = 0, std::uint16_t flags = 0) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  const std::string payload = std::to_string(sender) + ":" + std::to_string(seq);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = wire::Kind::data;
  s->flags = flags;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  std::uint8_t* body = s->push_ext(wire::Ext::seq, 8);
  REQUIRE(body != nullptr);
  wire::put_u64(body, seq);
  if (rseq != 0) {
    s->flags |= wire::kFlagReliable;
    std::uint8_t* rb = s->push_ext(wire::Ext::rel, detail::kRelBodyBytes);
    REQUIRE(rb != nullptr);
    detail::encode_rel(rb, detail::RelBody{rseq, trail});
  }
  s->seal();
  auto r = std::make_unique<Raw>();
  r->bytes.assign(s->data(), s->data() + s->len);
  s->release();
  r->p.buf = r->bytes.data();
  r->p.cap = static_cast<std::uint32_t>(r->bytes.size());
  r->p.len = r->p.cap;
  REQUIRE(wire::decode(r->p) == wire::DecodeError::none);
  return r;
}

// What the sequencer multicast, decoded.
struct Out {
  std::uint32_t sender, epoch;
  std::uint64_t seq, g;
  std::uint32_t session;
  bool operator==(const Out&) const = default;
};
struct Emitted {
  std::vector<Out> out;
  static void emit(void* ctx, const std::uint8_t* d, std::size_t n) {
    std::vector<std::uint8_t> copy(d, d + n);
    Packet p;
    p.buf = copy.data();
    p.cap = static_cast<std::uint32_t>(n);
    p.len = p.cap;
    REQUIRE(wire::decode(p) == wire::DecodeError::none);
    std::uint8_t len = 0;
    const std::uint8_t* g = p.ext(wire::Ext::group_seq, &len);
    const std::uint8_t* s = p.ext(wire::Ext::seq);
    REQUIRE(s != nullptr);
    static_cast<Emitted*>(ctx)->out.push_back(Out{p.sender, p.epoch, wire::get_u64(s),
                                                  g != nullptr ? wire::get_u64(g) : 0,
                                                  g != nullptr ? wire::get_u32(g + 8) : 0});
  }
  V admit(Adm& a, const std::unique_ptr<Raw>& r) { return a.admit(r->p, &Emitted::emit, this); }
  std::vector<std::uint64_t> seqs() const {
    std::vector<std::uint64_t> v;
    for (const Out& o : out) v.push_back(o.seq);
    return v;
  }
};

}  // namespace

TEST_CASE("SequencerAdmission: a retransmission is stamped again with the same global number and session") {
  PacketPool pool(2048, 16, 64);
  Adm adm(55);
  Emitted e;
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 8, 1, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 2, 2, 1)) == V::stamp);
  REQUIRE(e.out.size() == 3);
  CHECK(e.out[2] == Out{7, 3, 2, 3, 55});
  // Member X missed 7:1's multicast; 7 retransmits (a fresher trailing edge): same number.
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::restamp);
  REQUIRE(e.out.size() == 4);
  CHECK(e.out[3] == Out{7, 3, 1, 1, 55});
  // Unreliable copies (a duplicate on the way in) get the same number too: never two places.
  CHECK(e.admit(adm, raw(pool, 8, 1, 1)) == V::restamp);
  CHECK(e.out.back() == Out{8, 1, 1, 2, 55});
  // A new incarnation of 7 (epoch 4) is a different sender: numbered afresh.
  CHECK(e.admit(adm, raw(pool, 7, 4, 1, 1, 1)) == V::stamp);
  CHECK(e.out.back() == Out{7, 4, 1, 4, 55});
  CHECK(adm.counters().stamped == 4);
  CHECK(adm.counters().restamped == 2);
  CHECK(adm.next_global() == 5);
}

TEST_CASE("SequencerAdmission: reliable data is held until its sender's earlier numbers arrive, then stamped in order") {
  PacketPool pool(2048, 16, 64);
  Adm adm(9);
  Emitted e;
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  // 7:2 is lost on the way in; 7:3 and 7:4 arrive (7:2 still unsettled at 7: trail 2).
  CHECK(e.admit(adm, raw(pool, 7, 3, 4, 4, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 7, 3, 3, 3, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 7, 3, 4, 4, 2)) == V::duplicate);
  CHECK(e.admit(adm, raw(pool, 8, 1, 1, 1, 1)) == V::stamp);  // other senders are not held up
  CHECK(e.seqs() == std::vector<std::uint64_t>{1, 1});
  CHECK(adm.held_datagrams() == 2);
  // The retransmission of 7:2 comes: 2, 3, 4 go out in order with consecutive numbers.
  CHECK(e.admit(adm, raw(pool, 7, 3, 2, 2, 2)) == V::stamp);
  REQUIRE(e.out.size() == 5);
  CHECK(e.out[2] == Out{7, 3, 2, 3, 9});
  CHECK(e.out[3] == Out{7, 3, 3, 4, 9});
  CHECK(e.out[4] == Out{7, 3, 4, 5, 9});
  CHECK(adm.held_datagrams() == 0);
  CHECK(adm.held_bytes() == 0);
  CHECK(adm.counters().held == 2);
  CHECK(adm.counters().released == 2);
  CHECK(adm.counters().duplicate_held == 1);
  CHECK(adm.counters().passed_over == 0);
  // Retransmissions of the released ones get their numbers again.
  CHECK(e.admit(adm, raw(pool, 7, 3, 3, 3, 2)) == V::restamp);
  CHECK(e.out.back() == Out{7, 3, 3, 4, 9});
}

TEST_CASE("SequencerAdmission: the hold is bounded; a refused datagram is stamped when it comes again in turn") {
  PacketPool pool(2048, 16, 64);
  Adm::Limits lim;
  lim.max_held = 2;
  Adm adm(1, lim);
  Emitted e;
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 3, 3, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 7, 3, 4, 4, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 7, 3, 5, 5, 2)) == V::refused);
  CHECK(adm.counters().refused == 1);
  // The next in line is never refused, however full the hold.
  CHECK(e.admit(adm, raw(pool, 7, 3, 2, 2, 2)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 5, 5, 2)) == V::stamp);  // 5's retransmission
  CHECK(e.seqs() == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  // The byte budget over all senders bounds the hold too.
  Adm::Limits tiny;
  tiny.max_held_bytes = 1;
  Adm adm2(1, tiny);
  Emitted e2;
  CHECK(e2.admit(adm2, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  CHECK(e2.admit(adm2, raw(pool, 7, 3, 3, 3, 2)) == V::refused);
  CHECK(adm2.held_bytes() == 0);
}

TEST_CASE("SequencerAdmission: holes only where nothing can fill them (unreliable, or settled at the sender)") {
  PacketPool pool(2048, 16, 64);
  Adm adm(1);
  Emitted e;
  // Unreliable: nobody retransmits 1 and 2, so 3 goes at once and they are passed over.
  CHECK(e.admit(adm, raw(pool, 7, 3, 3)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 1)) == V::stale);
  CHECK(e.admit(adm, raw(pool, 7, 3, 2)) == V::stale);
  CHECK(e.admit(adm, raw(pool, 7, 3, 6)) == V::stamp);
  CHECK(adm.counters().passed_over == 2);  // 4 and 5 (1 and 2 were before 3, its first)
  CHECK(adm.counters().stale == 2);
  // Reliable: 8:2 was an unordered message (sent straight to the group, acked there), so
  // it never comes here. 8:3 waits until 8's trailing edge passes 8:2, then goes.
  CHECK(e.admit(adm, raw(pool, 8, 1, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 8, 1, 3, 3, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 8, 1, 4, 4, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 8, 1, 3, 3, 3)) == V::duplicate);  // retransmitted: trail 3
  CHECK(e.seqs() == std::vector<std::uint64_t>{3, 6, 1, 3, 4});
  CHECK(adm.held_datagrams() == 0);
  // A held datagram is also released by a later one's trailing edge.
  CHECK(e.admit(adm, raw(pool, 8, 1, 6, 6, 5)) == V::held);
  // 8:7 was unreliable (no rseq) and lost: 8:8 (rseq 7) waits until 8 has settled 8:6
  // (trail 7), which its retransmission says.
  CHECK(e.admit(adm, raw(pool, 8, 1, 8, 7, 6)) == V::held);
  CHECK(e.admit(adm, raw(pool, 8, 1, 8, 7, 7)) == V::duplicate);
  CHECK(e.seqs() == std::vector<std::uint64_t>{3, 6, 1, 3, 4, 6, 8});
  // An unreliable datagram pushes out the held ones before it, in order.
  CHECK(e.admit(adm, raw(pool, 8, 1, 10, 9, 9)) == V::stamp);  // trail == rseq: all settled
  CHECK(e.admit(adm, raw(pool, 8, 1, 13, 11, 10)) == V::held);
  CHECK(e.admit(adm, raw(pool, 8, 1, 14)) == V::stamp);
  CHECK(e.seqs() == std::vector<std::uint64_t>{3, 6, 1, 3, 4, 6, 8, 10, 13, 14});
  // Its global numbers are consecutive in stamping order.
  for (std::size_t i = 0; i < e.out.size(); ++i) CHECK(e.out[i].g == i + 1);
}

TEST_CASE("SequencerAdmission: the first datagram of a reliable incarnation waits for its unsettled predecessors") {
  PacketPool pool(2048, 16, 64);
  Adm adm(1);
  Emitted e;
  // 7:3 arrives first and says 1 and 2 (rseq 1, 2 >= trail 1) are unsettled.
  CHECK(e.admit(adm, raw(pool, 7, 3, 3, 3, 1)) == V::held);
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 2, 2, 1)) == V::stamp);
  CHECK(e.seqs() == std::vector<std::uint64_t>{1, 2, 3});
  // A sender first seen mid-stream (this sequencer restarted) whose earlier messages are
  // all settled starts at once.
  CHECK(e.admit(adm, raw(pool, 8, 1, 500, 500, 500)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 8, 1, 499, 499, 499)) == V::stale);
}

TEST_CASE("SequencerAdmission: the history ring wraps; older retransmissions are refused as stale") {
  PacketPool pool(2048, 64, 256);
  Adm::Limits lim;
  lim.history = 16;
  Adm adm(1, lim);
  Emitted e;
  std::map<std::uint64_t, std::uint64_t> g_of;  // 7's seq -> global
  for (std::uint64_t k = 1; k <= 40; ++k) {
    REQUIRE(e.admit(adm, raw(pool, 7, 3, k, k, k)) == V::stamp);
    g_of[k] = e.out.back().g;
    REQUIRE(e.admit(adm, raw(pool, 8, 1, k, k, k)) == V::stamp);  // interleaved: g != seq
  }
  for (std::uint64_t k = 25; k <= 40; ++k) {
    CHECK(e.admit(adm, raw(pool, 7, 3, k, k, 30)) == V::restamp);
    CHECK(e.out.back() == Out{7, 3, k, g_of[k], 1});
  }
  CHECK(e.admit(adm, raw(pool, 7, 3, 24, 24, 30)) == V::stale);
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 30)) == V::stale);
  CHECK(adm.counters().stale == 2);
  CHECK(adm.counters().restamped == 16);
}

TEST_CASE("SequencerAdmission: hostile input — huge numbers, floods of senders and held data — stays bounded") {
  PacketPool pool(2048, 64, 256);
  Adm::Limits lim;
  lim.max_senders = 8;
  lim.history = 64;
  lim.max_held = 4;
  lim.max_held_bytes = 4096;
  Adm adm(1, lim);
  Emitted e;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  // Huge jumps: unreliable to the top of the range; the ring clears at most `history` slots.
  CHECK(e.admit(adm, raw(pool, 7, 3, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, kMax - 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, kMax)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, kMax)) == V::restamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, kMax - 2)) == V::stale);
  CHECK(e.admit(adm, raw(pool, 7, 3, 2)) == V::stale);
  // Reliable far ahead: held within the bounds, never stamped out of turn.
  CHECK(e.admit(adm, raw(pool, 9, 1, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 9, 1, std::uint64_t{1} << 62, 1000, 2)) == V::held);
  CHECK(e.admit(adm, raw(pool, 9, 1, 2, 2, 2)) == V::stamp);
  CHECK(e.out.back().seq == 2);
  const std::size_t state = adm.state_bytes();
  // A flood of incarnations: at most max_senders remembered, the rest evicted.
  for (std::uint32_t s = 100; s < 1100; ++s) {
    (void)e.admit(adm, raw(pool, s, 1, 5, 5, 1));  // each holds one (predecessors unsettled)
  }
  CHECK(adm.senders() == 8);
  CHECK(adm.counters().senders_evicted >= 1000 - 8);
  CHECK(adm.held_bytes() <= 4096);
  CHECK(adm.held_datagrams() <= 8 * 4);
  CHECK(adm.state_bytes() <= state + 8 * (64 * 8 + 4 * 64));
  // Malformed numbers are refused.
  Packet* noseq = datagram(pool, 7, 3, 0, "n");
  REQUIRE(wire::decode(*noseq) == wire::DecodeError::none);
  CHECK(adm.admit(*noseq, &Emitted::emit, &e) == V::no_seq);
  noseq->release();
}

TEST_CASE("SequencerAdmission: unordered data is relayed unchanged, outside the order") {
  PacketPool pool(2048, 16, 64);
  Adm adm(1);
  Emitted e;
  CHECK(e.admit(adm, raw(pool, 7, 3, 1, 1, 1)) == V::stamp);
  CHECK(e.admit(adm, raw(pool, 7, 3, 2, 0, 0, wire::kFlagUnordered)) == V::relay);
  REQUIRE(e.out.size() == 2);
  CHECK(e.out[1].g == 0);  // no group_seq
  CHECK(adm.counters().relayed == 1);
  CHECK(adm.next_global() == 2);
}
