// Shared by the compiler and golden-plan tests: a registry that holds every kind the
// compiler emits, and small file helpers.
//
// The built-in primitives are registered by Registry::builtin(); while one is still being
// written its kind may be missing, so the tests start from a copy of the built-in registry
// and add a stub only for a kind it lacks, declaring the same parameters the compiler emits.
// A kind that is present is used as is, so a mismatch between the compiler's parameters and
// the real stage's table still fails the tests (compile() returns INTERNAL).
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "tmc/stage.hpp"

namespace tmc::test {

class StubStage final : public Stage {
 public:
  bool configure(const Params&, const StageEnv&, std::vector<std::string>&) override { return true; }
};

inline const Registry& planning_registry() {
  static const Registry r = [] {
    Registry reg = Registry::builtin();
    auto stub = [&](std::string_view kind, std::vector<ParamSpec> params) {
      if (reg.find(kind) != nullptr) return;
      (void)reg.add(StageInfo{.kind = kind,
                              .synopsis = "test stub",
                              .notes = "",
                              .params = std::move(params),
                              .counters = {},
                              .factory = [] { return std::make_unique<StubStage>(); }});
    };
    stub("ordering.fifo", {{"mode", ParamType::string, "drop-stale", ""},
                           {"window", ParamType::integer, "64", ""},
                           {"hold_us", ParamType::integer, "50000", ""}});
    stub("ordering.seq", {});
    stub("checksum.crc32c", {{"require", ParamType::boolean, "false", ""}});
    stub("faults.inject", {{"loss", ParamType::real, "0", ""},
                           {"duplicate", ParamType::real, "0", ""},
                           {"reorder", ParamType::real, "0", ""},
                           {"corrupt", ParamType::real, "0", ""},
                           {"delay_us", ParamType::integer, "0", ""},
                           {"seed", ParamType::integer, "1", ""}});
    return reg;
  }();
  return r;
}

inline std::filesystem::path source_dir() { return std::filesystem::path(TMC_SOURCE_DIR); }

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
}

}  // namespace tmc::test
