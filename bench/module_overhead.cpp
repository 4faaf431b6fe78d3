// What a stage costs when it comes from a module instead of being built in: the same
// stage (tests/modules/counting.cpp's tally.count, compiled into this binary for the
// built-in side, loaded from tally.so through the C ABI for the module side), per call of
// on_send and per message of a whole send -> receive pipeline (ordering.seq, tally.count,
// checksum.crc32c on both ends). Results: docs/benchmarks.md.
//
//   build/bench/tmc_module_overhead --benchmark_min_time=0.2 --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>

#include "runtime/pipeline.hpp"
#include "tmc/modules.hpp"

// The module's source, compiled in: gives tally_info() (and an unused entry point).
#include "../tests/modules/counting.cpp"

using namespace tmc;

namespace {

constexpr std::uint32_t kPayload = 64;

// The stage's whole world: remembers the last packet it was handed, counts.
class BenchIo final : public StageIo {
 public:
  BenchIo() : StageIo(&now_) {}
  void down(Packet* p) noexcept override { last = p; }
  void up(Packet* p) noexcept override { last = p; }
  void drop(Packet* p, DropReason) noexcept override { last = p; }
  void arm_timer(std::uint64_t) noexcept override {}
  void cancel_timer() noexcept override {}
  void count(std::size_t index, std::uint64_t n) noexcept override { counters[index % 8] += n; }
  void notify(const Event&) noexcept override {}
  Packet* alloc() noexcept override { return nullptr; }
  Packet* clone(const Packet&) noexcept override { return nullptr; }
  Packet* alloc_large(std::uint32_t) noexcept override { return nullptr; }
  Group& group() noexcept override { return group_; }

  std::uint64_t now_ = 0;
  Group group_;
  Packet* last = nullptr;
  std::uint64_t counters[8] = {};
};

const std::string kModulePath = std::string(TMC_MODULE_DIR) + "/tally.so";

/// Built-ins plus tally.count compiled in.
const Registry& builtin_with_tally() {
  static const Registry r = [] {
    Registry reg;
    for (const StageInfo* info : Registry::builtin().all()) (void)reg.add(*info);
    (void)reg.add(tally_info());
    return reg;
  }();
  return r;
}

/// Built-ins plus tally.count from tally.so.
const Registry& module_registry() {
  static const std::shared_ptr<ModuleSet> set = [] {
    auto s = std::make_shared<ModuleSet>();
    if (Status st = s->load(kModulePath); !st) {
      std::fprintf(stderr, "%s\n", st.to_string().c_str());
      std::abort();
    }
    return s;
  }();
  return set->registry();
}

std::unique_ptr<Stage> make(const Registry& reg) {
  const StageInfo* info = reg.find("tally.count");
  Params params;
  std::vector<std::string> errors;
  if (info == nullptr || !reg.resolve_params(*info, {}, params, errors)) std::abort();
  std::unique_ptr<Stage> s = info->factory();
  if (!s->configure(params, StageEnv{.channel = 77, .sender = 2, .epoch = 9, .seed = 1, .max_payload_bytes = 1400},
                    errors)) {
    std::abort();
  }
  return s;
}

void stage_send(benchmark::State& state, const Registry& reg) {
  PacketPool pool(2048, 4, 16);
  auto stage = make(reg);
  BenchIo io;
  Packet* p = pool.alloc();
  for (auto _ : state) {
    p->reset_for_send(kPayload);
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
void BM_stage_send_builtin(benchmark::State& state) { stage_send(state, builtin_with_tally()); }
void BM_stage_send_module(benchmark::State& state) { stage_send(state, module_registry()); }
BENCHMARK(BM_stage_send_builtin);
BENCHMARK(BM_stage_send_module);

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
  void on_event(const Event&) noexcept override {}
  Pipeline* peer = nullptr;
  std::uint64_t delivered = 0;

 private:
  PacketPool& pool_;
};

void pipeline(benchmark::State& state, const Registry& reg) {
  PacketPool pool(2048, 64, 1024);
  LoopbackSink tx_sink(pool), rx_sink(pool);
  Plan plan;
  for (const char* kind : {"ordering.seq", "tally.count", "checksum.crc32c"}) {
    PlannedStage s;
    s.kind = kind;
    plan.stages.push_back(std::move(s));
  }
  std::unique_ptr<Pipeline> tx, rx;
  StageEnv tx_env{.channel = 77, .sender = 1, .epoch = 5, .seed = 1, .max_payload_bytes = 1400};
  StageEnv rx_env{.channel = 77, .sender = 2, .epoch = 6, .seed = 2, .max_payload_bytes = 1400};
  if (!Pipeline::build(plan, reg, tx_env, pool, tx_sink, tx).is_ok() ||
      !Pipeline::build(plan, reg, rx_env, pool, rx_sink, rx).is_ok()) {
    state.SkipWithError("pipeline build failed");
    return;
  }
  tx_sink.peer = rx.get();
  for (auto _ : state) {
    Packet* p = pool.alloc();
    p->reset_for_send(kPayload);
    std::memset(p->payload(), 0x42, kPayload);
    tx->send(p, 0);
  }
  state.SetItemsProcessed(state.iterations());
  if (rx_sink.delivered != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("messages lost");
}
void BM_pipeline_builtin(benchmark::State& state) { pipeline(state, builtin_with_tally()); }
void BM_pipeline_module(benchmark::State& state) { pipeline(state, module_registry()); }
BENCHMARK(BM_pipeline_builtin);
BENCHMARK(BM_pipeline_module);

}  // namespace

BENCHMARK_MAIN();
