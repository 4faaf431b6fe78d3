// The module manager's loading side: shared objects that add stage kinds and congestion
// controllers (written against tmc/module_abi.h, usually through tmc/module.hpp).
//
//   load_module_object(path, sha256)  reads the file, checks its SHA-256 against the digest
//                                     a verified repository index gave for it, and only then
//                                     loads those same bytes (no second read of the path
//                                     that could see another file), finds tmc_module_entry,
//                                     checks the table field by field and converts it.
//   ModuleSet                         the modules a program has loaded, and the Registry
//                                     that layers their stage kinds and controllers over the
//                                     built-ins: hand it to OpenOptions::modules (channels),
//                                     sim::Network::add_member (the simulator), `tmc plan`.
//
// Every refusal is a Status with Code::MODULE_ERROR whose message names the module (or, when
// it is not known yet, the file), the file and the step that failed: "read", "digest",
// "dlopen", "entry point", "init", "abi version", "table", "stage <kind>", "controller
// <name>", "conflict".
//
// A module stays loaded while anything uses it: the ModuleSet, a stage or a controller built
// from it each hold a reference. Loading is explicit: nothing here reads an environment
// variable or a default directory.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tmc/congestion.hpp"
#include "tmc/module_abi.h"
#include "tmc/stage.hpp"
#include "tmc/status.hpp"

namespace tmc {

/// The oldest and newest module ABI versions this runtime speaks (tmc/module_abi.h).
inline constexpr std::uint32_t kModuleAbiMin = 1;
inline constexpr std::uint32_t kModuleAbiMax = 1;

/// One loaded module object.
class LoadedModule {
 public:
  ~LoadedModule();
  LoadedModule(const LoadedModule&) = delete;
  LoadedModule& operator=(const LoadedModule&) = delete;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::string& version() const noexcept { return version_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  /// SHA-256 of the object's bytes, lower-case hex (computed while loading).
  [[nodiscard]] const std::string& sha256() const noexcept { return sha256_; }
  [[nodiscard]] std::uint32_t abi_version() const noexcept { return abi_version_; }
  /// "module fec 1.0.0, sha256 3f2a...": what `tmc plan` prints for its stages.
  [[nodiscard]] const std::string& provenance() const noexcept { return provenance_; }
  /// Its stage kinds, described like built-ins (factories keep the module loaded).
  [[nodiscard]] const std::vector<StageInfo>& stages() const noexcept { return stages_; }
  /// Names of its congestion controllers.
  [[nodiscard]] std::vector<std::string_view> controllers() const;
  /// A controller of this module by name, or nullptr for a name it does not provide; a
  /// controller whose create() fails is reported in `error` (and nullptr returned).
  [[nodiscard]] std::unique_ptr<CongestionController> make_controller(std::string_view name,
                                                                      const CongestionLimits& limits,
                                                                      std::string* error = nullptr) const;

 private:
  friend struct ModuleLoader;
  LoadedModule() = default;

  void* handle_ = nullptr;
  int memfd_ = -1;
  // The module's tables, copied into the layout of this runtime's header: fields past a
  // module's struct_size (built against an older header) read as zero.
  tmc_module table_{};
  std::deque<tmc_stage_kind> stage_tables_;
  std::deque<tmc_controller_kind> controller_tables_;
  std::string name_, version_, path_, sha256_, provenance_;
  std::uint32_t abi_version_ = 0;
  std::vector<StageInfo> stages_;
  std::vector<const tmc_controller_kind*> controllers_;
  // Storage the StageInfos point into (stable addresses).
  std::deque<std::string> strings_;
  std::deque<std::vector<std::string_view>> words_;
  std::weak_ptr<const LoadedModule> self_;
};

/// Load one module object. `expected_sha256_hex` is the digest a verified index lists for
/// the file; the bytes must match it before anything of the file runs. "" skips the check
/// (for tests and for a program that vouches for the file itself).
Status load_module_object(const std::string& path, std::string_view expected_sha256_hex,
                          std::shared_ptr<const LoadedModule>& out);

/// SHA-256 of `bytes`, lower-case hex.
std::string sha256_hex(std::string_view bytes);

/// Loaded modules plus the Registry that layers their stage kinds over the built-ins.
class ModuleSet {
 public:
  ModuleSet();
  ~ModuleSet();
  ModuleSet(const ModuleSet&) = delete;
  ModuleSet& operator=(const ModuleSet&) = delete;

  /// Add a loaded module. Refuses a second module of the same name, a stage kind or a
  /// controller name that is built in or that another loaded module provides.
  Status add(std::shared_ptr<const LoadedModule> module);
  /// load_module_object() then add().
  Status load(const std::string& path, std::string_view expected_sha256_hex = {});

  /// Built-in stage kinds and every loaded module's, and congestion.window knowing the
  /// modules' controllers (its `algorithm` parameter accepts their names).
  [[nodiscard]] const Registry& registry() const noexcept { return *registry_; }
  [[nodiscard]] const LoadedModule* find(std::string_view name) const noexcept;
  [[nodiscard]] const std::vector<std::shared_ptr<const LoadedModule>>& modules() const noexcept { return modules_; }
  /// "fec 1.0.0, ledbat 0.3.1", or "none" when nothing is loaded (for error messages).
  [[nodiscard]] std::string loaded_text() const;
  /// A built-in or module controller by name; nullptr when no one provides it.
  [[nodiscard]] std::unique_ptr<CongestionController> make_controller(std::string_view name,
                                                                      const CongestionLimits& limits) const;

  /// The manifest's `modules:` list must name loaded modules; each missing one is an error
  /// naming what is loaded.
  [[nodiscard]] Status check_requested(const std::vector<std::string>& names) const;

 private:
  void rebuild();

  std::vector<std::shared_ptr<const LoadedModule>> modules_;
  std::unique_ptr<Registry> registry_;
  std::vector<std::string_view> algorithms_;  ///< congestion.window's words, built in + modules
};

}  // namespace tmc
