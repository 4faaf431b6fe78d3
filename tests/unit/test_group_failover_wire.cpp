// ordering.group reliable mode: stability-based delivery, term starts, the failover cut, and
// the wire pieces (status, term start and typed announce bodies of Ext::order): malformed or
// truncated bodies are dropped as malformed and counted, never a crash.
#include <doctest/doctest.h>

#include <cstring>

#include "../support/recording_sink.hpp"
#include "primitives/ordering/group/wire.hpp"

using namespace tmc;
using namespace tmc::test;
namespace gwn = tmc::detail::group_wire;

namespace {

constexpr std::uint32_t kEpoch = 1000;  // make_env's default epoch

Plan group_plan(std::string self, std::initializer_list<std::pair<const std::string, std::string>> params) {
  Plan p = make_plan({stage("ordering.group", params), stage("ordering.seq")});
  p.member = std::move(self);
  p.members = {"a", "b", "c"};
  return p;
}

struct Entry {
  std::uint32_t sender, epoch;
  std::uint64_t seq, g;
};

// A control packet from (sender, epoch) with an Ext::order body and payload as given.
Packet* control(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, const std::vector<std::uint8_t>& body,
                const std::vector<std::uint8_t>& payload, bool reliable = false) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = wire::Kind::control;
  s->flags = reliable ? wire::kFlagReliable : 0;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  std::uint8_t* b = s->push_ext(wire::Ext::order, static_cast<std::uint8_t>(body.size()));
  REQUIRE(b != nullptr);
  if (!body.empty()) std::memcpy(b, body.data(), body.size());
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

std::vector<std::uint8_t> entries(const std::vector<Entry>& es) {
  std::vector<std::uint8_t> out(es.size() * gwn::kEntryBytes);
  for (std::size_t i = 0; i < es.size(); ++i) {
    std::uint8_t* e = out.data() + i * gwn::kEntryBytes;
    wire::put_u32(e, es[i].sender);
    wire::put_u32(e + 4, es[i].epoch);
    wire::put_u64(e + 8, es[i].seq);
    wire::put_u64(e + 16, es[i].g);
  }
  return out;
}

std::vector<std::uint8_t> announce_body(std::uint32_t term_no, std::uint32_t count) {
  std::vector<std::uint8_t> b(gwn::kAnnounceBody);
  b[0] = gwn::kTypeAnnounce;
  wire::put_u32(b.data() + 1, term_no);
  wire::put_u32(b.data() + 5, count);
  return b;
}

std::vector<std::uint8_t> start_body(std::uint32_t term_no, std::uint32_t n_records, std::uint32_t n_cutoffs) {
  std::vector<std::uint8_t> b(gwn::kStartBody);
  gwn::write_start_body(b.data(), term_no, n_records, n_cutoffs);
  return b;
}

std::vector<std::uint8_t> status_body(bool frozen, gwn::TermId term, std::uint64_t held, std::uint64_t delivered,
                                      std::uint64_t stable, std::uint32_t n_records = 0) {
  std::vector<std::uint8_t> b(gwn::kStatusBody);
  gwn::Status s;
  s.frozen = frozen;
  s.term = term;
  s.held = held;
  s.delivered = delivered;
  s.stable = stable;
  s.n_records = n_records;
  gwn::write_status_body(b.data(), s);
  return b;
}

std::vector<std::uint8_t> record_bytes(const std::vector<gwn::CutRecord>& records) {
  std::vector<std::uint8_t> out(records.size() * gwn::kRecordBytes);
  for (std::size_t i = 0; i < records.size(); ++i) gwn::put_record(out.data() + i * gwn::kRecordBytes, records[i]);
  return out;
}

}  // namespace

TEST_CASE("ordering.group: reliable mode waits for stability, never skips by time; unordered data at once") {
  PacketPool pool(2048, 64, 4096);
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}, {"hold_us", "1000"}}), make_env(2));
  // The view (membership would fill it): a is 9/5 (the sequencer: smallest name), c is 7/3.
  b->group().heard("a", 9, 5, true, 0);
  b->group().heard("c", 7, 3, true, 0);
  b->start(0);
  b->receive(control(pool, 9, 5, start_body(1, 0, 0), {}, true), 50);
  b->receive(datagram(pool, 7, 3, 2, "second"), 100);
  b->receive(control(pool, 9, 5, announce_body(1, 2), entries({{7, 3, 1, 1}, {7, 3, 2, 2}}), true), 200);
  b->receive(datagram(pool, 7, 3, 3, "now", wire::kFlagUnordered), 300);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now"});
  b->receive(datagram(pool, 7, 3, 1, "first"), 10'000'000'000);
  b->tick(10'000'000'000);
  // b holds g1 and g2, but a and c have not said they do: not stable, not delivered.
  CHECK(b.sink.payloads() == std::vector<std::string>{"now"});
  b->receive(control(pool, 9, 5, status_body(false, {1, 9, 5}, 2, 0, 0), {}), 10'000'000'100);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now"});
  b->receive(control(pool, 7, 3, status_body(false, {1, 9, 5}, 1, 0, 0), {}), 10'000'000'200);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now", "first"});
  b->receive(control(pool, 7, 3, status_body(false, {1, 9, 5}, 2, 1, 1), {}), 10'000'000'300);
  CHECK(b.sink.payloads() == std::vector<std::string>{"now", "first", "second"});
  CHECK(b.sink.events.empty());
  CHECK(b->counters().get("ordering.group_statuses_received") == 3);
  CHECK(b->counters().get("ordering.group_term_starts") == 1);
  CHECK(b->held_packets() == 0);
  // An unreliable-mode announcement (4-byte body) is not part of the protocol.
  std::vector<std::uint8_t> legacy(4);
  wire::put_u32(legacy.data(), 1);
  b->receive(control(pool, 9, 5, legacy, entries({{7, 3, 4, 3}})), 10'000'000'400);
  CHECK(b->counters().get("ordering.group_foreign_announcements") == 1);
}

TEST_CASE("ordering.group: reliable failover: the new sequencer cuts the old term where every survivor holds it") {
  PacketPool pool(2048, 128, 4096);
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}, {"flush_us", "0"}}), make_env(2));
  b->group().heard("a", 9, 5, true, 0);
  b->group().heard("c", 7, 3, true, 0);
  b->start(0);
  // Term 1 of sequencer a: a's messages 9:1 and 9:2 at g1, g2; c's message 7:1 at g3.
  b->receive(control(pool, 9, 5, start_body(1, 0, 0), {}, true), 10);
  b->receive(datagram(pool, 9, 5, 1, "a1"), 20);
  b->receive(datagram(pool, 9, 5, 2, "a2"), 20);
  b->receive(datagram(pool, 7, 3, 1, "c1"), 20);
  b->receive(datagram(pool, 7, 3, 2, "c2"), 20);  // never announced
  b->receive(control(pool, 9, 5, announce_body(1, 3), entries({{9, 5, 1, 1}, {9, 5, 2, 2}, {7, 3, 1, 3}}), true),
             30);
  // a and c confirm g1 only: b delivers a1.
  b->receive(control(pool, 9, 5, status_body(false, {1, 9, 5}, 1, 0, 0), {}), 40);
  b->receive(control(pool, 7, 3, status_body(false, {1, 9, 5}, 1, 0, 0), {}), 40);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1"});
  // a fails: b (now the smallest alive name) freezes term 1 and waits for c's frozen status.
  b->group().mark(b->group().slot_of_name("a"), MemberState::failed);
  b.sink.transmitted.clear();
  b->tick(1'000'000);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1"});
  CHECK(b->counters().get("ordering.group_term_starts") == 1);  // only the one adopted
  // c holds g1 and g2 (not g3): the cut is E = 2, so a2 is delivered and c1 re-sequenced.
  b->receive(control(pool, 7, 3, status_body(true, {1, 9, 5}, 2, 1, 1), {}), 2'000'000);
  const Packet* start = nullptr;
  for (const Packet* t : b.sink.transmitted) {
    std::uint8_t len = 0;
    const std::uint8_t* body = t->ext(wire::Ext::order, &len);
    if (body != nullptr && len == gwn::kStartBody) start = t;
  }
  REQUIRE(start != nullptr);
  CHECK((start->flags & wire::kFlagReliable) != 0);
  gwn::Start st;
  std::uint8_t slen = 0;
  const std::uint8_t* sbody = start->ext(wire::Ext::order, &slen);
  REQUIRE(gwn::parse_start(sbody, slen, start->payload(), start->payload_len, st));
  CHECK(st.term_no == 2);
  REQUIRE(st.n_records == 1);
  CHECK(st.records[0].term.no == 1);
  CHECK(st.records[0].term.sender == 9);
  CHECK(st.records[0].end == 2);
  // Cut-offs: a's last number in the prefix is 2 (a is failed: not listed), c's is 0 (not listed).
  CHECK(st.n_cutoffs == 0);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1", "a2"});
  CHECK(b.sink.count_events(EventType::sequencer_changed) == 1);
  // c adopts term 2 (b's): b orders c1 and c2, and delivers once c holds them.
  const std::vector<gwn::CutRecord> recs = {{{1, 9, 5}, 2}};
  b->receive(control(pool, 7, 3, status_body(false, {2, 2, kEpoch}, 0, 0, 0, 1), record_bytes(recs)), 3'000'000);
  CHECK(b->counters().get("ordering.group_assigned") == 2);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1", "a2"});
  b->receive(control(pool, 7, 3, status_body(false, {2, 2, kEpoch}, 2, 0, 0, 1), record_bytes(recs)), 4'000'000);
  CHECK(b.sink.payloads() == std::vector<std::string>{"a1", "a2", "c1", "c2"});
  CHECK(b->counters().get("ordering.group_cut_missing") == 0);
  b->tick(4'000'000);  // flushes the announcement batch (flush_us = 0)
  CHECK(b->counters().get("ordering.group_announcements_sent") == 1);
  CHECK(b->held_packets() == 0);
}

TEST_CASE("ordering.group: a lone reliable sequencer starts a term and flags its control packets reliable") {
  PacketPool pool(2048, 64, 4096);
  Plan plan = group_plan("a", {{"reliable", "true"}, {"flush_us", "0"}});
  plan.members = {"a"};
  Endpoint a(pool, plan, make_env(1));
  a->start(0);
  a.send("x");
  for (int i = 0; i < 4 && a->next_deadline_ns() != 0; ++i) a->tick(a->next_deadline_ns());
  CHECK(a.sink.payloads() == std::vector<std::string>{"x"});
  int starts = 0;
  int announces = 0;
  int statuses = 0;
  for (const Packet* t : a.sink.transmitted) {
    std::uint8_t len = 0;
    const std::uint8_t* body = t->ext(wire::Ext::order, &len);
    if (body == nullptr) continue;
    CHECK(t->kind == wire::Kind::control);
    if (body[0] == gwn::kTypeStart) {
      ++starts;
      CHECK((t->flags & wire::kFlagReliable) != 0);
    } else if (body[0] == gwn::kTypeAnnounce) {
      ++announces;
      CHECK((t->flags & wire::kFlagReliable) != 0);
      CHECK(t->payload_len == 24);
    } else if (body[0] == gwn::kTypeStatus) {
      ++statuses;
      CHECK((t->flags & wire::kFlagReliable) == 0);
    }
  }
  CHECK(starts == 1);
  CHECK(announces == 1);
  CHECK(statuses >= 1);
}

TEST_CASE("ordering.group: malformed or truncated status, term start and announce bodies are dropped and counted") {
  PacketPool pool(2048, 64, 4096);
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}}), make_env(2));
  b->group().heard("a", 9, 5, true, 0);
  b->start(0);
  std::uint64_t expect = 0;
  auto feed = [&](const std::vector<std::uint8_t>& body, const std::vector<std::uint8_t>& payload) {
    b->receive(control(pool, 9, 5, body, payload), 100);
    ++expect;
    CHECK(b->counters().get("ordering.group_malformed") == expect);
    CHECK(b->counters().get("drops.malformed") == expect);
  };
  const auto good_status = status_body(false, {1, 9, 5}, 3, 2, 1);
  // Truncated and over-long bodies.
  for (std::ptrdiff_t cut : {1, 2, 13, 38}) feed(std::vector<std::uint8_t>(good_status.begin(), good_status.begin() + cut), {});
  auto longer = good_status;
  longer.push_back(0);
  feed(longer, {});
  // An unknown flag bit; delivered beyond held; records announced but missing; a zero term
  // with state; a record of term 0.
  auto flags = good_status;
  flags[1] = 0x80;
  feed(flags, {});
  feed(status_body(false, {1, 9, 5}, 3, 4, 1), {});
  feed(status_body(false, {1, 9, 5}, 3, 2, 1, 2), std::vector<std::uint8_t>(20, 0));
  feed(status_body(false, {0, 0, 0}, 5, 0, 0), {});
  feed(status_body(false, {2, 9, 5}, 1, 0, 0, 1), record_bytes({{{0, 1, 1}, 0}}));
  feed(status_body(false, {2, 9, 5}, 1, 0, 0, 9), std::vector<std::uint8_t>(180, 1));
  // Term starts: truncated, term 0, counts that do not match the payload, a zero-sender
  // cut-off, a record not older than the new term, too many records.
  const auto good_start = start_body(2, 0, 1);
  feed(std::vector<std::uint8_t>(good_start.begin(), good_start.begin() + 6), std::vector<std::uint8_t>(16, 1));
  feed(start_body(0, 0, 0), {});
  feed(good_start, {});
  feed(start_body(2, 1, 0), std::vector<std::uint8_t>(19, 1));
  feed(good_start, std::vector<std::uint8_t>(16, 0));
  feed(start_body(2, 1, 0), record_bytes({{{2, 1, 1}, 0}}));
  feed(start_body(2, 9, 0), std::vector<std::uint8_t>(180, 1));
  // Announcements: truncated, term 0, a count beyond the payload, a huge count.
  feed(std::vector<std::uint8_t>{gwn::kTypeAnnounce, 0, 0, 0, 1}, {});
  feed(announce_body(0, 1), std::vector<std::uint8_t>(24, 1));
  feed(announce_body(1, 2), std::vector<std::uint8_t>(24, 1));
  feed(announce_body(1, 0xFFFFFFFFu), {});
  // An unknown type and an empty body.
  feed(std::vector<std::uint8_t>{9, 0, 0, 0, 0, 0}, {});
  feed(std::vector<std::uint8_t>{}, {});
  CHECK(b.sink.delivered.empty());
  CHECK(b->counters().get("ordering.group_statuses_received") == 0);
  CHECK(b->held_packets() == 0);
  // The parsers themselves, on the good bodies.
  gwn::Status s;
  CHECK(gwn::parse_status(good_status.data(), static_cast<std::uint8_t>(good_status.size()), nullptr, 0, s));
  CHECK(s.held == 3);
  gwn::Start st;
  const std::vector<std::uint8_t> cut(16, 1);
  CHECK(gwn::parse_start(good_start.data(), static_cast<std::uint8_t>(good_start.size()), cut.data(), 16, st));
  CHECK(gwn::cutoff_at(st.cutoffs, 0).sender == 0x01010101u);
}

TEST_CASE("ordering.group: reliable: own undelivered copies past window/8 are send backlog; the table is in max_held") {
  PacketPool pool(2048, 64, 4096);
  // Nobody else heard: nothing becomes stable, every copy stays held.
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}, {"window", "64"}}), make_env(2));
  b->start(0);
  CHECK(b->max_held_packets() == 2 * 64 + 1);  // the hold table and the announcement batch
  for (int i = 0; i < 8; ++i) b.send("m" + std::to_string(i), 1000);
  CHECK(b->held_packets() == 8);
  CHECK(b->send_backlog() == 0);  // the allowance: window / 8
  for (int i = 8; i < 20; ++i) b.send("m" + std::to_string(i), 1000);
  CHECK(b->held_packets() == 20);
  CHECK(b->send_backlog() == 12);
}

TEST_CASE("ordering.group: reliable: a message the full hold table cannot keep a copy of is not sent at all") {
  PacketPool pool(2048, 64, 4096);
  Endpoint b(pool, group_plan("b", {{"reliable", "true"}, {"window", "1"}}), make_env(2));  // 2 slots
  b->start(0);
  const std::size_t sent_before = b.sink.transmitted.size();
  b.send("one", 1000);
  b.send("two", 1000);
  b.send("three", 1000);  // no slot left for its copy
  CHECK(b->held_packets() == 2);
  CHECK(b->counters().get("ordering.group_full") == 1);
  CHECK(b->counters().get("drops.buffer_full") == 1);
  // Only the two kept went out, numbered 1 and 2 by ordering.seq (the third spent no number).
  std::vector<std::uint64_t> seqs;
  for (std::size_t i = sent_before; i < b.sink.transmitted.size(); ++i) {
    if (b.sink.transmitted[i]->kind == wire::Kind::data) seqs.push_back(b.sink.transmitted[i]->seq);
  }
  CHECK(seqs == std::vector<std::uint64_t>{1, 2});
}
