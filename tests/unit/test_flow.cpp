// flow.credit: the receiver's accounting and advertisements, the sender's credit, policies,
// slow members and ejection, driven through a pipeline with forged packets.
#include <doctest/doctest.h>

#include <cstring>

#include "../support/recording_sink.hpp"
#include "primitives/flow/flow_format.hpp"
#include "primitives/reliability/ack_format.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint32_t kSelf = 100;
constexpr std::uint32_t kSelfEpoch = 1000;
constexpr std::uint32_t kEpoch = 5;

struct Node {
  PacketPool pool{4096, 64, 1 << 14};
  Endpoint ep;
  explicit Node(std::initializer_list<std::pair<const std::string, std::string>> params)
      : ep(pool, make_plan({stage("flow.credit", params)}), make_env(kSelf, kSelfEpoch)) {
    ep->start(0);
  }
  std::uint64_t c(const char* name) { return ep->counters().get(name); }
  double g(const char* name) { return ep->gauges().get(name); }

  Packet* fresh(wire::Kind kind, std::uint32_t payload) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(payload);
    std::memset(p->payload(), 'x', payload);
    p->kind = kind;
    return p;
  }
  // Our application's reliable message with rseq `rseq`.
  void send(std::uint64_t rseq, std::uint32_t payload, std::uint64_t now_ns) {
    Packet* p = fresh(wire::Kind::data, payload);
    p->flags = wire::kFlagReliable;
    detail::encode_rel(p->push_ext(wire::Ext::rel, 8), {.rseq = rseq, .trail = 1});
    ep->send(p, now_ns);
  }
  // Our reliability acking (sender, epoch) up to cum.
  void send_ack(std::uint32_t sender, std::uint32_t epoch, std::uint64_t cum, std::uint64_t now_ns) {
    Packet* p = fresh(wire::Kind::ack, 0);
    detail::encode_ack(p->push_ext(wire::Ext::ack, 24), {sender, epoch, cum, 0});
    ep->send(p, now_ns);
  }
  Packet* received(Packet* s, std::uint32_t from, std::uint32_t epoch) {
    s->channel = wire::channel_hash("test", 4);
    s->sender = from;
    s->epoch = epoch;
    s->seal();
    Packet* r = as_received(pool, *s);
    s->release();
    return r;
  }
  // Reliable data from another sender.
  void data_in(std::uint32_t from, std::uint64_t rseq, std::uint32_t payload, std::uint64_t now_ns) {
    Packet* s = fresh(wire::Kind::data, payload);
    s->flags = wire::kFlagReliable;
    detail::encode_rel(s->push_ext(wire::Ext::rel, 8), {.rseq = rseq, .trail = 1});
    ep->receive(received(s, from, kEpoch), now_ns);
  }
  // A standalone advertisement from `from` for us.
  void advert_in(std::uint32_t from, std::uint64_t consumed, std::uint32_t window, std::uint64_t now_ns) {
    Packet* s = fresh(wire::Kind::control, 0);
    detail::encode_flow(s->push_ext(wire::Ext::flow, 20), {kSelf, kSelfEpoch, consumed, window});
    ep->receive(received(s, from, kEpoch), now_ns);
  }
  std::size_t data_out() const {
    std::size_t n = 0;
    for (const Packet* p : ep.sink.transmitted) n += p->kind == wire::Kind::data ? 1 : 0;
    return n;
  }
  // The flow advertisement carried by transmitted packet i, decoded from its wire bytes.
  std::optional<detail::FlowBody> advert_out(std::size_t i) {
    Packet* r = as_received(pool, *ep.sink.transmitted.at(i));
    REQUIRE(wire::decode(*r) == wire::DecodeError::none);
    std::uint8_t len = 0;
    const std::uint8_t* body = r->ext(wire::Ext::flow, &len);
    auto f = detail::decode_flow(body, len);
    r->release();
    return f;
  }
};

}  // namespace

TEST_CASE("flow.credit receiver: counts each reliable rseq once and advertises on acks to that sender") {
  Node n({{"window_bytes", "65536"}});
  n.data_in(7, 1, 100, 1 * kMs);
  n.data_in(7, 2, 200, 1 * kMs);
  n.data_in(7, 2, 200, 1 * kMs);  // a duplicate (reliability above drops it)
  n.data_in(7, 4, 50, 1 * kMs);
  CHECK(n.ep.sink.delivered.size() == 4);  // the stage never withholds data
  CHECK(n.c("flow.consumed_bytes") == 350);  // one sender: all of it is from 7
  CHECK(n.c("flow.duplicates_seen") == 1);
  n.send_ack(7, kEpoch, 2, 2 * kMs);
  REQUIRE(n.ep.sink.transmitted.size() == 1);
  auto f = n.advert_out(0);
  REQUIRE(f.has_value());
  CHECK(f->target_sender == 7);
  CHECK(f->target_epoch == kEpoch);
  CHECK(f->consumed_bytes == 350);
  CHECK(f->window_bytes == 65536);
  // An ack to a sender we consumed nothing from carries nothing.
  n.send_ack(9, kEpoch, 2, 2 * kMs);
  CHECK(!n.advert_out(1).has_value());
}

TEST_CASE("flow.credit receiver: standalone advertisements after update_every_bytes and on refresh") {
  Node n({{"window_bytes", "4000"}, {"update_every_bytes", "1000"}, {"refresh_us", "10000"}});
  for (std::uint64_t r = 1; r <= 4; ++r) n.data_in(7, r, 300, 1 * kMs);  // 1200 bytes: one advert
  REQUIRE(n.ep.sink.transmitted.size() == 1);
  CHECK(n.ep.sink.transmitted[0]->kind == wire::Kind::control);
  CHECK(n.advert_out(0)->consumed_bytes == 1200);
  // The refresh timer repeats the value until it went out three times, then goes quiet.
  for (std::uint64_t t = 2; t < 100; ++t) n.ep->tick(t * 10 * kMs);
  CHECK(n.ep.sink.transmitted.size() == 3);
  CHECK(n.c("flow.adverts_standalone") == 3);
  CHECK(n.ep->next_deadline_ns() == 0);
}

TEST_CASE("flow.credit sender: data waits without credit and leaves as advertisements arrive") {
  Node n({{"window_bytes", "4000"}});
  n.ep->group().heard("r1", 7, kEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 10; ++r) n.send(r, 1000, 1 * kMs);
  CHECK(n.data_out() == 4);
  CHECK(n.ep->held_packets() == 6);
  CHECK(n.c("flow.sent_bytes") == 4000);
  n.advert_in(7, 2500, 4000, 2 * kMs);
  CHECK(n.data_out() == 6);  // credit 2500 + 4000 - 4000 covers two more
  CHECK(n.g("flow.unconsumed_bytes") == 3500);
  CHECK(n.g("flow.credit_bytes") == 500);  // 2500 consumed + 4000 window - 6000 sent
  CHECK(n.g("flow.queued_packets") == 4);
  // Unreliable data and retransmissions never wait.
  Packet* p = n.fresh(wire::Kind::data, 10);
  n.ep->send(p, 2 * kMs);
  n.send(3, 1000, 2 * kMs);
  CHECK(n.data_out() == 8);
  n.advert_in(7, 10'000, 4000, 3 * kMs);
  CHECK(n.ep->held_packets() == 0);
  CHECK(n.data_out() == 12);
}

TEST_CASE("flow.credit sender: receivers not yet heard do not block") {
  PacketPool pool(4096, 16, 4096);
  Plan plan = make_plan({stage("flow.credit", {{"window_bytes", "2000"}})});
  plan.members = {"m", "r-expected"};
  Endpoint ep(pool, plan, make_env(kSelf, kSelfEpoch));
  ep->start(0);
  REQUIRE(!ep->group().receivers().empty());
  for (std::uint64_t r = 1; r <= 10; ++r) {
    Packet* p = pool.alloc();
    p->reset_for_send(1000);
    p->flags = wire::kFlagReliable;
    detail::encode_rel(p->push_ext(wire::Ext::rel, 8), {.rseq = r, .trail = 1});
    ep->send(p, 0);
  }
  CHECK(ep.sink.transmitted.size() == 10);
}

TEST_CASE("flow.credit sender: policies min, max and quorum") {
  for (const char* policy : {"min", "max", "quorum"}) {
    CAPTURE(policy);
    Node n({{"window_bytes", "2000"}, {"policy", policy}});
    for (std::uint32_t i = 0; i < 3; ++i) n.ep->group().heard("r" + std::to_string(i), 7 + i, kEpoch, true, 0);
    for (std::uint64_t r = 1; r <= 10; ++r) n.send(r, 1000, 1 * kMs);
    CHECK(n.data_out() == 2);
    n.advert_in(7, 2000, 2000, 2 * kMs);  // one receiver caught up
    CHECK(n.data_out() == (std::string(policy) == "max" ? 4u : 2u));
    n.advert_in(8, 2000, 2000, 2 * kMs);  // two of three
    CHECK(n.data_out() == (std::string(policy) == "min" ? 2u : 4u));
    n.advert_in(9, 2000, 2000, 2 * kMs);
    CHECK(n.data_out() == 4);
  }
}

TEST_CASE("flow.credit sender: a receiver blocking past slow_timeout raises slow_member once; eject_slow lets go") {
  for (const bool eject : {false, true}) {
    CAPTURE(eject);
    Node n({{"window_bytes", "2000"}, {"slow_timeout_us", "100000"}, {"eject_slow", eject ? "true" : "false"}});
    n.ep->group().heard("r1", 7, kEpoch, true, 0);
    n.ep->group().heard("r2", 8, kEpoch, true, 0);
    const int slow_slot = n.ep->group().slot_of_sender(8);
    for (std::uint64_t r = 1; r <= 6; ++r) n.send(r, 1000, 1 * kMs);
    n.advert_in(7, 2000, 2000, 2 * kMs);  // r1 keeps up, r2 says nothing
    CHECK(n.data_out() == 2);
    for (std::uint64_t t = 3; t < 400; t += 3) {
      n.ep->group().heard("r1", 7, kEpoch, true, t * kMs);
      n.ep->group().heard("r2", 8, kEpoch, true, t * kMs);  // alive, just slow
      n.advert_in(7, n.c("flow.sent_bytes"), 2000, t * kMs);
      if (n.ep->next_deadline_ns() != 0 && n.ep->next_deadline_ns() <= t * kMs) n.ep->tick(t * kMs);
    }
    REQUIRE(n.ep.sink.count_events(EventType::slow_member) == 1);
    const Event& e = n.ep.sink.events.back();
    CHECK(e.members == tmc::MemberSet::of(slow_slot));
    CHECK(e.sender == 8);
    CHECK(n.c("flow.slow_members") == 1);
    if (eject) {
      CHECK(n.data_out() == 6);
      CHECK(n.c("flow.ejected") == 1);
      CHECK(n.g("flow.ejected_receivers") == 1);
    } else {
      CHECK(n.data_out() == 2);
      CHECK(n.ep->held_packets() == 4);
      CHECK(n.g("flow.ejected_receivers") == 0);
      CHECK(n.g("flow.unconsumed_bytes") == 2000);  // r2, which consumed nothing
    }
  }
}

TEST_CASE("flow.credit sender: a receiver returning after failure is re-baselined and cannot stall the channel") {
  Node n({{"window_bytes", "2000"}});
  n.ep->group().heard("r1", 7, kEpoch, true, 0);
  const int slot = n.ep->group().slot_of_sender(7);
  for (std::uint64_t r = 1; r <= 4; ++r) n.send(r, 1000, 1 * kMs);
  CHECK(n.data_out() == 2);
  n.ep->group().mark(slot, MemberState::failed);  // nobody left to wait for
  n.ep->tick(n.ep->next_deadline_ns());
  CHECK(n.data_out() == 4);
  n.ep->group().heard("r1", 7, kEpoch, true, 50 * kMs);  // back: what it missed is forgiven
  n.send(5, 1000, 51 * kMs);
  n.send(6, 1000, 51 * kMs);
  CHECK(n.data_out() == 6);
  CHECK(n.g("flow.unconsumed_bytes") == 2000);
}

TEST_CASE("flow.credit: parameters are checked") {
  PacketPool pool(2048, 4, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(
      make_plan({stage("flow.credit", {{"policy", "fastest"}, {"window_bytes", "0"}, {"slow_timeout_us", "1"}})}),
      Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(!st.is_ok());
  CHECK(st.to_string().find("policy") != std::string::npos);
  CHECK(st.to_string().find("window_bytes") != std::string::npos);
  CHECK(st.to_string().find("slow_timeout_us") != std::string::npos);
}

TEST_CASE("flow.credit sender: a retransmission goes out at once, ahead of waiting data, and is not charged") {
  Node n({{"window_bytes", "2000"}});
  n.ep->group().heard("r1", 7, kEpoch, true, 0);
  for (std::uint64_t r = 1; r <= 6; ++r) n.send(r, 1000, 1 * kMs);
  REQUIRE(n.data_out() == 2);  // rseq 1, 2 passed; 3..6 wait for credit
  REQUIRE(n.ep->held_packets() == 4);
  const std::uint64_t sent_before = n.c("flow.sent_bytes");
  // Reliability repairs rseq 1 and 2 (timeout or NACK): out at once, before 3..6.
  n.send(1, 1000, 5 * kMs);
  n.send(2, 1000, 5 * kMs);
  REQUIRE(n.data_out() == 4);
  std::uint8_t len = 0;
  const std::uint8_t* body = n.ep.sink.transmitted.at(3)->ext(wire::Ext::rel, &len);
  CHECK(detail::decode_rel_body(body, len).value_or(detail::RelBody{}).rseq == 2);
  CHECK(n.c("flow.sent_bytes") == sent_before);  // not charged as new data
  CHECK(n.ep->held_packets() == 4);           // the new data still waits, in order
  CHECK(n.c("flow.retransmits_passed") == 2);
  // A repair of a message still waiting here is released: the original goes in order.
  n.send(4, 1000, 6 * kMs);
  CHECK(n.data_out() == 4);
  CHECK(n.c("flow.retransmits_absorbed") == 1);
  n.advert_in(7, 6000, 2000, 7 * kMs);
  CHECK(n.data_out() == 8);
  CHECK(n.c("flow.sent_bytes") == 6000);
  CHECK(n.ep->held_packets() == 0);
}

TEST_CASE("flow.credit sender: policy max reports a receiver behind its window although nothing waits") {
  Node n({{"window_bytes", "2000"}, {"policy", "max"}, {"slow_timeout_us", "100000"}});
  n.ep->group().heard("r1", 7, kEpoch, true, 0);
  n.ep->group().heard("r2", 8, kEpoch, true, 0);
  const int fast = n.ep->group().slot_of_sender(7);
  const int slow = n.ep->group().slot_of_sender(8);
  for (std::uint64_t t = 1; t < 400; ++t) {
    n.ep->group().heard("r1", 7, kEpoch, true, t * kMs);
    n.ep->group().heard("r2", 8, kEpoch, true, t * kMs);  // alive, consumes nothing
    n.send(t, 100, t * kMs);
    n.advert_in(7, n.c("flow.sent_bytes"), 2000, t * kMs);  // r1 consumes everything
    if (n.ep->next_deadline_ns() != 0 && n.ep->next_deadline_ns() <= t * kMs) n.ep->tick(t * kMs);
  }
  CHECK(n.ep->held_packets() == 0);  // never held back by r2
  CHECK(n.data_out() == 399);
  REQUIRE(n.ep.sink.count_events(EventType::slow_member) == 1);  // once per episode
  CHECK(n.ep.sink.events.back().members == tmc::MemberSet::of(slow));
  CHECK(n.ep.sink.events.back().members != tmc::MemberSet::of(fast));
  // r2 catches up: the episode ends, and a new one would be reported again.
  n.advert_in(8, n.c("flow.sent_bytes"), 2000, 400 * kMs);
  for (std::uint64_t t = 401; t < 800; ++t) {
    n.ep->group().heard("r1", 7, kEpoch, true, t * kMs);
    n.ep->group().heard("r2", 8, kEpoch, true, t * kMs);
    n.send(t, 100, t * kMs);
    n.advert_in(7, n.c("flow.sent_bytes"), 2000, t * kMs);
    if (n.ep->next_deadline_ns() != 0 && n.ep->next_deadline_ns() <= t * kMs) n.ep->tick(t * kMs);
  }
  CHECK(n.ep.sink.count_events(EventType::slow_member) == 2);
}
