// `tmc stat`: the live counters of every libTMC process on this host.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace tmc_tool {

struct StatOptions {
  std::string dir;  ///< empty: $TMC_STAT_DIR or /dev/shm/libtmc-<uid>
  bool json = false;
  bool prometheus = false;
  bool watch = false;
  double interval_s = 1.0;
  int count = 0;  ///< --watch: stop after this many refreshes (0: until interrupted)
  bool all = false;
  bool clean = false;
};

/// Registers the subcommand; `opts` must outlive parsing.
CLI::App* add_stat_command(CLI::App& app, StatOptions& opts);
int run_stat(const StatOptions& opts);

}  // namespace tmc_tool
