// Per-message cost of the module stages, linked in versus loaded from their module objects
// (the loaded stage runs behind the module ABI's C table and adapter):
//   fec.xor          a sender pipeline and a receiver pipeline, one 200-byte message per
//                    iteration through both (tag, XOR on both sides, a parity every k = 8;
//                    `_loss` drops every 16th datagram on the way, so one block in two is
//                    repaired);
//   ordering.causal  the same two pipelines with ordering.causal: stamp and deliver.
// Run: build/modules/tmc_module_cost [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

#include "causal/causal.hpp"
#include "fec/fec.hpp"
#include "runtime/pipeline.hpp"
#include "sim/network.hpp"
#include "tmc/modules.hpp"

namespace {

using namespace tmc;

const Registry& linked() {
  static const Registry r = [] {
    Registry reg;
    register_builtin_stages(reg);
    (void)reg.add(modules::fec_xor_info());
    (void)reg.add(modules::causal_info());
    return reg;
  }();
  return r;
}

const Registry& loaded() {
  static const ModuleSet* set = [] {
    auto* s = new ModuleSet;
    for (const char* mod : {"fec", "causal"}) {
      const Status st = s->load(std::string(TMC_MODULE_DIR) + "/tmc_" + mod + ".so");
      if (!st.is_ok()) throw Error(st);
    }
    return s;
  }();
  return set->registry();
}

// The receiver: counts deliveries and gives packets back.
class Receiver final : public PipelineSink {
 public:
  void transmit(Packet* p) noexcept override { p->release(); }
  void deliver(Packet* p) noexcept override {
    ++delivered;
    p->release();
  }
  void on_event(const Event&) noexcept override {}
  std::uint64_t delivered = 0;
};

// The sender: every datagram it transmits is copied into a receive buffer and handed to
// the receiver's pipeline (every `drop_every`-th one lost, when non-zero).
class Wire final : public PipelineSink {
 public:
  Wire(PacketPool& rx_pool, std::uint32_t drop_every) : rx_pool_(rx_pool), drop_every_(drop_every) {}
  void transmit(Packet* p) noexcept override {
    ++n_;
    if (drop_every_ == 0 || n_ % drop_every_ != 0) {
      Packet* q = rx_pool_.alloc();
      if (q != nullptr) {
        q->reset_for_receive();
        std::memcpy(q->buf, p->data(), p->len);
        q->len = p->len;
        receiver->receive(q, now);
      }
    }
    p->release();
  }
  void deliver(Packet* p) noexcept override { p->release(); }
  void on_event(const Event&) noexcept override {}
  Pipeline* receiver = nullptr;
  std::uint64_t now = 1;

 private:
  PacketPool& rx_pool_;
  std::uint32_t drop_every_;
  std::uint64_t n_ = 0;
};

void run(benchmark::State& state, const Registry& reg, const std::vector<PlannedStage>& stages,
         std::uint32_t drop_every) {
  const Plan plan = sim::make_plan(stages);
  PacketPool tx_pool(2048, 64, 4096);
  PacketPool rx_pool(2048, 64, 4096);
  Receiver rx;
  Wire wire(rx_pool, drop_every);
  StageEnv tx_env{
      .channel = wire::channel_hash("sim", 3), .sender = 1, .epoch = 7, .seed = 1, .max_payload_bytes = 1400};
  StageEnv rx_env = tx_env;
  rx_env.sender = 2;
  std::unique_ptr<Pipeline> tx;
  std::unique_ptr<Pipeline> rxp;
  if (!Pipeline::build(plan, reg, tx_env, tx_pool, wire, tx).is_ok() ||
      !Pipeline::build(plan, reg, rx_env, rx_pool, rx, rxp).is_ok()) {
    state.SkipWithError("pipeline build failed");
    return;
  }
  wire.receiver = rxp.get();
  tx->start(1);
  rxp->start(1);
  std::uint64_t now = 1;
  for (auto _ : state) {
    Packet* p = tx_pool.alloc();
    p->reset_for_send(200);
    std::memset(p->payload(), 0x5A, 200);
    now += 1000;
    wire.now = now;
    tx->send(p, now);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["delivered_per_msg"] =
      static_cast<double>(rx.delivered) / static_cast<double>(std::max<std::uint64_t>(1, state.iterations()));
}

const std::vector<PlannedStage> kFec = {sim::stage("fec.xor", {{"k", "8"}})};
const std::vector<PlannedStage> kCausal = {sim::stage("ordering.causal")};

void BM_fec_linked(benchmark::State& s) { run(s, linked(), kFec, 0); }
void BM_fec_loaded(benchmark::State& s) { run(s, loaded(), kFec, 0); }
void BM_fec_linked_loss(benchmark::State& s) { run(s, linked(), kFec, 16); }
void BM_fec_loaded_loss(benchmark::State& s) { run(s, loaded(), kFec, 16); }
void BM_causal_linked(benchmark::State& s) { run(s, linked(), kCausal, 0); }
void BM_causal_loaded(benchmark::State& s) { run(s, loaded(), kCausal, 0); }
BENCHMARK(BM_fec_linked);
BENCHMARK(BM_fec_loaded);
BENCHMARK(BM_fec_linked_loss);
BENCHMARK(BM_fec_loaded_loss);
BENCHMARK(BM_causal_linked);
BENCHMARK(BM_causal_loaded);

}  // namespace

BENCHMARK_MAIN();
