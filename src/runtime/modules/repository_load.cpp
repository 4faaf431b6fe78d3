// The verified repository in front of the loader: verify_modules(), then
// load_module_object() with the signed digest, then a check that the object is what the
// signed index says it is.
#include <algorithm>

#include "runtime/modules/repository.hpp"
#include "runtime/modules/state.hpp"
#include "tmc/module_repository.hpp"
#include "tmc/modules.hpp"

namespace tmc {
namespace {

std::string list_text(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

// The index is what an operator reviewed and signed: an object that calls itself something
// else, or provides other kinds, is refused even though its bytes match.
Status check_matches_index(const modules::VerifiedObject& obj, const LoadedModule& m) {
  const modules::ModuleEntry& e = obj.entry();
  auto mismatch = [&](const std::string& what) {
    return modules::refusal("index", obj.source().string(), 0, e.name, "the loaded object " + what);
  };
  if (m.name() != e.name) return mismatch("is named '" + m.name() + "'");
  if (m.version() != e.version) return mismatch("has version " + m.version() + ", the index says " + e.version);
  if (static_cast<std::int64_t>(m.abi_version()) != e.abi) {
    return mismatch("was built for ABI version " + std::to_string(m.abi_version()) + ", the index says " +
                    std::to_string(e.abi));
  }
  std::vector<std::string> stages;
  for (const StageInfo& s : m.stages()) stages.emplace_back(s.kind);
  if (list_text(stages) != list_text(e.stages)) {
    return mismatch("provides stage kinds " + list_text(stages) + ", the index lists " + list_text(e.stages));
  }
  std::vector<std::string> controllers;
  for (std::string_view c : m.controllers()) controllers.emplace_back(c);
  if (list_text(controllers) != list_text(e.controllers)) {
    return mismatch("provides controllers " + list_text(controllers) + ", the index lists " + list_text(e.controllers));
  }
  return Status::ok();
}

}  // namespace

Status load_from_repository(ModuleSet& set, const ModuleRepository& repo, const std::vector<std::string>& names,
                            std::chrono::sys_seconds now) {
  const std::filesystem::path state =
      repo.state_file.empty() ? modules::default_state_file() : std::filesystem::path(repo.state_file);
  auto objects = modules::verify_modules(repo.dir, repo.trust_file, state, names, now);
  if (!objects) return objects.status();
  for (const modules::VerifiedObject& obj : objects.value()) {
    // The loader reads the file once more, checks the same digest over what it read and
    // maps exactly those bytes, so a file swapped after verification is still refused.
    std::shared_ptr<const LoadedModule> loaded;
    if (Status s = load_module_object(obj.source().string(), modules::to_hex(obj.sha256()), loaded); !s) return s;
    if (Status s = check_matches_index(obj, *loaded); !s) return s;
    if (Status s = set.add(std::move(loaded)); !s) return s;
  }
  return Status::ok();
}

Status load_from_repository(ModuleSet& set, const ModuleRepository& repo, const std::vector<std::string>& names) {
  return load_from_repository(set, repo, names,
                              std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
}

}  // namespace tmc
