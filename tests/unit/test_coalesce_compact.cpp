// pacing.coalesce with compact records (records: compact, what the compiler asks for): the
// sender leaves out the base header each record shares with the batch and a seq that follows
// the previous record's; the receiver rebuilds the datagrams exactly, and treats every byte
// of a compact batch as hostile input (test_pacing.cpp covers full records).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr std::uint32_t kSender = 7;
constexpr std::uint32_t kEpoch = 11;

// The batch extension of a transmitted packet: {count, format}.
std::pair<std::uint16_t, std::uint8_t> batch_ext(const Packet& p) {
  std::uint8_t len = 0;
  const std::uint8_t* b = p.ext(wire::Ext::batch, &len);
  REQUIRE(b != nullptr);
  REQUIRE(len == 3);
  return {wire::get_u16(b), b[2]};
}

// A received compact batch from (kSender, kEpoch) with `payload` as its records.
Packet* compact_batch(PacketPool& pool, const std::vector<std::uint8_t>& payload, std::uint16_t count,
                      std::uint8_t format = 1) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = wire::Kind::data;
  s->channel = wire::channel_hash("test", 4);
  s->sender = kSender;
  s->epoch = kEpoch;
  std::uint8_t* body = s->push_ext(wire::Ext::batch, 3);
  REQUIRE(body != nullptr);
  wire::put_u16(body, count);
  body[2] = format;
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

// One compact record: {u16 length, head, [ext bytes, extensions], payload}.
std::vector<std::uint8_t> record(std::uint8_t head, const std::vector<std::uint8_t>& exts, std::string_view payload,
                                 bool implied) {
  std::vector<std::uint8_t> body{head};
  if (!implied) {
    body.push_back(static_cast<std::uint8_t>(exts.size()));
    body.insert(body.end(), exts.begin(), exts.end());
  }
  body.insert(body.end(), payload.begin(), payload.end());
  std::vector<std::uint8_t> out{static_cast<std::uint8_t>(body.size() >> 8), static_cast<std::uint8_t>(body.size())};
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<std::uint8_t> seq_ext(std::uint64_t seq) {
  std::vector<std::uint8_t> e{static_cast<std::uint8_t>(wire::Ext::seq), 8, 0, 0, 0, 0, 0, 0, 0, 0};
  wire::put_u64(e.data() + 2, seq);
  return e;
}

std::vector<std::uint8_t> cat(std::initializer_list<std::vector<std::uint8_t>> parts) {
  std::vector<std::uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("pacing.coalesce compact: round trip keeps payloads, seqs, flags and order; records shrink") {
  PacketPool pool(2048, 16, 1024);
  const Plan plan =
      make_plan({stage("ordering.seq"), stage("pacing.coalesce", {{"max_messages", "8"}, {"records", "compact"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  std::vector<std::string> sent;
  for (int i = 0; i < 8; ++i) {
    sent.push_back(std::string(64, static_cast<char>('a' + i)));
    tx.send(sent.back(), 10);
  }
  REQUIRE(tx.sink.transmitted.size() == 1);
  const Packet* b = tx.sink.transmitted[0];
  CHECK(batch_ext(*b) == std::pair<std::uint16_t, std::uint8_t>{8, 1});
  // The first record in full (2 + 1 + 1 + 10 + 64), the other seven with the seq implied
  // (2 + 1 + 64).
  CHECK(b->payload_len == 78 + 7 * 67);
  CHECK(carry(tx, rx, 500) == 1);
  CHECK(rx.sink.payloads() == sent);
  CHECK(rx.sink.seqs() == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  for (const Packet* p : rx.sink.delivered) {
    CHECK(p->rx_ns == 500);
    CHECK(p->sender == 1);
    CHECK(p->epoch == 1000);
    CHECK(p->kind == wire::Kind::data);
    CHECK(p->sealed);
    // Exactly what decoding the full datagram would give.
    Packet* copy = pool.clone(*p);
    REQUIRE(copy != nullptr);
    REQUIRE(wire::decode(*copy) == wire::DecodeError::none);
    CHECK(copy->payload_len == p->payload_len);
    CHECK(copy->n_ext == p->n_ext);
    CHECK(copy->ext_body[0] == p->ext_body[0]);
    CHECK(copy->payload_off == p->payload_off);
    copy->release();
  }
  CHECK(rx->counters().get("pacing.coalesce_records_delivered") == 8);
  rx.sink.clear();
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce compact: a batch fills max_bytes by the compact size, never beyond it") {
  PacketPool pool(2048, 16, 4096);
  const Plan plan = make_plan({stage("ordering.seq"),
                               stage("pacing.coalesce", {{"max_bytes", "1400"}, {"records", "compact"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  for (int i = 0; i < 100; ++i) tx.send(std::string(64, 'x'), 0);
  tx->tick(1'000'000'000);
  std::size_t batched = 0;
  for (const Packet* p : tx.sink.transmitted) {
    CHECK(p->payload_len <= 1400);
    if (p->ext(wire::Ext::batch) != nullptr) batched += batch_ext(*p).first;
  }
  // 78 + 19 * 67 = 1351 <= 1400 < 1351 + 67: 20 messages to a batch (13 with full records).
  CHECK(batch_ext(*tx.sink.transmitted[0]).first == 20);
  CHECK(tx.sink.transmitted[0]->payload_len == 1351);
  CHECK(batched + tx->counters().get("pacing.coalesce_lone_sent") == 100);
  const std::size_t datagrams = tx.sink.transmitted.size();
  CHECK(datagrams == 5);  // five batches of 20, the last one flushed by the timer
  CHECK(carry(tx, rx) == datagrams);
  CHECK(rx.sink.delivered.size() == 100);
  std::vector<std::uint64_t> want;
  for (std::uint64_t s = 1; s <= 100; ++s) want.push_back(s);
  CHECK(rx.sink.seqs() == want);
  rx.sink.clear();
}

TEST_CASE("pacing.coalesce compact: a receiver reads hand-made compact batches, flags and extra extensions too") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  // Explicit seq 41, then two implied (42, 43), then one with the unordered flag and a seq
  // jump written out, then one implied after it (101).
  const auto payload =
      cat({record(0, seq_ext(41), "a", false), record(0x10, {}, "b", true),
           record(0x10 | wire::kFlagReliable, {}, "c", true),
           record(static_cast<std::uint8_t>(wire::kFlagUnordered), seq_ext(100), "d", false), record(0x10, {}, "e", true)});
  rx->receive(compact_batch(pool, payload, 5), 9);
  REQUIRE(rx.sink.payloads() == std::vector<std::string>{"a", "b", "c", "d", "e"});
  std::vector<std::uint64_t> seqs;
  for (const Packet* p : rx.sink.delivered) {
    std::uint8_t len = 0;
    const std::uint8_t* s = p->ext(wire::Ext::seq, &len);
    REQUIRE(s != nullptr);
    CHECK(len == 8);
    seqs.push_back(wire::get_u64(s));
    CHECK(p->sender == kSender);
    CHECK(p->epoch == kEpoch);
  }
  CHECK(seqs == std::vector<std::uint64_t>{41, 42, 43, 100, 101});
  CHECK(rx.sink.delivered[2]->flags == wire::kFlagReliable);
  CHECK(rx.sink.delivered[3]->flags == wire::kFlagUnordered);
  rx.sink.clear();
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce compact: bad records are dropped and counted, the others delivered") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  struct Case {
    const char* what;
    std::vector<std::uint8_t> bad;
  };
  const std::vector<Case> cases = {
      {"implied seq with no seq before it", record(0x10, {}, "x", true)},
      {"unknown head bits", record(0x20, seq_ext(5), "x", false)},
      {"CRC flag inside a batch", record(static_cast<std::uint8_t>(wire::kFlagCrc), seq_ext(5), "x", false)},
      {"extension bytes past the record", {0, 2, 0, 9}},
      {"empty record", {0, 0}},
      {"broken extension", record(0, {static_cast<std::uint8_t>(wire::Ext::seq), 9, 1}, "x", false)},
      {"a batch inside a batch", record(0, {static_cast<std::uint8_t>(wire::Ext::batch), 2, 0, 2}, "x", false)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    // The bad record first, then a good one with its own seq.
    rx->receive(compact_batch(pool, cat({c.bad, record(0, seq_ext(9), "ok", false)}), 2), 0);
    CHECK(rx.sink.payloads() == std::vector<std::string>{"ok"});
    rx.sink.clear();
  }
  CHECK(rx->counters().get("pacing.coalesce_records_malformed") == cases.size());
  // An implied record right after a bad one is refused too: its seq cannot be known.
  rx->receive(compact_batch(pool, cat({record(0, seq_ext(1), "a", false), record(0x20, {}, "bad", true),
                                       record(0x10, {}, "c", true)}),
                            3),
              0);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"a"});
  rx.sink.clear();
  // An unknown format is a malformed batch.
  rx->receive(compact_batch(pool, cat({record(0, seq_ext(1), "a", false), record(0x10, {}, "b", true)}), 2, 2), 0);
  CHECK(rx.sink.delivered.empty());
  CHECK(rx->counters().get("pacing.coalesce_batch_malformed") == 1);
  CHECK(pool.in_use() == 0);
}

TEST_CASE("pacing.coalesce compact: random bytes inside a well-framed compact batch never crash and never leak") {
  PacketPool pool(2048, 16, 1024);
  Endpoint rx(pool, make_plan({stage("pacing.coalesce")}), make_env(2));
  std::uint64_t state = 987654321;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::uint64_t delivered = 0;
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::uint8_t> payload;
    const int n = 2 + static_cast<int>(next() % 5);
    for (int i = 0; i < n; ++i) {
      const bool imp = i > 0 && next() % 2 == 0;
      auto r = record(imp ? 0x10 : 0, imp ? std::vector<std::uint8_t>{} : seq_ext(1 + next() % 5),
                      "payload" + std::to_string(i), imp);
      const int flips = static_cast<int>(next() % 3);
      // Flip bits after the length prefix, so the framing stays intact and the record's
      // contents are what is hostile.
      for (int f = 0; f < flips; ++f) {
        r[2 + next() % (r.size() - 2)] ^= static_cast<std::uint8_t>(1u << (next() % 8));
      }
      payload.insert(payload.end(), r.begin(), r.end());
    }
    rx->receive(compact_batch(pool, payload, static_cast<std::uint16_t>(n)), 0);
    delivered += rx.sink.delivered.size();
    rx.sink.clear();
  }
  CHECK(delivered > 0);
  CHECK(pool.in_use() == 0);
}
