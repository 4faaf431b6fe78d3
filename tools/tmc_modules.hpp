// `tmc modules`: operate a verified module repository (keygen, sign, verify, list, info).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "tmc/modules.hpp"

namespace tmc_tool {

struct ModulesOptions {
  std::string repo;        ///< repository directory
  std::string trust;       ///< the operator's trust file
  std::string state;       ///< rollback state file; empty: the default under the user's state dir
  std::string key;         ///< secret key file (keygen --out, sign --key)
  std::string add_trust;   ///< keygen --trust: add the new key to this trust file
  std::string expires = "30d";
  long long version = 0;   ///< sign --version; 0: the index's version + 1
  std::string name;        ///< info NAME
  CLI::App* keygen = nullptr;
  CLI::App* sign = nullptr;
  CLI::App* verify = nullptr;
  CLI::App* list = nullptr;
  CLI::App* info = nullptr;
};

/// `tmc plan --repo DIR --trust FILE [--state FILE]`: the manifest's `modules:` come from a
/// signed repository.
struct PlanRepositoryOptions {
  std::string repo, trust, state;
};
void add_plan_repository_options(CLI::App* plan, PlanRepositoryOptions& o);

/// Registers `modules` and its subcommands; `opts` must outlive parsing.
CLI::App* add_modules_command(CLI::App& app, ModulesOptions& opts);
int run_modules(const ModulesOptions& opts);

/// With --repo: verify the repository and load the modules the manifest names into `set`.
/// False (the refusal printed) when that fails; true when there is nothing to load or the
/// manifest does not parse (the plan then reports its problems).
bool load_plan_modules(const std::string& manifest_path, const PlanRepositoryOptions& o, tmc::ModuleSet& set);

}  // namespace tmc_tool
