// Loading modules from a verified module repository (docs/modules.md, "Operating a module
// repository").
//
// load_from_repository() believes a repository only after its index passed every check —
// read, trust (the signing key is in the operator's trust file), signature (Ed25519 over the
// exact bytes of index.yaml), expiry, rollback (not older than a version this machine
// accepted) — and loads each named module only after its shared object's SHA-256 matched
// the signed index. The loaded module must then be what the index says it is: the same
// name, version and ABI version, and the same stage kinds and controllers. Each refusal is
// a Status with Code::MODULE_ERROR naming the file, the step and the module.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tmc/status.hpp"

namespace tmc {

class ModuleSet;  // tmc/modules.hpp

/// Where a program's modules come from. Every path is explicit.
struct ModuleRepository {
  std::string dir;         ///< the repository directory (index.yaml, index.yaml.sig, objects)
  std::string trust_file;  ///< the operator's trust file: the keys allowed to sign
  /// Highest versions accepted so far, per repository (rollback protection). Empty: the
  /// user's state directory, $XDG_STATE_HOME/tmc/module-repositories.yaml or
  /// ~/.local/state/tmc/module-repositories.yaml.
  std::string state_file;
  [[nodiscard]] bool empty() const noexcept { return dir.empty(); }
};

/// Verify `repo` and load the modules `names` into `set`, in order. On a refusal nothing
/// more is loaded; modules loaded before it stay in `set`.
Status load_from_repository(ModuleSet& set, const ModuleRepository& repo, const std::vector<std::string>& names);
/// The same at a given time (`now` decides expiry), for tests and tools.
Status load_from_repository(ModuleSet& set, const ModuleRepository& repo, const std::vector<std::string>& names,
                            std::chrono::sys_seconds now);

}  // namespace tmc
