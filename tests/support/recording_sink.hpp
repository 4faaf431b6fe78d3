// Test support: a PipelineSink that records what a pipeline hands out, plus helpers to
// build pipelines from hand-written plans and to forge datagrams. Header-only; tests
// include it as "../support/recording_sink.hpp".
#pragma once

#include <doctest/doctest.h>

#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/pipeline.hpp"
#include "tmc/plan.hpp"
#include "tmc/stage.hpp"

namespace tmc::test {

/// Records transmitted datagrams, delivered messages and events. Owns the packets it
/// holds and releases them when cleared or destroyed.
class RecordingSink final : public PipelineSink {
 public:
  RecordingSink() = default;
  RecordingSink(const RecordingSink&) = delete;
  RecordingSink& operator=(const RecordingSink&) = delete;
  ~RecordingSink() { clear(); }

  void transmit(Packet* p) noexcept override { transmitted.push_back(p); }
  void deliver(Packet* p) noexcept override { delivered.push_back(p); }
  void on_event(const Event& e) noexcept override { events.push_back(e); }

  void clear() noexcept {
    for (Packet* p : transmitted) p->release();
    for (Packet* p : delivered) p->release();
    transmitted.clear();
    delivered.clear();
    events.clear();
  }

  /// Payloads of the delivered messages, in delivery order.
  [[nodiscard]] std::vector<std::string> payloads() const {
    std::vector<std::string> out;
    for (const Packet* p : delivered) out.emplace_back(reinterpret_cast<const char*>(p->payload()), p->payload_len);
    return out;
  }
  /// Sequence numbers (Packet::seq) of the delivered messages, in delivery order.
  [[nodiscard]] std::vector<std::uint64_t> seqs() const {
    std::vector<std::uint64_t> out;
    for (const Packet* p : delivered) out.push_back(p->seq);
    return out;
  }
  [[nodiscard]] std::size_t count_events(EventType t) const {
    std::size_t n = 0;
    for (const Event& e : events) n += e.type == t ? 1 : 0;
    return n;
  }

  std::vector<Packet*> transmitted;
  std::vector<Packet*> delivered;
  std::vector<Event> events;
};

inline PlannedStage stage(std::string kind, std::initializer_list<std::pair<const std::string, std::string>> params = {}) {
  PlannedStage s;
  s.kind = std::move(kind);
  s.params = std::map<std::string, std::string, std::less<>>(params);
  s.reason = "test";
  return s;
}

inline Plan make_plan(std::vector<PlannedStage> stages) {
  Plan plan;
  plan.channel_id = "test";
  plan.channel_hash = wire::channel_hash("test", 4);
  plan.member = "m";
  plan.stages = std::move(stages);
  return plan;
}

inline StageEnv make_env(std::uint32_t sender, std::uint32_t epoch = 1000, std::uint64_t seed = 42) {
  StageEnv env;
  env.channel = wire::channel_hash("test", 4);
  env.sender = sender;
  env.epoch = epoch;
  env.seed = seed;
  env.max_payload_bytes = 1400;
  return env;
}

/// A pool, a sink and a pipeline built from `plan`; the pool outlives the other two.
struct Endpoint {
  Endpoint(PacketPool& pool_, const Plan& plan, const StageEnv& env) : pool(pool_) {
    const Status st = Pipeline::build(plan, Registry::builtin(), env, pool, sink, pipeline);
    INFO(st.to_string());
    REQUIRE(st.is_ok());
  }
  PacketPool& pool;
  RecordingSink sink;
  std::unique_ptr<Pipeline> pipeline;

  Pipeline& operator*() { return *pipeline; }
  Pipeline* operator->() { return pipeline.get(); }

  /// Send `payload` as one message at `now_ns`.
  void send(std::string_view payload, std::uint64_t now_ns = 0, std::uint16_t flags = 0) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(payload.size()));
    std::memcpy(p->payload(), payload.data(), payload.size());
    p->flags = flags;
    pipeline->send(p, now_ns);
  }
};

/// The bytes of a sealed packet copied into a fresh receive-path packet (what a transport does).
inline Packet* as_received(PacketPool& pool, const Packet& sent) {
  Packet* r = pool.alloc();
  REQUIRE(r != nullptr);
  r->reset_for_receive();
  REQUIRE(sent.len <= r->cap);
  std::memcpy(r->buf, sent.data(), sent.len);
  r->len = sent.len;
  return r;
}

/// Move everything `from` transmitted into `to`'s receive path; returns how many.
inline std::size_t carry(Endpoint& from, Endpoint& to, std::uint64_t now_ns = 0) {
  std::vector<Packet*> batch;
  batch.swap(from.sink.transmitted);
  for (Packet* p : batch) {
    to->receive(as_received(to.pool, *p), now_ns);
    p->release();
  }
  return batch.size();
}

/// A forged datagram from (sender, epoch) carrying sequence number `seq` (0: no seq
/// extension), ready for Pipeline::receive.
inline Packet* datagram(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq,
                        std::string_view payload = "x", std::uint16_t flags = 0, wire::Kind kind = wire::Kind::data) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = kind;
  s->flags = flags;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  if (seq != 0) {
    std::uint8_t* body = s->push_ext(wire::Ext::seq, 8);
    REQUIRE(body != nullptr);
    wire::put_u64(body, seq);
  }
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

}  // namespace tmc::test
