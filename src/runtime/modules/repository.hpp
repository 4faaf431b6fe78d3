// A verified module repository: a directory holding index.yaml, its detached Ed25519
// signature index.yaml.sig, and the shared objects the index lists.
//
// open_repository() decides whether to believe an index, in this order (as TUF does):
//   read       index.yaml and index.yaml.sig exist and can be read    (else: missing / unsigned)
//   trust      the signing key is listed in the operator's trust file (else: untrusted key)
//   signature  the signature verifies over the exact bytes of index.yaml (else: bad signature)
//   index      the (now authenticated) index is well formed          (else: malformed, field and line)
//   expiry     `now` is before the index's expiry time                (else: expired)
//   rollback   its version is not below the one this machine accepted before, and an equal
//              version is byte-identical                              (else: rolled back)
// and then records the accepted version in the state file. The index's YAML is parsed
// only after its signature verified. verify_object() then checks one module's shared
// object on demand:
//   file       the object exists and can be read                      (else: missing file)
//   digest     its SHA-256 equals the index's                         (else: digest mismatch)
// Every refusal is a MODULE_ERROR whose message names the file, the step and the module
// (see refusal() in result.hpp). Nothing here reads a clock or an environment variable:
// `now` and every path are arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/modules/index.hpp"
#include "runtime/modules/keys.hpp"
#include "runtime/modules/result.hpp"

namespace tmc::modules {

inline constexpr std::string_view kIndexFile = "index.yaml";
inline constexpr std::string_view kSignatureFile = "index.yaml.sig";

/// An index that passed every check of open_repository().
struct VerifiedIndex {
  std::filesystem::path dir;
  Index index;
  std::string key_id;  ///< the trusted key that signed it
  Sha256 index_sha256{};
};

/// Check the repository in `dir` against `trust_file`, refusing rollbacks relative to
/// `state_file` (which it updates on success). `passed`, when given, receives one line
/// per check that passed, in order ("signature: ... verified"), also when a later one fails.
Result<VerifiedIndex> open_repository(const std::filesystem::path& dir, const std::filesystem::path& trust_file,
                                      const std::filesystem::path& state_file, std::chrono::sys_seconds now,
                                      std::vector<std::string>* passed = nullptr);

/// A module's shared object whose bytes matched the signed digest. The bytes that were
/// hashed are held in a sealed in-memory file, so what the loader maps is exactly what was
/// verified even if the file on disk changes afterwards. Move-only; closes the copy.
class VerifiedObject {
 public:
  VerifiedObject(const ModuleEntry& entry, std::filesystem::path source, int sealed_fd);
  VerifiedObject(VerifiedObject&& other) noexcept;
  VerifiedObject& operator=(VerifiedObject&& other) noexcept;
  VerifiedObject(const VerifiedObject&) = delete;
  VerifiedObject& operator=(const VerifiedObject&) = delete;
  ~VerifiedObject();

  [[nodiscard]] const ModuleEntry& entry() const noexcept { return entry_; }
  /// The file in the repository, for messages ("where it came from").
  [[nodiscard]] const std::filesystem::path& source() const noexcept { return source_; }
  [[nodiscard]] const Sha256& sha256() const noexcept { return *entry_.sha256; }
  /// The path to give dlopen(): "/proc/self/fd/N" of the sealed copy. Valid while this
  /// object lives; dlopen keeps its own mapping afterwards.
  [[nodiscard]] std::string load_path() const;

 private:
  ModuleEntry entry_;
  std::filesystem::path source_;
  int fd_ = -1;
};

Result<VerifiedObject> verify_object(const VerifiedIndex& repo, const ModuleEntry& entry);
/// The module named `name`, or a refusal naming it when the index does not list it.
Result<VerifiedObject> verify_object(const VerifiedIndex& repo, std::string_view name);

/// What a process hands the module loader: open the repository (every index check) and
/// verify the objects of the modules named, in that order. The first refusal stops it.
/// The loader dlopen()s each VerifiedObject::load_path() and reports entry() and sha256()
/// as the stage's provenance.
Result<std::vector<VerifiedObject>> verify_modules(const std::filesystem::path& dir,
                                                   const std::filesystem::path& trust_file,
                                                   const std::filesystem::path& state_file,
                                                   const std::vector<std::string>& names, std::chrono::sys_seconds now);

// --- the operator's side ---------------------------------------------------------------

struct SignOptions {
  std::optional<std::int64_t> version;  ///< default: the index's version + 1
  std::chrono::seconds valid_for{std::chrono::hours(24 * 30)};
  std::chrono::sys_seconds now{};
};

/// Read `dir`/index.yaml (a draft or a signed index), fill in every module's SHA-256,
/// the version and the expiry, and write index.yaml and index.yaml.sig signed with `key`.
/// Returns the index written.
Result<Index> sign_repository(const std::filesystem::path& dir, const KeyPair& key, const SignOptions& options);

/// "30d", "12h", "90m", "3600s" -> seconds; nullopt for anything else (or zero).
std::optional<std::chrono::seconds> parse_duration(std::string_view text);

}  // namespace tmc::modules
