// `tmc modules`: operate a verified module repository (keygen, sign, verify, list, info).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

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

/// Registers `modules` and its subcommands; `opts` must outlive parsing.
CLI::App* add_modules_command(CLI::App& app, ModulesOptions& opts);
int run_modules(const ModulesOptions& opts);

}  // namespace tmc_tool
