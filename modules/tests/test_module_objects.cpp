// The module objects the build produces (build/modules/tmc_<mod>.so): each exports its
// entry point alone, and the table it returns describes the same stage kinds and
// controller as the code the other tests link directly. The LEDBAT controller is driven
// through the C table, as congestion.window does once the module is loaded.
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <memory>
#include <string>

#include "causal/causal.hpp"
#include "fec/fec.hpp"
#include "tmc/module_abi.h"

namespace {

struct Object {
  void* handle = nullptr;
  const tmc_module* table = nullptr;
  ~Object() {
    if (handle != nullptr) dlclose(handle);
  }
};

std::unique_ptr<Object> open_module(const std::string& mod) {
  auto o = std::make_unique<Object>();
  const std::string path = std::string(TMC_MODULE_DIR) + "/tmc_" + mod + ".so";
  o->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE_MESSAGE(o->handle != nullptr, "dlopen " << path << ": " << dlerror());
  auto entry = reinterpret_cast<tmc_module_entry_fn>(dlsym(o->handle, TMC_MODULE_ENTRY_SYMBOL));
  REQUIRE_MESSAGE((entry != nullptr), path << " exports no " << TMC_MODULE_ENTRY_SYMBOL);
  o->table = entry(nullptr);
  REQUIRE(o->table != nullptr);
  CHECK(o->table->struct_size == sizeof(tmc_module));
  CHECK(o->table->abi_version == TMC_MODULE_ABI_VERSION);
  CHECK(std::string(o->table->name) == mod);
  CHECK(std::string(o->table->version) == "1.0.0");
  CHECK(o->table->cxx_layout != 0);
  return o;
}

// The exported stage kind says what the in-process StageInfo says.
void check_stage(const tmc_stage_kind& k, const tmc::StageInfo& info, tmc_layer layer) {
  CHECK(std::string(k.kind) == info.kind);
  CHECK(k.layer == static_cast<std::uint32_t>(layer));
  CHECK(k.n_params == info.params.size());
  for (std::uint32_t i = 0; i < k.n_params && i < info.params.size(); ++i) {
    CHECK(std::string(k.params[i].name) == info.params[i].name);
    CHECK(std::string(k.params[i].default_value) == info.params[i].default_value);
  }
  CHECK(k.n_counters == info.counters.size());
  for (std::uint32_t i = 0; i < k.n_counters && i < info.counters.size(); ++i) {
    CHECK(std::string(k.counters[i].name) == info.counters[i].name);
  }
  REQUIRE(k.n_extensions == info.extensions.size());
  for (std::uint32_t i = 0; i < k.n_extensions; ++i) {
    CHECK(k.extensions[i].type >= 128);
    CHECK(k.extensions[i].type == info.extensions[i].type);
  }
  CHECK(k.wire_bytes_per_datagram == info.wire_bytes_per_datagram);
  CHECK(k.n_requires_below == info.requires_below.size());
  CHECK((k.create != nullptr));
  CHECK((k.destroy != nullptr));
}

}  // namespace

TEST_CASE("module objects: tmc_fec.so exports fec.xor in the repair layer") {
  auto o = open_module("fec");
  REQUIRE(o->table->n_stages == 1);
  CHECK(o->table->n_controllers == 0);
  check_stage(*o->table->stages[0], tmc::modules::fec_xor_info(), TMC_LAYER_REPAIR);
}

TEST_CASE("module objects: tmc_causal.so exports ordering.causal in the ordering layer") {
  auto o = open_module("causal");
  REQUIRE(o->table->n_stages == 1);
  CHECK(o->table->n_controllers == 0);
  const tmc_stage_kind& k = *o->table->stages[0];
  check_stage(k, tmc::modules::causal_info(), TMC_LAYER_ORDERING);
  REQUIRE(k.n_requires_below == 1);
  CHECK(std::string(k.requires_below[0]) == "reliability.arq");
}

TEST_CASE("module objects: tmc_ledbat.so exports the ledbat controller, which backs off on delay") {
  auto o = open_module("ledbat");
  CHECK(o->table->n_stages == 0);
  REQUIRE(o->table->n_controllers == 1);
  const tmc_controller_kind& c = *o->table->controllers[0];
  CHECK(std::string(c.name) == "ledbat");
  const tmc_congestion_limits limits{.mss_bytes = 1000, .initial_window_packets = 10, .min_window_packets = 2,
                                     .max_window_packets = 1000};
  char err[128] = {};
  void* s = c.create(&limits, err, sizeof err);
  REQUIRE_MESSAGE(s != nullptr, err);
  CHECK(c.window_bytes(s) == 10'000);
  constexpr std::uint64_t kMs = 1'000'000;
  std::uint64_t now = 0;
  // Delay at its base: the window grows.
  for (int r = 0; r < 10; ++r) {
    now += 40 * kMs;
    for (int i = 0; i < 10; ++i) c.on_acked(s, 1000, 40 * kMs, now);
  }
  const std::uint64_t grown = c.window_bytes(s);
  CHECK(grown > 10'000);
  // Delay 75 ms above its base, three times the target: it shrinks.
  for (int r = 0; r < 10; ++r) {
    now += 115 * kMs;
    for (int i = 0; i < 10; ++i) c.on_acked(s, 1000, 115 * kMs, now);
  }
  CHECK(c.window_bytes(s) < grown);
  c.on_loss(s, now);
  CHECK(c.window_bytes(s) >= 2'000);
  c.destroy(s);
}
