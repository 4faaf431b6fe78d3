// ordering.group: member sequencer (self-delivery, announcements, gap skipping, unordered
// opt-out), network sequencer stamps (group_seq, sessions), and the shared stamping code.
#include <doctest/doctest.h>

#include "../support/recording_sink.hpp"
#include "primitives/checksum/crc32c_impl.hpp"
#include "primitives/ordering/group_stamp.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

Plan group_plan(std::string self, std::initializer_list<std::pair<const std::string, std::string>> params) {
  Plan p = make_plan({stage("ordering.group", params), stage("ordering.seq")});
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

TEST_CASE("ordering.group: reliable mode never skips by time; unordered data is delivered at once") {
  PacketPool pool(2048, 64, 4096);
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}, {"hold_us", "1000"}}), make_env(2));
  b->start(0);
  b->receive(datagram(pool, 7, 3, 2, "second"), 100);
  b->receive(announcement(pool, 9, 5, {{7, 3, 1, 1}, {7, 3, 2, 2}}), 200);
  b->receive(datagram(pool, 7, 3, 3, "now", wire::kFlagUnordered), 300);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now"});
  CHECK(b->next_deadline_ns() == 0);  // nothing timed
  b->receive(datagram(pool, 7, 3, 1, "first"), 10'000'000'000);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now", "first", "second"});
  CHECK(b.sink.events.empty());
}

TEST_CASE("ordering.group: the sequencer flags its announcements reliable in reliable mode") {
  PacketPool pool(2048, 64, 4096);
  Endpoint a(pool, group_plan("a", {{"reliable", "true"}, {"flush_us", "0"}}), make_env(1));
  a->start(0);
  a.send("x");
  a->tick(a->next_deadline_ns());
  REQUIRE(a.sink.transmitted.size() == 2);
  const Packet* ann = a.sink.transmitted[1];
  CHECK(ann->kind == wire::Kind::control);
  CHECK((ann->flags & wire::kFlagReliable) != 0);
  CHECK(ann->payload_len == 24);
}

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
  CHECK(st2.message().find("window") != std::string::npos);
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
  // Admission: duplicates and per-sender reordering are refused.
  detail::SequencerAdmission adm;
  CHECK(adm.admit(*d) == detail::SequencerAdmission::Verdict::stamp);
  CHECK(adm.admit(*d) == detail::SequencerAdmission::Verdict::stale);
  Packet* ctl = datagram(pool, 7, 3, 0, "c", 0, wire::Kind::control);
  REQUIRE(wire::decode(*ctl) == wire::DecodeError::none);
  CHECK(adm.admit(*ctl) == detail::SequencerAdmission::Verdict::not_data);
  ctl->release();
  r->release();
  d->release();
}
