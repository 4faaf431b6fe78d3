// membership.heartbeat: heartbeat encoding, hostile heartbeats, joins, failures, restarts,
// retired epochs and goodbyes, driven through real pipelines with a recording sink.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../support/recording_sink.hpp"
#include "primitives/membership/heartbeat_format.hpp"
#include "tmc/group.hpp"

using namespace tmc;
using namespace tmc::test;
namespace hb = tmc::detail::membership;

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kIntervalNs = 100 * kMs;
constexpr std::uint64_t kTimeoutNs = 1000 * kMs;

Plan member_plan(std::string name, std::initializer_list<std::pair<const std::string, std::string>> params = {},
                 std::vector<std::string> members = {}) {
  Plan plan = make_plan({stage("membership.heartbeat", params)});
  plan.member = std::move(name);
  plan.members = std::move(members);
  return plan;
}

// A forged heartbeat datagram, ready for Pipeline::receive. `body_len`, `name_len` and
// `payload` can disagree on purpose.
Packet* forged(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::uint8_t flags, std::string_view payload,
               int name_len = -1, std::uint8_t body_len = hb::kBodyBytes) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = wire::Kind::heartbeat;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  if (body_len != 0) {
    std::uint8_t* body = s->push_ext(wire::Ext::membership, body_len);
    REQUIRE(body != nullptr);
    std::memset(body, 0, body_len);
    body[0] = flags;
    if (body_len > 1) body[1] = static_cast<std::uint8_t>(name_len < 0 ? static_cast<int>(payload.size()) : name_len);
  }
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

Packet* heartbeat(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::string_view name,
                  bool leaving = false) {
  return forged(pool, sender, epoch, static_cast<std::uint8_t>(hb::kFlagReceives | (leaving ? hb::kFlagLeaving : 0)),
                name);
}

std::uint64_t counter(Endpoint& ep, std::string_view name) { return ep->counters().get(name); }

const Event* last_event(const RecordingSink& sink, EventType t) {
  for (auto it = sink.events.rbegin(); it != sink.events.rend(); ++it) {
    if (it->type == t) return &*it;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("membership.heartbeat: start sends one heartbeat with flags, name length and the name") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("alpha"), make_env(11, 111));
  a->start(5 * kMs);
  REQUIRE(a.sink.transmitted.size() == 1);
  Packet* rx = as_received(pool, *a.sink.transmitted[0]);
  REQUIRE(wire::decode(*rx) == wire::DecodeError::none);
  CHECK(rx->kind == wire::Kind::heartbeat);
  CHECK(rx->sender == 11);
  CHECK(rx->epoch == 111);
  CHECK(rx->channel == wire::channel_hash("test", 4));
  std::uint8_t len = 0;
  const std::uint8_t* body = rx->ext(wire::Ext::membership, &len);
  REQUIRE(body != nullptr);
  CHECK(len == 4);
  CHECK(body[0] == hb::kFlagReceives);
  CHECK(body[1] == 5);
  CHECK(wire::get_u16(body + 2) == 0);
  CHECK(std::string_view(reinterpret_cast<const char*>(rx->payload()), rx->payload_len) == "alpha");
  hb::Heartbeat h;
  CHECK(hb::parse(*rx, h) == hb::ParseError::none);
  CHECK(h.name == "alpha");
  rx->release();
  CHECK(counter(a, "membership.heartbeats_sent") == 1);

  // The next one is due within one interval (jitter only ever shortens it).
  const std::uint64_t next = a->next_deadline_ns();
  CHECK(next <= 5 * kMs + kIntervalNs);
  CHECK(next >= 5 * kMs + kIntervalNs - kIntervalNs / 10);
  a->tick(next);
  CHECK(a.sink.transmitted.size() == 2);
  CHECK(counter(a, "membership.heartbeats_sent") == 2);
}

TEST_CASE("membership.heartbeat: a send-only member clears the receives bit") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("tx", {{"receives", "false"}}), make_env(11));
  Endpoint b(pool, member_plan("rx"), make_env(12));
  a->start(0);
  b->start(0);
  REQUIRE(a.sink.transmitted.size() == 1);
  const Packet* p = a.sink.transmitted[0];
  CHECK(p->ext(wire::Ext::membership)[0] == 0);
  carry(a, b, kMs);
  const int slot = b->group().slot_of_name("tx");
  REQUIRE(slot > 0);
  CHECK_FALSE(b->group().member(slot).receives);
  CHECK(b->group().alive().contains(slot));
  CHECK_FALSE(b->group().receivers().contains(slot));
}

TEST_CASE("membership.heartbeat: members join, are consumed, and answer early so views converge") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1, 100));
  Endpoint b(pool, member_plan("b"), make_env(2, 200));
  a->start(0);
  b->start(50 * kMs);
  b.sink.clear();
  // b hears a's start heartbeat at 51 ms: a joins, and b answers at once (its own last
  // heartbeat was 1 ms ago, so the answer is brought forward to 50 + 25 ms).
  CHECK(carry(a, b, 51 * kMs) == 1);
  const int sa = b->group().slot_of_name("a");
  REQUIRE(sa > 0);
  CHECK(b->group().member(sa).state == MemberState::alive);
  CHECK(b->group().member(sa).sender == 1);
  CHECK(b->group().member(sa).epoch == 100);
  CHECK(b.sink.delivered.empty());  // heartbeats never reach the application
  const Event* e = last_event(b.sink, EventType::member_joined);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(sa));
  CHECK(e->sender == 1);
  CHECK(e->epoch == 100);
  CHECK(e->stage == "membership.heartbeat");
  CHECK(b->group().names(e->members) == "a");
  CHECK(counter(b, "membership.joins") == 1);
  CHECK(counter(b, "membership.early_heartbeats") == 1);
  CHECK(b->next_deadline_ns() == 75 * kMs);
  b->tick(75 * kMs);
  REQUIRE(b.sink.transmitted.size() == 1);
  // a hears b: now both views hold both members.
  carry(b, a, 76 * kMs);
  const int sb = a->group().slot_of_name("b");
  REQUIRE(sb > 0);
  CHECK(a->group().member(sb).state == MemberState::alive);
  CHECK(a->group().alive() == tmc::MemberSet::of(sb));
  CHECK(b->group().alive() == tmc::MemberSet::of(sa));

  // Hearing a known member again changes nothing and raises no event.
  const std::uint64_t view = b->group().view_id();
  const std::size_t events = b.sink.events.size();
  b->receive(heartbeat(pool, 1, 100, "a"), 80 * kMs);
  CHECK(b->group().view_id() == view);
  CHECK(b.sink.events.size() == events);
  CHECK(counter(b, "membership.heartbeats_received") == 2);
}

TEST_CASE("membership.heartbeat: hostile heartbeats are dropped as malformed and change nothing") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1));
  a->start(0);
  const std::uint64_t view = a->group().view_id();
  a->receive(forged(pool, 7, 1, 1, "bob", -1, 0), kMs);   // no membership extension
  a->receive(forged(pool, 7, 1, 1, "bob", -1, 3), kMs);   // body too short
  a->receive(forged(pool, 7, 1, 1, "bob", -1, 8), kMs);   // body too long
  a->receive(forged(pool, 7, 1, 1, "bob", 4), kMs);       // name_len beyond the payload
  a->receive(forged(pool, 7, 1, 1, "bobby", 3), kMs);     // name_len short of the payload
  a->receive(forged(pool, 7, 1, 1, ""), kMs);             // empty name
  a->receive(forged(pool, 7, 1, 1, std::string_view("b\0b", 3)), kMs);  // control byte
  a->receive(forged(pool, 7, 1, 1, "b\nb"), kMs);
  a->receive(forged(pool, 0, 1, 1, "zero"), kMs);         // sender id 0 is never assigned
  CHECK(counter(a, "membership.malformed") == 9);
  CHECK(a->drops(DropReason::malformed) == 9);
  CHECK(a->group().view_id() == view);
  CHECK(a->group().slots() == 1);
  CHECK(a.sink.events.empty());
  CHECK(a.sink.delivered.empty());
  CHECK(pool.in_use() == a.sink.transmitted.size());  // nothing leaked

  // A 255-byte name is fine; reserved bits and unknown flags are ignored.
  const std::string longest(255, 'n');
  a->receive(forged(pool, 8, 1, 0xF1, longest), kMs);
  CHECK(a->group().slot_of_name(longest) > 0);
  CHECK(counter(a, "membership.malformed") == 9);
}

TEST_CASE("membership.heartbeat: a heartbeat with our own name never overwrites self") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1, 100));
  a->start(0);
  a->receive(heartbeat(pool, 9, 5, "a"), kMs);    // an impostor
  a->receive(heartbeat(pool, 1, 99, "a"), kMs);   // our former incarnation
  CHECK(a->group().slots() == 1);
  CHECK(a->group().member(0).epoch == 100);
  CHECK(counter(a, "membership.name_conflicts") == 2);
  CHECK(a->drops(DropReason::not_in_view) == 1);
  CHECK(a->drops(DropReason::stale_epoch) == 1);
}

TEST_CASE("membership.heartbeat: silence for timeout_us is a failure; any packet refreshes liveness") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a", {{"interval_us", "100000"}, {"timeout_us", "1000000"}}), make_env(1));
  a->start(0);
  a->receive(heartbeat(pool, 2, 20, "b"), 10 * kMs);
  const int sb = a->group().slot_of_name("b");
  REQUIRE(sb > 0);
  // A data packet from b at 500 ms passes up unchanged and moves the deadline to 1.5 s.
  a->receive(datagram(pool, 2, 20, 0, "payload"), 500 * kMs);
  REQUIRE(a.sink.delivered.size() == 1);
  CHECK(a.sink.payloads() == std::vector<std::string>{"payload"});
  // Run the timer as a shell would, up to just before the deadline.
  std::uint64_t now = 0;
  while (a->next_deadline_ns() != 0 && a->next_deadline_ns() < 1500 * kMs) {
    now = a->next_deadline_ns();
    a->tick(now);
  }
  CHECK(a->group().member(sb).state == MemberState::alive);
  CHECK(a->next_deadline_ns() == 1500 * kMs);
  a->tick(1500 * kMs);
  CHECK(a->group().member(sb).state == MemberState::failed);
  CHECK(a->group().alive().empty());
  const Event* e = last_event(a.sink, EventType::member_failed);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(sb));
  CHECK(e->sender == 2);
  CHECK(e->epoch == 20);
  CHECK(counter(a, "membership.failures") == 1);
  // Data alone does not revive a failed member; a heartbeat does (a healed partition).
  a->receive(datagram(pool, 2, 20, 0, "late"), 1600 * kMs);
  CHECK(a->group().member(sb).state == MemberState::failed);
  a->receive(heartbeat(pool, 2, 20, "b"), 1700 * kMs);
  CHECK(a->group().member(sb).state == MemberState::alive);
  CHECK(a.sink.count_events(EventType::member_joined) == 2);
  CHECK(a.sink.count_events(EventType::member_restarted) == 0);
}

TEST_CASE("membership.heartbeat: a new epoch is a restart and the retired epoch is ignored") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1));
  a->start(0);
  a->receive(heartbeat(pool, 2, 20, "b"), kMs);
  const int sb = a->group().slot_of_name("b");
  REQUIRE(sb > 0);
  a->receive(heartbeat(pool, 2, 21, "b"), 2 * kMs);
  CHECK(a->group().member(sb).epoch == 21);
  CHECK(a->group().slot_of_name("b") == sb);  // same slot: same name
  const Event* e = last_event(a.sink, EventType::member_restarted);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(sb));
  CHECK(e->epoch == 21);
  CHECK(e->seq == 20);  // the retired epoch
  CHECK(counter(a, "membership.restarts") == 1);
  CHECK(a.sink.count_events(EventType::member_joined) == 1);

  // The old incarnation's heartbeats still in flight are dropped; the view keeps epoch 21.
  const std::uint64_t view = a->group().view_id();
  a->receive(heartbeat(pool, 2, 20, "b"), 3 * kMs);
  CHECK(a->group().member(sb).epoch == 21);
  CHECK(a->group().view_id() == view);
  CHECK(counter(a, "membership.stale_heartbeats") == 1);
  CHECK(a->drops(DropReason::stale_epoch) == 1);
  // Data of the old epoch no longer refreshes liveness (touch needs the current epoch).
  CHECK_FALSE(a->group().touch(2, 20, 4 * kMs));

  // A restart with a new sender id too (a new process) is the same member by name.
  a->receive(heartbeat(pool, 3, 22, "b"), 5 * kMs);
  CHECK(a->group().slot_of_name("b") == sb);
  CHECK(a->group().member(sb).sender == 3);
  CHECK(counter(a, "membership.restarts") == 2);
  // Several retired epochs are remembered.
  a->receive(heartbeat(pool, 2, 20, "b"), 6 * kMs);
  a->receive(heartbeat(pool, 2, 21, "b"), 6 * kMs);
  CHECK(a->group().member(sb).epoch == 22);
  CHECK(counter(a, "membership.stale_heartbeats") == 3);
}

TEST_CASE("membership.heartbeat: stop sends goodbyes; the member is left and stays left") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1));
  Endpoint b(pool, member_plan("b", {{"leave_copies", "2"}}), make_env(2, 20));
  a->start(0);
  b->start(0);
  carry(b, a, kMs);
  a.sink.clear();
  const int sb = a->group().slot_of_name("b");
  REQUIRE(sb > 0);
  b->stop(10 * kMs);
  b->stop(11 * kMs);  // idempotent
  REQUIRE(b.sink.transmitted.size() == 2);
  for (const Packet* p : b.sink.transmitted) {
    CHECK(p->kind == wire::Kind::heartbeat);
    CHECK(p->ext(wire::Ext::membership)[0] == (hb::kFlagReceives | hb::kFlagLeaving));
  }
  CHECK(b->next_deadline_ns() == 0);  // a stopped member sends nothing more
  carry(b, a, 12 * kMs);
  CHECK(a->group().member(sb).state == MemberState::left);
  CHECK(a->group().alive().empty());
  CHECK(a->group().receivers().empty());
  CHECK(a.sink.count_events(EventType::member_left) == 1);  // two goodbyes, one event
  const Event* e = last_event(a.sink, EventType::member_left);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(sb));
  CHECK(e->epoch == 20);
  CHECK(counter(a, "membership.leaves") == 1);

  // A late ordinary heartbeat of the same incarnation cannot bring it back ...
  a->receive(heartbeat(pool, 2, 20, "b"), 13 * kMs);
  CHECK(a->group().member(sb).state == MemberState::left);
  // ... and a left member is not failed later.
  a->tick(5000 * kMs);
  CHECK(a.sink.count_events(EventType::member_failed) == 0);
  // A new incarnation is a fresh join, not a restart.
  a->receive(heartbeat(pool, 2, 30, "b"), 6000 * kMs);
  CHECK(a->group().member(sb).state == MemberState::alive);
  CHECK(a.sink.count_events(EventType::member_joined) == 1);  // the first join was cleared above
  CHECK(a.sink.count_events(EventType::member_restarted) == 0);
  // A goodbye from a name never heard creates no slot.
  a->receive(heartbeat(pool, 5, 50, "ghost", true), 6001 * kMs);
  CHECK(a->group().slot_of_name("ghost") == kNoSlot);
}

TEST_CASE("membership.heartbeat: a named member never heard is failed timeout_us after start") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a", {}, {"a", "b", "c"}), make_env(1));
  a->start(0);
  const int sb = a->group().slot_of_name("b");
  const int sc = a->group().slot_of_name("c");
  REQUIRE(sb > 0);
  REQUIRE(sc > 0);
  CHECK(a->group().receivers() == tmc::MemberSet::of({sb, sc}));
  a->receive(heartbeat(pool, 3, 30, "c"), 900 * kMs);
  while (a->next_deadline_ns() != 0 && a->next_deadline_ns() <= kTimeoutNs) a->tick(a->next_deadline_ns());
  CHECK(a->group().member(sb).state == MemberState::failed);
  CHECK(a->group().member(sc).state == MemberState::alive);
  CHECK(a->group().receivers() == tmc::MemberSet::of(sc));
  CHECK(a.sink.count_events(EventType::member_failed) == 1);
}

TEST_CASE("membership.heartbeat: other packets pass both ways unchanged") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1));
  a->start(0);
  a.sink.clear();
  a.send("hello", kMs);
  REQUIRE(a.sink.transmitted.size() == 1);
  CHECK(a.sink.transmitted[0]->kind == wire::Kind::data);
  CHECK(a.sink.transmitted[0]->payload_len == 5);
  a->receive(datagram(pool, 9, 9, 0, "ack?", 0, wire::Kind::ack), kMs);
  a->receive(datagram(pool, 9, 9, 0, "ctl", 0, wire::Kind::control), kMs);
  CHECK(a.sink.payloads() == std::vector<std::string>{"ack?", "ctl"});
  CHECK(a->group().slots() == 1);  // unknown senders are not members
}

TEST_CASE("membership.heartbeat: bad parameters are refused with their names") {
  PacketPool pool(2048, 16, 256);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  Status s = Pipeline::build(member_plan("a", {{"interval_us", "100000"}, {"timeout_us", "100000"}}),
                             Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find("timeout_us") != std::string::npos);
  s = Pipeline::build(member_plan("a", {{"interval_us", "0"}}), Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find("interval_us") != std::string::npos);
  s = Pipeline::build(member_plan("a", {{"leave_copies", "99"}}), Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find("leave_copies") != std::string::npos);
}

TEST_CASE("membership.heartbeat: a member without a usable name announces one made from its sender id") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan(""), make_env(0xABCD));
  a->start(0);
  REQUIRE(a.sink.transmitted.size() == 1);
  const Packet* p = a.sink.transmitted[0];
  CHECK(std::string_view(reinterpret_cast<const char*>(p->payload()), p->payload_len) == "member-0000abcd");
}

TEST_CASE("membership.heartbeat: named members close the view to everyone else") {
  PacketPool pool(2048, 16, 256);
  const std::uint32_t id_a = wire::channel_hash("a", 1);
  const std::uint32_t id_b = wire::channel_hash("b", 1);
  Endpoint b(pool, member_plan("b", {}, {"a", "b"}), make_env(id_b, 200));
  b->start(0);
  const MemberSet receivers = b->group().receivers();
  const std::uint64_t view = b->group().view_id();
  // An unlisted name never joins: no slot, no event, the ack set is unchanged.
  b->receive(heartbeat(pool, 77, 5, "mallory"), kMs);
  CHECK(b->group().slot_of_name("mallory") == kNoSlot);
  CHECK(last_event(b.sink, EventType::member_joined) == nullptr);
  CHECK(b->group().receivers() == receivers);
  CHECK(b->group().view_id() == view);
  CHECK(counter(b, "drops.not_in_view") == 1);
  // A named member's data is delivered even before its first heartbeat (its id is the
  // FNV-1a of its name), and its heartbeat joins it.
  b->receive(datagram(pool, id_a, 9, 0, "from a"), 3 * kMs);
  CHECK(b.sink.payloads() == std::vector<std::string>{"from a"});
  b->receive(heartbeat(pool, id_a, 9, "a"), 4 * kMs);
  const int sa = b->group().slot_of_name("a");
  REQUIRE(sa > 0);
  CHECK(b->group().member(sa).state == MemberState::alive);
  // Every named member heard: data from a sender id that is no named member's is
  // dropped, never delivered.
  b->receive(datagram(pool, 77, 5, 0, "forged"), 5 * kMs);
  CHECK(b.sink.payloads() == std::vector<std::string>{"from a"});
  CHECK(counter(b, "drops.not_in_view") == 2);
}

namespace {
// The flags of a heartbeat `ep` transmitted (its query bit tells a query from the rest).
std::uint8_t sent_flags(PacketPool& pool, const Packet& sent) {
  Packet* rx = as_received(pool, sent);
  REQUIRE(wire::decode(*rx) == wire::DecodeError::none);
  REQUIRE(rx->kind == wire::Kind::heartbeat);
  hb::Heartbeat h;
  REQUIRE(hb::parse(*rx, h) == hb::ParseError::none);
  const std::uint8_t flags = h.flags;
  rx->release();
  return flags;
}

Packet* from_address(Packet* p, std::uint32_t ip, std::uint16_t port) {
  p->src_ip = ip;
  p->src_port = port;
  return p;
}
}  // namespace

TEST_CASE("membership.heartbeat: a named member heard only through other packets is asked for its heartbeat") {
  // The default interval (100 ms): answers and queries are spaced by a quarter of it.
  PacketPool pool(2048, 16, 256);
  Endpoint b(pool, member_plan("b", {}, {"a", "b", "c"}), make_env(wire::channel_hash("b", 1), 200));
  b->start(0);
  b.sink.clear();
  constexpr std::uint32_t kIp = 0x0A000007;
  // Its first packets only start the clock: its heartbeat may still be on its way.
  b->receive(from_address(datagram(pool, 77, 5, 0, "one"), kIp, 4000), kMs);
  b->receive(from_address(datagram(pool, 77, 5, 0, "two"), kIp, 4000), 40 * kMs);
  CHECK(b.sink.transmitted.empty());
  // Still unknown past two quarters of an interval: one query, by unicast to its source.
  b->receive(from_address(datagram(pool, 77, 5, 0, "three"), kIp, 4000), 60 * kMs);
  REQUIRE(b.sink.transmitted.size() == 1);
  CHECK(b.sink.transmitted[0]->dst_ip == kIp);
  CHECK(b.sink.transmitted[0]->dst_port == 4000);
  CHECK((sent_flags(pool, *b.sink.transmitted[0]) & hb::kFlagQuery) != 0);
  CHECK(counter(b, "membership.queries") == 1);
  // At most one per quarter interval, and none once its heartbeat came.
  b->receive(from_address(datagram(pool, 77, 5, 0, "four"), kIp, 4000), 70 * kMs);
  CHECK(b.sink.transmitted.size() == 1);
  b->receive(from_address(datagram(pool, 77, 5, 0, "five"), kIp, 4000), 90 * kMs);
  CHECK(b.sink.transmitted.size() == 2);
  CHECK(b.sink.payloads().size() == 5);  // every packet was delivered meanwhile
  b->receive(from_address(heartbeat(pool, 77, 5, "a"), kIp, 4000), 91 * kMs);
  b.sink.clear();
  b->receive(from_address(datagram(pool, 77, 5, 0, "six"), kIp, 4000), 200 * kMs);
  CHECK(b.sink.transmitted.empty());
  CHECK(counter(b, "membership.queries") == 2);
  CHECK(b.sink.payloads() == std::vector<std::string>{"six"});
}

TEST_CASE("membership.heartbeat: a query is answered with a heartbeat by unicast to the querier") {
  PacketPool pool(2048, 16, 256);
  Endpoint a(pool, member_plan("a"), make_env(1, 100));
  a->start(0);
  a.sink.clear();
  a->receive(from_address(forged(pool, 2, 200, hb::kFlagReceives | hb::kFlagQuery, "b"), 0x0A000002, 4100), kMs);
  CHECK(a->group().slot_of_name("b") > 0);  // the query is a heartbeat too: b joins
  bool answered = false;
  for (Packet* p : a.sink.transmitted) {
    if (p->dst_ip != 0) {
      CHECK(p->dst_ip == 0x0A000002);
      CHECK(p->dst_port == 4100);
      CHECK((sent_flags(pool, *p) & hb::kFlagQuery) == 0);
      answered = true;
    }
  }
  CHECK(answered);
  CHECK(counter(a, "membership.query_answers") == 1);
}

TEST_CASE("membership.heartbeat: beyond 32 members the first answer after start is not spaced by the group's size") {
  PacketPool pool(2048, 16, 256);
  std::vector<std::string> names;
  for (int i = 0; i < 100; ++i) names.push_back("m" + std::to_string(i));
  Endpoint m0(pool, member_plan("m0", {}, names), make_env(wire::channel_hash("m0", 2), 100));
  m0->start(0);
  m0.sink.clear();
  // A member heard 1 ms after our start: answered a quarter interval after our start
  // heartbeat, as in a small group (100 members space later answers 4 times more).
  m0->receive(heartbeat(pool, wire::channel_hash("m1", 2), 5, "m1"), kMs);
  CHECK(m0->next_deadline_ns() == kIntervalNs / 4);
  m0->tick(kIntervalNs / 4);
  CHECK(m0.sink.transmitted.size() == 1);
  m0.sink.clear();
  // The next member heard: its answer waits the spaced gap.
  m0->receive(heartbeat(pool, wire::channel_hash("m2", 2), 5, "m2"), kIntervalNs / 4 + kMs);
  CHECK(m0->next_deadline_ns() == kIntervalNs / 4 + 4 * (kIntervalNs / 4));
}

TEST_CASE("membership.heartbeat: without named members the view stays open") {
  PacketPool pool(2048, 16, 256);
  Endpoint b(pool, member_plan("b"), make_env(2, 200));
  b->start(0);
  b->receive(datagram(pool, 77, 5, 0, "anyone"), kMs);
  CHECK(b.sink.payloads() == std::vector<std::string>{"anyone"});
  b->receive(heartbeat(pool, 77, 5, "newcomer"), 2 * kMs);
  CHECK(b->group().slot_of_name("newcomer") > 0);
}

TEST_CASE("group view: outages count each time a member goes failed or left, and survive its return") {
  tmc::Group g;
  g.reset("self", 1, 1, true, {"self", "a", "b"});
  const int a = g.slot_of_name("a");
  const int b = g.slot_of_name("b");
  REQUIRE(a != tmc::kNoSlot);
  REQUIRE(b != tmc::kNoSlot);
  CHECK(g.member(a).outages == 0);
  g.mark(a, tmc::MemberState::failed);  // expected, never heard, then failed
  CHECK(g.member(a).outages == 1);
  CHECK(g.heard("a", 7, 3, true, 1000) == a);  // back (a partition healed): same epoch
  CHECK(g.member(a).state == tmc::MemberState::alive);
  CHECK(g.member(a).outages == 1);  // a reader that looks only now still sees it was out
  g.mark(a, tmc::MemberState::failed);
  g.mark(a, tmc::MemberState::failed);  // no change: not a second outage
  CHECK(g.member(a).outages == 2);
  g.mark(a, tmc::MemberState::left);  // failed -> left is the same outage
  CHECK(g.member(a).outages == 2);
  CHECK(g.member(b).outages == 0);
  g.mark(b, tmc::MemberState::left);
  CHECK(g.member(b).outages == 1);
}
