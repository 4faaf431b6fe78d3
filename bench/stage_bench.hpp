// Shared by the in-process stage benchmarks (micro_stages.cpp, module_overhead.cpp): a stub
// StageIo for timing one stage call, and a sender and a receiver pipeline joined by a
// loopback sink for timing a whole send -> receive round.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "runtime/pipeline.hpp"

namespace tmc::bench {

/// The stage's whole world: remembers the last packet it was handed, counts, and nothing else.
class BenchIo final : public StageIo {
 public:
  BenchIo() : StageIo(&now_) {}
  void down(Packet* p) noexcept override { last = p; }
  void up(Packet* p) noexcept override { last = p; }
  void drop(Packet* p, DropReason r) noexcept override {
    (void)r;
    last = p;
    ++drops;
  }
  void arm_timer(std::uint64_t deadline_ns) noexcept override { (void)deadline_ns; }
  void cancel_timer() noexcept override {}
  void count(std::size_t index, std::uint64_t n) noexcept override { counters[index % 32] += n; }
  void notify(const Event& e) noexcept override { (void)e; }
  Packet* alloc() noexcept override { return nullptr; }
  Packet* clone(const Packet& p) noexcept override {
    (void)p;
    return nullptr;
  }
  Packet* alloc_large(std::uint32_t payload_bytes) noexcept override {
    (void)payload_bytes;
    return nullptr;
  }
  Group& group() noexcept override { return group_; }

  std::uint64_t now_ = 0;
  Group group_;
  Packet* last = nullptr;
  std::uint64_t drops = 0;
  std::uint64_t counters[32] = {};
};

/// Hands each transmitted datagram straight to the receiving pipeline, as a transport
/// would (one copy into a receive buffer), and releases delivered messages.
class LoopbackSink final : public PipelineSink {
 public:
  explicit LoopbackSink(PacketPool& pool) : pool_(pool) {}
  void transmit(Packet* p) noexcept override {
    Packet* r = pool_.alloc();
    r->reset_for_receive();
    std::memcpy(r->buf, p->data(), p->len);
    r->len = p->len;
    p->release();
    peer->receive(r, 0);
  }
  void deliver(Packet* p) noexcept override {
    ++delivered;
    p->release();
  }
  void on_event(const Event& e) noexcept override { (void)e; }
  Pipeline* peer = nullptr;
  std::uint64_t delivered = 0;

 private:
  PacketPool& pool_;
};

/// One `payload`-byte message per iteration, sent through a pipeline built from `plan` and
/// received through a second one (other sender id) on the loopback sink.
inline void pipeline_round_trip(benchmark::State& state, const Plan& plan, const Registry& registry,
                                std::uint32_t payload) {
  PacketPool pool(2048, 64, 1024);
  LoopbackSink tx_sink(pool), rx_sink(pool);
  std::unique_ptr<Pipeline> tx, rx;
  StageEnv tx_env{.channel = 77, .sender = 1, .epoch = 5, .seed = 1, .max_payload_bytes = 1400};
  StageEnv rx_env{.channel = 77, .sender = 2, .epoch = 6, .seed = 2, .max_payload_bytes = 1400};
  if (!Pipeline::build(plan, registry, tx_env, pool, tx_sink, tx).is_ok() ||
      !Pipeline::build(plan, registry, rx_env, pool, rx_sink, rx).is_ok()) {
    state.SkipWithError("pipeline build failed");
    return;
  }
  tx_sink.peer = rx.get();
  for (auto _ : state) {
    Packet* p = pool.alloc();
    p->reset_for_send(payload);
    std::memset(p->payload(), 0x42, payload);
    tx->send(p, 0);
  }
  state.SetItemsProcessed(state.iterations());
  if (rx_sink.delivered != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("messages lost");
}

}  // namespace tmc::bench
