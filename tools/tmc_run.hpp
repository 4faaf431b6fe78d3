// `tmc run --manifest M.yaml [--name NAME] -- PROGRAM ARGS...` (tmc_run.cpp).
#pragma once

#include <string>
#include <vector>

namespace tmc_tool {

struct RunOptions {
  std::string manifest;
  std::string name;  ///< the member name of the program's first rewired socket
  std::vector<std::string> command;
};

/// Checks the manifest, then execs the program with the shim preloaded; returns only on
/// failure (1: the manifest or the shim, 127: the program could not be started).
int run_program(const RunOptions& options);

}  // namespace tmc_tool
