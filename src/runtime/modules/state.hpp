// Rollback protection: the highest index version this machine has accepted from each
// repository, kept in a small YAML state file, as TUF keeps its trusted metadata.
//
//   repositories:
//     example-modules:
//       version: 7
//       index_sha256: "<64 hex digits of the accepted index.yaml>"
//
// The digest lets the manager tell a re-read of the same index (accepted) from a different
// index that reuses an accepted version number (refused). The file is replaced atomically
// and updated under an advisory lock, so concurrent processes do not lose each other's
// entries.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "runtime/modules/keys.hpp"
#include "runtime/modules/result.hpp"

namespace tmc::modules {

struct AcceptedVersion {
  std::int64_t version = 0;
  Sha256 index_sha256{};
};
using RepositoryState = std::map<std::string, AcceptedVersion>;

/// Read the state file; a file that does not exist yet is an empty state.
Result<RepositoryState> load_state(const std::filesystem::path& path);
std::string render_state(const RepositoryState& state);

/// Lock the state file, read it, let `update` decide (a refusal leaves the file untouched),
/// and write the result back atomically. Creates the parent directory when missing.
Status update_state(const std::filesystem::path& path, const std::function<Status(RepositoryState&)>& update);

/// $XDG_STATE_HOME/tmc/module-repositories.yaml, else ~/.local/state/tmc/module-repositories.yaml.
/// Only a default location: every API takes the path explicitly.
std::filesystem::path default_state_file();

}  // namespace tmc::modules
