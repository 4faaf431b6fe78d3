// The module repository's index (index.yaml): what the repository holds, signed as a whole.
//
//   format: 1                           # this layout; other values are refused
//   repository: "example-modules"       # the repository's id (rollback state is kept per id)
//   version: 7                          # grows with every signing; never goes back
//   expires: "2027-01-06T09:00:00Z"     # UTC; the index is refused from this instant on
//   modules:
//     - name: fec
//       version: "1.0.0"
//       abi: 1                          # the module C ABI version the object was built for
//       file: fec/libtmc_fec.so         # relative to the repository directory
//       sha256: "<64 hex digits>"       # of the file's bytes
//       stages: [fec.xor]               # stage kinds it provides
//       controllers: []                 # congestion controllers it provides
//
// A *draft* index (what an operator writes before `tmc modules sign`) may leave out
// version, expires and every sha256; signing fills them in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/modules/keys.hpp"
#include "runtime/modules/result.hpp"

namespace tmc::modules {

inline constexpr std::int64_t kIndexFormat = 1;

struct ModuleEntry {
  std::string name;
  std::string version;
  std::int64_t abi = 0;
  std::string file;  ///< relative to the repository directory, never leaving it
  std::optional<Sha256> sha256;  ///< always set in a signed index
  std::vector<std::string> stages;
  std::vector<std::string> controllers;
  int line = 0;  ///< where the entry starts in index.yaml
};

struct Index {
  std::int64_t format = kIndexFormat;
  std::string repository;
  std::int64_t version = 0;  ///< 0 only in a draft
  std::optional<std::chrono::sys_seconds> expires;
  std::vector<ModuleEntry> modules;

  [[nodiscard]] const ModuleEntry* find(std::string_view name) const;
  /// The module that provides stage kind or congestion controller `kind`, or nullptr.
  [[nodiscard]] const ModuleEntry* provider_of(std::string_view kind) const;
};

enum class IndexMode { signed_index, draft };

/// Parse index.yaml. Every refusal names the file, the line and the field (step 'index').
Result<Index> parse_index(std::string_view text, const std::string& file, IndexMode mode = IndexMode::signed_index);
/// The canonical text of an index; parse_index(render_index(x)) == x.
std::string render_index(const Index& index);

/// "2027-01-06T09:00:00Z" <-> seconds since the epoch. Only this UTC form is accepted.
std::optional<std::chrono::sys_seconds> parse_utc(std::string_view text);
std::string format_utc(std::chrono::sys_seconds t);

}  // namespace tmc::modules
