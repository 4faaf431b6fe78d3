// ordering.seq: stamping on send, parsing on receive, refusal of packets without a number.
#include <doctest/doctest.h>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

TEST_CASE("ordering.seq: stamps 1, 2, 3 per endpoint into the seq extension and Packet::seq") {
  PacketPool pool(2048, 16, 1024);
  const Plan plan = make_plan({stage("ordering.seq")});
  Endpoint a(pool, plan, make_env(1));
  Endpoint b(pool, plan, make_env(2));
  a.send("one");
  a.send("two");
  b.send("other");
  a.send("three");
  REQUIRE(a.sink.transmitted.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    const Packet* p = a.sink.transmitted[i];
    CHECK(p->seq == i + 1);
    std::uint8_t len = 0;
    const std::uint8_t* body = p->ext(wire::Ext::seq, &len);
    REQUIRE(body != nullptr);
    CHECK(len == 8);
    CHECK(wire::get_u64(body) == i + 1);
  }
  REQUIRE(b.sink.transmitted.size() == 1);
  CHECK(b.sink.transmitted[0]->seq == 1);  // numbering is per endpoint
  CHECK(a->counters().get("ordering.seq_stamped") == 3);

  // Received by b: the number comes back in Packet::seq.
  CHECK(carry(a, b) == 3);
  CHECK(b.sink.seqs() == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(b.sink.payloads() == std::vector<std::string>{"one", "two", "three"});
  CHECK(b->counters().get("ordering.seq_malformed") == 0);
}

TEST_CASE("ordering.seq: a data packet without a valid seq extension is dropped as malformed") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("ordering.seq")}), make_env(2));
  rx->receive(datagram(pool, 7, 1, 0), 0);  // no extension at all
  // Wrong length: a 4-byte seq extension.
  {
    Packet* s = pool.alloc();
    s->reset_for_send(1);
    s->payload()[0] = 'x';
    s->channel = rx->env().channel;
    s->sender = 7;
    s->epoch = 1;
    std::uint8_t* body = s->push_ext(wire::Ext::seq, 4);
    REQUIRE(body != nullptr);
    wire::put_u32(body, 5);
    s->seal();
    rx->receive(as_received(pool, *s), 0);
    s->release();
  }
  // Sequence number zero is never sent.
  {
    Packet* s = pool.alloc();
    s->reset_for_send(1);
    s->channel = rx->env().channel;
    s->sender = 7;
    std::uint8_t* body = s->push_ext(wire::Ext::seq, 8);
    REQUIRE(body != nullptr);
    wire::put_u64(body, 0);
    s->seal();
    rx->receive(as_received(pool, *s), 0);
    s->release();
  }
  CHECK(rx.sink.delivered.empty());
  CHECK(rx->counters().get("ordering.seq_malformed") == 3);
  CHECK(rx->drops(DropReason::malformed) == 3);
  rx->receive(datagram(pool, 7, 1, 9), 0);
  CHECK(rx.sink.seqs() == std::vector<std::uint64_t>{9});
}

TEST_CASE("ordering.seq: control kinds are neither stamped nor required to carry a number") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("ordering.seq")}), make_env(1));
  Packet* p = pool.alloc();
  p->reset_for_send(2);
  p->kind = wire::Kind::heartbeat;
  ep->send(p, 0);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep.sink.transmitted[0]->ext(wire::Ext::seq) == nullptr);
  CHECK(ep.sink.transmitted[0]->len == wire::kBaseHeaderBytes + 2);
  ep->receive(datagram(pool, 9, 1, 0, "hb", 0, wire::Kind::heartbeat), 0);
  CHECK(ep.sink.delivered.size() == 1);
  CHECK(ep->drops(DropReason::malformed) == 0);
}

TEST_CASE("ordering.seq: no room for the extension drops the packet without using a number") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("ordering.seq")}), make_env(1));
  Packet* p = pool.alloc();
  p->reset_for_send(1);
  for (std::uint8_t t = 0; t < wire::kMaxExtensions; ++t) {
    REQUIRE(p->push_ext(static_cast<wire::Ext>(200 + t), 1) != nullptr);
  }
  ep->send(p, 0);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->counters().get("ordering.seq_no_room") == 1);
  CHECK(ep->drops(DropReason::buffer_full) == 1);
  ep.send("next");
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep.sink.transmitted[0]->seq == 1);
}
