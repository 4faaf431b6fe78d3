// pacing.bucket (token bucket timing in virtual time) and pacing.coalesce (flush on size,
// count and timer; lone messages unwrapped; every hostile batch malformation refused).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

// Drive the pipeline's timers until none is armed or `limit_ns` is passed; returns the
// time each transmitted packet left (index = position in sink.transmitted).
std::vector<std::uint64_t> run_timers(Endpoint& ep, std::vector<std::uint64_t> times, std::uint64_t limit_ns) {
  while (ep->next_deadline_ns() != 0 && ep->next_deadline_ns() <= limit_ns) {
    const std::uint64_t t = ep->next_deadline_ns();
    ep->tick(t);
    while (times.size() < ep.sink.transmitted.size()) times.push_back(t);
  }
  return times;
}

std::string text(std::size_t n, char c) { return std::string(n, c); }

// --- batch forging ----------------------------------------------------------------------

constexpr std::uint32_t kForgedSender = 7;
constexpr std::uint32_t kForgedEpoch = 11;

// The bytes of one sealed datagram.
std::vector<std::uint8_t> inner_bytes(PacketPool& pool, std::string_view payload, std::uint64_t seq = 0,
                                      std::uint32_t sender = kForgedSender, std::uint32_t epoch = kForgedEpoch,
                                      std::uint32_t channel = wire::channel_hash("test", 4),
                                      wire::Kind kind = wire::Kind::data, std::uint16_t flags = 0,
                                      bool batch_ext = false) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = kind;
  s->flags = flags;
  s->channel = channel;
  s->sender = sender;
  s->epoch = epoch;
  if (seq != 0) wire::put_u64(s->push_ext(wire::Ext::seq, 8), seq);
  if (batch_ext) wire::put_u16(s->push_ext(wire::Ext::batch, 2), 2);
  s->seal();
  std::vector<std::uint8_t> out(s->data(), s->data() + s->len);
  if ((flags & wire::kFlagCrc) != 0) out.insert(out.end(), 4, 0);  // a (wrong) trailer, for length
  s->release();
  return out;
}

// Records framed as {u16 len, bytes}.
std::vector<std::uint8_t> frame(const std::vector<std::vector<std::uint8_t>>& records) {
  std::vector<std::uint8_t> out;
  for (const auto& r : records) {
    out.push_back(static_cast<std::uint8_t>(r.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(r.size()));
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

// A received batch datagram from the forged sender carrying `payload` with a batch
// extension of `ext_len` bytes announcing `count`.
Packet* batch_datagram(PacketPool& pool, const std::vector<std::uint8_t>& payload, std::uint16_t count,
                       std::uint8_t ext_len = 2, wire::Kind kind = wire::Kind::data) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = kind;
  s->channel = wire::channel_hash("test", 4);
  s->sender = kForgedSender;
  s->epoch = kForgedEpoch;
  std::uint8_t* body = s->push_ext(wire::Ext::batch, ext_len);
  REQUIRE(body != nullptr);
  std::memset(body, 0, ext_len);
  if (ext_len >= 2) wire::put_u16(body, count);
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  r->src_ip = 0x0A000001;
  r->src_port = 4000;
  return r;
}

std::uint16_t batch_count(const Packet& p) {
  std::uint8_t len = 0;
  const std::uint8_t* b = p.ext(wire::Ext::batch, &len);
  REQUIRE(b != nullptr);
  REQUIRE(len == 2);
  return wire::get_u16(b);
}

}  // namespace

// =========================================================================================
// pacing.bucket
// =========================================================================================

TEST_CASE("pacing.bucket: released no earlier than the rate allows, in order, at the exact instant they fit") {
  PacketPool pool(2048, 16, 1024);
  // 8 Mbit/s = 1 byte per microsecond; a 76-byte payload is a 100-byte datagram.
  Endpoint ep(pool, make_plan({stage("pacing.bucket", {{"rate_bps", "8000000"}, {"burst_bytes", "200"}})}),
              make_env(1));
  for (int i = 0; i < 10; ++i) ep.send(text(76, static_cast<char>('a' + i)), 0);
  // The burst lets two leave at once; the rest wait inside the stage.
  CHECK(ep.sink.transmitted.size() == 2);
  CHECK(ep->held_packets() == 8);
  CHECK(ep->next_deadline_ns() == 100'000);
  std::vector<std::uint64_t> times(2, 0);
  times = run_timers(ep, times, 10'000'000);
  REQUIRE(ep.sink.transmitted.size() == 10);
  CHECK(ep->held_packets() == 0);
  CHECK(ep->next_deadline_ns() == 0);
  for (std::size_t i = 0; i < 10; ++i) {
    const Packet* p = ep.sink.transmitted[i];
    CHECK(p->payload()[0] == static_cast<std::uint8_t>('a' + i));  // FIFO order
    // Bytes sent by time t never exceed burst + rate * t.
    const std::uint64_t sent_bytes = (i + 1) * 100;
    CHECK(sent_bytes <= 200 + times[i] / 1000);
  }
  // Message i (i >= 2) leaves exactly when its tokens are earned.
  for (std::size_t i = 2; i < 10; ++i) CHECK(times[i] == (i - 1) * 100'000);
  CHECK(ep->counters().get("pacing.bucket_passed") == 2);
  CHECK(ep->counters().get("pacing.bucket_delayed") == 8);
  CHECK(ep->counters().get("pacing.bucket_released") == 8);
}

TEST_CASE("pacing.bucket: an idle period refills to the burst and no further") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.bucket", {{"rate_bps", "8000000"}, {"burst_bytes", "300"}})}),
              make_env(1));
  for (int i = 0; i < 3; ++i) ep.send(text(76, 'x'), 0);
  CHECK(ep.sink.transmitted.size() == 3);
  // A long idle time: the bucket is full again (300 bytes), not 10 s worth of tokens.
  const std::uint64_t t = 10'000'000'000;
  for (int i = 0; i < 5; ++i) ep.send(text(76, 'y'), t);
  CHECK(ep.sink.transmitted.size() == 6);
  CHECK(ep->held_packets() == 2);
  CHECK(ep->next_deadline_ns() == t + 100'000);
  const auto times = run_timers(ep, std::vector<std::uint64_t>(6, t), t + 1'000'000);
  REQUIRE(times.size() == 8);
  CHECK(times[6] == t + 100'000);
  CHECK(times[7] == t + 200'000);
}

TEST_CASE("pacing.bucket: a packet larger than the burst leaves from a full bucket and puts it in debt") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.bucket", {{"rate_bps", "8000000"}, {"burst_bytes", "50"}})}),
              make_env(1));
  ep.send(text(76, 'a'), 0);  // 100 bytes from a 50-byte bucket: leaves, tokens -50
  ep.send(text(76, 'b'), 0);  // needs a full bucket (50): 100 bytes of tokens = 100 us
  CHECK(ep.sink.transmitted.size() == 1);
  CHECK(ep->next_deadline_ns() == 100'000);
  ep->tick(99'999);
  CHECK(ep.sink.transmitted.size() == 1);
  const auto times = run_timers(ep, {0}, 1'000'000);
  REQUIRE(times.size() == 2);
  CHECK(times[1] == 100'000);
  CHECK(ep->counters().get("pacing.bucket_oversize") == 2);
}

TEST_CASE("pacing.bucket: control kinds queue behind data (order kept); receive path untouched; stop flushes") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.bucket", {{"rate_bps", "8000"}, {"burst_bytes", "100"}})}),
              make_env(1));
  ep.send(text(76, 'a'), 0);
  ep.send(text(76, 'b'), 0);
  Packet* hb = pool.alloc();
  hb->reset_for_send(4);
  hb->kind = wire::Kind::heartbeat;
  ep->send(hb, 0);
  CHECK(ep.sink.transmitted.size() == 1);
  CHECK(ep->held_packets() == 2);
  // Receive path: a datagram goes straight up whatever the bucket holds.
  ep->receive(datagram(pool, 9, 1, 0, "in"), 5);
  CHECK(ep.sink.payloads() == std::vector<std::string>{"in"});
  ep->stop(10);
  REQUIRE(ep.sink.transmitted.size() == 3);
  CHECK(ep.sink.transmitted[1]->payload()[0] == 'b');
  CHECK(ep.sink.transmitted[2]->kind == wire::Kind::heartbeat);
  CHECK(ep->held_packets() == 0);
  CHECK(ep->counters().get("pacing.bucket_stop_flushed") == 2);
}

TEST_CASE("pacing.bucket: a zero, negative or absurd rate is refused with an error naming the parameter") {
  PacketPool pool(2048, 16, 1024);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  for (const char* rate : {"0", "-5", "1000000000001"}) {
    CAPTURE(rate);
    const Status bad = Pipeline::build(make_plan({stage("pacing.bucket", {{"rate_bps", rate}})}), Registry::builtin(),
                                       make_env(1), pool, sink, pl);
    CHECK_FALSE(bad.is_ok());
    CHECK(bad.to_string().find("rate_bps") != std::string::npos);
  }
  const Status st = Pipeline::build(make_plan({stage("pacing.bucket", {{"rate_bps", "1000"}, {"burst_bytes", "0"}})}),
                       Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  CHECK(st.to_string().find("burst_bytes") != std::string::npos);
}

TEST_CASE("pacing.bucket: packets still queued when the pipeline is destroyed go back to the pool") {
  PacketPool pool(2048, 16, 1024);
  {
    Endpoint ep(pool, make_plan({stage("pacing.bucket", {{"rate_bps", "8000"}, {"burst_bytes", "100"}})}),
                make_env(1));
    for (int i = 0; i < 5; ++i) ep.send(text(76, 'z'), 0);
    CHECK(ep->held_packets() == 4);
  }
  CHECK(pool.in_use() == 0);
}

// =========================================================================================
// pacing.coalesce — send
// =========================================================================================

TEST_CASE("pacing.coalesce: a lone message is flushed by the timer as itself, unwrapped") {
  PacketPool pool(2048, 16, 1024);
  Endpoint plain(pool, make_plan({stage("ordering.seq")}), make_env(1));
  Endpoint ep(pool, make_plan({stage("ordering.seq"), stage("pacing.coalesce", {{"delay_us", "100"}})}), make_env(1));
  plain.send("hello", 0);
  ep.send("hello", 1'000);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->held_packets() == 1);
  CHECK(ep->next_deadline_ns() == 101'000);
  ep->tick(100'999);
  CHECK(ep.sink.transmitted.empty());
  ep->tick(101'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  const Packet* p = ep.sink.transmitted[0];
  CHECK(p->ext(wire::Ext::batch) == nullptr);
  // Byte for byte what the channel sends without coalescing: zero overhead.
  REQUIRE(p->len == plain.sink.transmitted[0]->len);
  CHECK(std::memcmp(p->data(), plain.sink.transmitted[0]->data(), p->len) == 0);
  CHECK(ep->held_packets() == 0);
  CHECK(ep->next_deadline_ns() == 0);
  CHECK(ep->counters().get("pacing.coalesce_lone_sent") == 1);
  CHECK(ep->counters().get("pacing.coalesce_flush_timer") == 1);
}

TEST_CASE("pacing.coalesce: flush on max_messages; the receiver splits the batch back, in order") {
  PacketPool pool(2048, 16, 1024);
  const Plan plan = make_plan({stage("ordering.seq"), stage("pacing.coalesce", {{"max_messages", "4"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  for (int i = 0; i < 4; ++i) tx.send("m" + std::to_string(i), 10);
  REQUIRE(tx.sink.transmitted.size() == 1);
  const Packet* b = tx.sink.transmitted[0];
  CHECK(batch_count(*b) == 4);
  CHECK(b->kind == wire::Kind::data);
  CHECK(b->sender == 1);
  CHECK(b->epoch == 1000);
  CHECK(tx->held_packets() == 0);
  CHECK(tx->next_deadline_ns() == 0);  // flushing cancels the timer
  CHECK(tx->counters().get("pacing.coalesce_flush_count") == 1);
  CHECK(tx->counters().get("pacing.coalesce_messages_batched") == 4);
  CHECK(carry(tx, rx, 500) == 1);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"m0", "m1", "m2", "m3"});
  CHECK(rx.sink.seqs() == std::vector<std::uint64_t>{1, 2, 3, 4});
  for (const Packet* p : rx.sink.delivered) {
    CHECK(p->rx_ns == 500);
    CHECK(p->sender == 1);
  }
  CHECK(rx->counters().get("pacing.coalesce_records_delivered") == 4);
  CHECK(rx->counters().get("pipeline.delivered_messages") == 4);
}

TEST_CASE("pacing.coalesce: flush when the next message would not fit in max_bytes") {
  PacketPool pool(2048, 16, 1024);
  // A 50-byte payload is a 74-byte datagram, a 76-byte record: two fit in 200, three do not.
  const Plan plan = make_plan({stage("pacing.coalesce", {{"max_bytes", "200"}, {"delay_us", "50"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  for (int i = 0; i < 5; ++i) tx.send(text(50, static_cast<char>('a' + i)), 0);
  REQUIRE(tx.sink.transmitted.size() == 2);
  for (const Packet* p : tx.sink.transmitted) {
    CHECK(batch_count(*p) == 2);
    CHECK(p->payload_len == 152);
    CHECK(p->payload_len <= 200);
  }
  CHECK(tx->held_packets() == 1);
  CHECK(tx->counters().get("pacing.coalesce_flush_size") == 2);
  tx->tick(50'000);
  REQUIRE(tx.sink.transmitted.size() == 3);
  CHECK(tx.sink.transmitted[2]->ext(wire::Ext::batch) == nullptr);
  CHECK(carry(tx, rx) == 3);
  const auto got = rx.sink.payloads();
  REQUIRE(got.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(got[static_cast<std::size_t>(i)] == text(50, static_cast<char>('a' + i)));
}

TEST_CASE("pacing.coalesce: a message too large for any batch flushes the pending one and goes as itself") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce", {{"max_bytes", "200"}})}), make_env(1));
  ep.send("small-1", 0);
  ep.send("small-2", 0);
  ep.send(text(300, 'L'), 0);
  REQUIRE(ep.sink.transmitted.size() == 2);
  CHECK(batch_count(*ep.sink.transmitted[0]) == 2);
  CHECK(ep.sink.transmitted[1]->ext(wire::Ext::batch) == nullptr);
  CHECK(ep.sink.transmitted[1]->payload_len == 300);
  CHECK(ep->held_packets() == 0);
  CHECK(ep->counters().get("pacing.coalesce_oversize_passed") == 1);
}

TEST_CASE("pacing.coalesce: a unicast data packet flushes the pending batch and goes as itself") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce")}), make_env(1));
  ep.send("a", 0);
  ep.send("b", 0);
  Packet* u = pool.alloc();
  u->reset_for_send(1);
  u->payload()[0] = 'u';
  u->dst_ip = 0x0A000002;
  u->dst_port = 4000;
  ep->send(u, 0);
  REQUIRE(ep.sink.transmitted.size() == 2);
  CHECK(batch_count(*ep.sink.transmitted[0]) == 2);
  CHECK(ep.sink.transmitted[1]->dst_ip == 0x0A000002);
  CHECK(ep.sink.transmitted[1]->ext(wire::Ext::batch) == nullptr);
  CHECK(ep->held_packets() == 0);
  CHECK(ep->counters().get("pacing.coalesce_unicast_passed") == 1);
}

TEST_CASE("pacing.coalesce: the timer flushes delay_us after the first message, not the last") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce", {{"delay_us", "100"}})}), make_env(1));
  ep.send("a", 0);
  ep.send("b", 40'000);
  ep.send("c", 90'000);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->next_deadline_ns() == 100'000);
  ep->tick(100'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(batch_count(*ep.sink.transmitted[0]) == 3);
  CHECK(ep->counters().get("pacing.coalesce_flush_timer") == 1);
  // The next batch starts its own clock.
  ep.send("d", 150'000);
  CHECK(ep->next_deadline_ns() == 250'000);
}

TEST_CASE("pacing.coalesce: delay_us 0 flushes at the next tick (deadline now)") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce", {{"delay_us", "0"}})}), make_env(1));
  ep.send("a", 5'000);
  ep.send("b", 5'000);
  CHECK(ep->next_deadline_ns() == 5'000);
  ep->tick(5'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(batch_count(*ep.sink.transmitted[0]) == 2);
}

TEST_CASE("pacing.coalesce: a batch carries its messages' tokens, the first and the last") {
  // Reliability below acknowledges a batch when the application acknowledges any message
  // in it (acks: application): it needs the range of tokens the datagram stands for.
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce", {{"delay_us", "0"}})}), make_env(1));
  auto send = [&](std::string_view text, std::uint64_t token) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(text.size()));
    std::memcpy(p->payload(), text.data(), text.size());
    p->token = token;
    ep->send(p, 5'000);
  };
  send("a", 41);
  send("b", 42);
  send("c", 43);
  ep->tick(5'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(batch_count(*ep.sink.transmitted[0]) == 3);
  CHECK(ep.sink.transmitted[0]->token == 43);
  CHECK(ep.sink.transmitted[0]->token_first == 41);
  // A message alone at the flush leaves as itself, with its own token and no range.
  send("d", 44);
  ep->tick(6'000);
  REQUIRE(ep.sink.transmitted.size() == 2);
  CHECK(ep.sink.transmitted[1]->token == 44);
  CHECK(ep.sink.transmitted[1]->token_first == 0);
}

TEST_CASE("pacing.coalesce: non-data kinds pass down at once while a batch waits") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce")}), make_env(1));
  ep.send("a", 0);
  Packet* ack = pool.alloc();
  ack->reset_for_send(3);
  ack->kind = wire::Kind::ack;
  ep->send(ack, 0);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep.sink.transmitted[0]->kind == wire::Kind::ack);
  CHECK(ep->held_packets() == 1);
  ep->stop(1);
  CHECK(ep.sink.transmitted.size() == 2);
  CHECK(ep->counters().get("pacing.coalesce_flush_stop") == 1);
}

TEST_CASE("pacing.coalesce: with checksum below, the CRC covers the whole batch") {
  PacketPool pool(2048, 16, 1024);
  const Plan plan = make_plan({stage("ordering.fifo"), stage("ordering.seq"), stage("pacing.coalesce"),
                               stage("checksum.crc32c", {{"require", "true"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  for (int i = 0; i < 3; ++i) tx.send("c" + std::to_string(i), 0);
  tx->tick(100'000);
  REQUIRE(tx.sink.transmitted.size() == 1);
  Packet* b = tx.sink.transmitted[0];
  CHECK((b->flags & wire::kFlagCrc) != 0);
  // One flipped bit anywhere in the batch: the whole batch is refused by the checksum.
  Packet* bad = as_received(pool, *b);
  bad->buf[bad->len / 2] ^= 0x10;
  rx->receive(bad, 0);
  CHECK(rx.sink.delivered.empty());
  CHECK(rx->drops(DropReason::checksum) == 1);
  CHECK(carry(tx, rx) == 1);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"c0", "c1", "c2"});
  CHECK(rx.sink.seqs() == std::vector<std::uint64_t>{1, 2, 3});
}

TEST_CASE("pacing.coalesce: the pool stays balanced, and the batch packet is freed on destruction") {
  PacketPool pool(2048, 16, 1024);
  {
    Endpoint ep(pool, make_plan({stage("pacing.coalesce")}), make_env(1));
    ep.send("a", 0);
    ep.send("b", 0);
    ep.send("c", 0);
    CHECK(pool.in_use() == 1);  // three messages, one batch buffer
  }
  CHECK(pool.in_use() == 0);
  {
    Endpoint ep(pool, make_plan({stage("pacing.coalesce")}), make_env(1));
    ep.send("a", 0);
    CHECK(pool.in_use() == 1);
  }
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce: an exhausted pool sends the held message alone instead of dropping") {
  PacketPool pool(2048, 2, 2);
  Endpoint ep(pool, make_plan({stage("pacing.coalesce")}), make_env(1));
  ep.send("a", 0);  // held: 1 buffer
  ep.send("b", 0);  // the batch buffer cannot be had (b holds the 2nd): a leaves alone, b is held
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep.sink.payloads().empty());
  CHECK(ep.sink.transmitted[0]->payload()[0] == 'a');
  CHECK(ep->counters().get("pacing.coalesce_alloc_failed") == 1);
  CHECK(ep->held_packets() == 1);
  ep.sink.clear();
  ep->tick(100'000);
  REQUIRE(ep.sink.transmitted.size() == 1);
  CHECK(ep.sink.transmitted[0]->payload()[0] == 'b');
}

TEST_CASE("pacing.coalesce: bad parameters are refused with errors naming them") {
  PacketPool pool(2048, 16, 1024);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(
      make_plan({stage("pacing.coalesce", {{"max_bytes", "10"}, {"delay_us", "-1"}, {"max_messages", "0"}})}),
      Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  CHECK(st.to_string().find("max_bytes") != std::string::npos);
  CHECK(st.to_string().find("delay_us") != std::string::npos);
  CHECK(st.to_string().find("max_messages") != std::string::npos);
}

// =========================================================================================
// pacing.coalesce — receive, hostile input
// =========================================================================================

TEST_CASE("pacing.coalesce: a well-formed forged batch is split; inner fields come from the records") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  const auto payload = frame({inner_bytes(pool, "one"), inner_bytes(pool, "two")});
  Packet* b = batch_datagram(pool, payload, 2);
  rx->receive(b, 77);
  REQUIRE(rx.sink.payloads() == std::vector<std::string>{"one", "two"});
  for (const Packet* p : rx.sink.delivered) {
    CHECK(p->rx_ns == 77);
    CHECK(p->src_ip == 0x0A000001);
    CHECK(p->src_port == 4000);
    CHECK(p->sender == kForgedSender);
    CHECK(p->epoch == kForgedEpoch);
  }
  rx.sink.clear();
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce: batches with broken framing are dropped whole as malformed") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  const auto one = inner_bytes(pool, "one");
  const auto two = inner_bytes(pool, "two");
  const auto good = frame({one, two});
  std::uint64_t expected = 0;

  SUBCASE("count larger than the records") { rx->receive(batch_datagram(pool, good, 3), 0); }
  SUBCASE("count smaller than the records") { rx->receive(batch_datagram(pool, good, 1), 0); }
  SUBCASE("a record overruns the payload") {
    auto p = good;
    p[0] = 0x7F;  // first length now huge
    rx->receive(batch_datagram(pool, p, 2), 0);
  }
  SUBCASE("the last record overruns by one byte") {
    auto p = good;
    p.pop_back();
    rx->receive(batch_datagram(pool, p, 2), 0);
  }
  SUBCASE("bytes left over after the last record") {
    auto p = good;
    p.push_back(0);
    rx->receive(batch_datagram(pool, p, 2), 0);
  }
  SUBCASE("a dangling half length") {
    auto p = good;
    p.push_back(0);
    rx->receive(batch_datagram(pool, p, 3), 0);
  }
  SUBCASE("a batch of one record (never sent)") { rx->receive(batch_datagram(pool, frame({one}), 1), 0); }
  SUBCASE("an empty batch") { rx->receive(batch_datagram(pool, {}, 0), 0); }
  SUBCASE("batch extension of the wrong length") { rx->receive(batch_datagram(pool, good, 2, 3), 0); }
  SUBCASE("batch extension on a non-data kind") {
    rx->receive(batch_datagram(pool, good, 2, 2, wire::Kind::control), 0);
  }
  expected = 1;
  CHECK(rx.sink.delivered.empty());
  CHECK(rx->counters().get("pacing.coalesce_batch_malformed") == expected);
  CHECK(rx->drops(DropReason::malformed) == expected);
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce: invalid records are dropped and counted, the valid ones still delivered") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  const std::uint32_t ch = wire::channel_hash("test", 4);
  std::vector<std::uint8_t> garbage = inner_bytes(pool, "bad-magic");
  garbage[0] ^= 0xFF;
  std::vector<std::uint8_t> short_len = inner_bytes(pool, "bad-len");
  short_len.pop_back();  // header says one byte more than the record has
  const std::vector<std::vector<std::uint8_t>> records = {
      inner_bytes(pool, "first"),
      inner_bytes(pool, "x", 0, 99),                                          // another sender
      inner_bytes(pool, "x", 0, kForgedSender, 12),                           // another epoch
      inner_bytes(pool, "x", 0, kForgedSender, kForgedEpoch, ch + 1),         // another channel
      garbage,                                                                // undecodable
      short_len,                                                              // lengths disagree
      {},                                                                     // empty record
      inner_bytes(pool, "x", 0, kForgedSender, kForgedEpoch, ch, wire::Kind::heartbeat),  // not data
      inner_bytes(pool, "x", 0, kForgedSender, kForgedEpoch, ch, wire::Kind::data, wire::kFlagCrc),  // CRC
      inner_bytes(pool, "x", 0, kForgedSender, kForgedEpoch, ch, wire::Kind::data, 0, true),  // nested batch
      inner_bytes(pool, "last", 5),
  };
  rx->receive(batch_datagram(pool, frame(records), static_cast<std::uint16_t>(records.size())), 0);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"first", "last"});
  CHECK(rx->counters().get("pacing.coalesce_records_malformed") == records.size() - 2);
  CHECK(rx->counters().get("pacing.coalesce_records_delivered") == 2);
  CHECK(rx->drops(DropReason::malformed) == records.size() - 2);
  CHECK(rx->counters().get("pacing.coalesce_batch_malformed") == 0);
  rx.sink.clear();
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce: datagrams without a batch extension pass up untouched") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  rx->receive(datagram(pool, 7, 1, 3, "plain"), 0);
  rx->receive(datagram(pool, 7, 1, 0, "hb", 0, wire::Kind::heartbeat), 0);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"plain", "hb"});
  CHECK(rx->counters().get("pacing.coalesce_batches_received") == 0);
}

TEST_CASE("pacing.coalesce: random bytes inside a well-framed batch never crash and never leak") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  std::uint64_t state = 12345;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::uint64_t delivered = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::vector<std::uint8_t>> recs;
    const int n = 2 + static_cast<int>(next() % 4);
    for (int i = 0; i < n; ++i) {
      auto r = inner_bytes(pool, "payload" + std::to_string(i), 1 + next() % 5);
      const int flips = static_cast<int>(next() % 3);
      for (int f = 0; f < flips; ++f) r[next() % r.size()] ^= static_cast<std::uint8_t>(1u << (next() % 8));
      recs.push_back(std::move(r));
    }
    rx->receive(batch_datagram(pool, frame(recs), static_cast<std::uint16_t>(n)), 0);
    delivered += rx.sink.delivered.size();
    rx.sink.clear();
  }
  CHECK(delivered > 0);
  CHECK(pool.in_use() == 0);
}
