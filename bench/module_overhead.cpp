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
#include "stage_bench.hpp"
#include "tmc/modules.hpp"

// The module's source, compiled in: gives tally_info() (and an unused entry point).
#include "../tests/modules/counting.cpp"

using namespace tmc;

namespace {

constexpr std::uint32_t kPayload = 64;

using bench::BenchIo;

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

void pipeline(benchmark::State& state, const Registry& reg) {
  Plan plan;
  for (const char* kind : {"ordering.seq", "tally.count", "checksum.crc32c"}) {
    PlannedStage s;
    s.kind = kind;
    plan.stages.push_back(std::move(s));
  }
  bench::pipeline_round_trip(state, plan, reg, kPayload);
}
void BM_pipeline_builtin(benchmark::State& state) { pipeline(state, builtin_with_tally()); }
void BM_pipeline_module(benchmark::State& state) { pipeline(state, module_registry()); }
BENCHMARK(BM_pipeline_builtin);
BENCHMARK(BM_pipeline_module);

}  // namespace

BENCHMARK_MAIN();
