#include "tmc_modules.hpp"

#include <chrono>
#include <iostream>

#include "runtime/modules/repository.hpp"
#include "runtime/modules/state.hpp"
#include "tmc/manifest.hpp"
#include "tmc/module_repository.hpp"
#include "tmc/modules.hpp"
#include "tmc/stage.hpp"

namespace tmc_tool {
namespace {

namespace fs = std::filesystem;
namespace mod = tmc::modules;

std::chrono::sys_seconds now() { return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()); }

fs::path state_file(const ModulesOptions& o) { return o.state.empty() ? mod::default_state_file() : fs::path(o.state); }

int fail(std::string_view command, const tmc::Status& s) {
  std::cerr << "tmc modules " << command << ": " << s.message() << "\n";
  return 1;
}

std::string names(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "-" : out;
}

int keygen(const ModulesOptions& o) {
  const mod::KeyPair kp = mod::generate_keypair();
  if (tmc::Status s = mod::write_secret_key_file(o.key, kp); !s) return fail("keygen", s);
  std::cout << "secret key written to " << o.key << " (mode 0600; keep it off the repository)\n"
            << "key id:  " << kp.id() << "\n"
            << "ed25519: " << mod::to_hex(kp.public_key) << "\n";
  const mod::TrustedKey entry{kp.id(), kp.public_key};
  if (o.add_trust.empty()) {
    std::cout << "trust file entry (add it under 'keys:' of each consumer's trust file):\n"
              << mod::render_trust_file({entry}).substr(mod::render_trust_file({}).size());
    return 0;
  }
  std::vector<mod::TrustedKey> keys;
  std::error_code ec;
  if (fs::exists(o.add_trust, ec)) {
    auto existing = mod::load_trust_file(o.add_trust);
    if (!existing) return fail("keygen", existing.status());
    keys = std::move(existing).value();
  }
  keys.push_back(entry);
  if (tmc::Status s = mod::write_file_atomically(o.add_trust, mod::render_trust_file(keys)); !s) return fail("keygen", s);
  std::cout << "trusted in " << o.add_trust << " (" << keys.size() << " key(s))\n";
  return 0;
}

int sign(const ModulesOptions& o) {
  auto kp = mod::load_secret_key_file(o.key);
  if (!kp) return fail("sign", kp.status());
  mod::SignOptions so;
  so.now = now();
  const auto valid = mod::parse_duration(o.expires);
  if (!valid) {
    return fail("sign", tmc::Status(tmc::Code::INVALID_ARGUMENT,
                                    "--expires '" + o.expires + "': want a duration like 30d, 12h, 90m or 3600s"));
  }
  so.valid_for = *valid;
  if (o.version > 0) so.version = o.version;
  auto index = mod::sign_repository(o.repo, kp.value(), so);
  if (!index) return fail("sign", index.status());
  std::cout << "signed " << (fs::path(o.repo) / mod::kIndexFile).string() << ": repository '" << index->repository
            << "' version " << index->version << ", " << index->modules.size() << " module(s), key "
            << kp->id() << ", expires " << mod::format_utc(*index->expires) << "\n";
  for (const mod::ModuleEntry& m : index->modules) {
    std::cout << "  " << m.name << " " << m.version << "  " << m.file << "  sha256 " << mod::to_hex(*m.sha256) << "\n";
  }
  return 0;
}

int verify(const ModulesOptions& o) {
  std::vector<std::string> passed;
  auto repo = mod::open_repository(o.repo, o.trust, state_file(o), now(), &passed);
  for (const std::string& line : passed) std::cout << "ok    " << line << "\n";
  if (!repo) {
    std::cout << "FAIL  " << repo.status().message() << "\n";
    return 1;
  }
  int failures = 0;
  for (const mod::ModuleEntry& m : repo->index.modules) {
    auto obj = mod::verify_object(repo.value(), m);
    if (obj) {
      std::cout << "ok    digest: " << m.name << " " << m.version << " (" << m.file << ") sha256 "
                << mod::to_hex(obj->sha256()) << "\n";
    } else {
      std::cout << "FAIL  " << obj.status().message() << "\n";
      ++failures;
    }
  }
  if (failures > 0) {
    std::cout << failures << " of " << repo->index.modules.size() << " module(s) refused\n";
    return 1;
  }
  std::cout << "verified: repository '" << repo->index.repository << "' version " << repo->index.version << ", "
            << repo->index.modules.size() << " module(s)\n";
  return 0;
}

int list(const ModulesOptions& o) {
  auto repo = mod::open_repository(o.repo, o.trust, state_file(o), now());
  if (!repo) return fail("list", repo.status());
  std::cout << "repository '" << repo->index.repository << "' version " << repo->index.version << ", signed by "
            << repo->key_id << ", expires " << mod::format_utc(*repo->index.expires) << "\n";
  for (const mod::ModuleEntry& m : repo->index.modules) {
    std::cout << m.name << "  " << m.version << "  abi " << m.abi << "  stages: " << names(m.stages)
              << "  controllers: " << names(m.controllers) << "\n";
  }
  return 0;
}

int info(const ModulesOptions& o) {
  auto repo = mod::open_repository(o.repo, o.trust, state_file(o), now());
  if (!repo) return fail("info", repo.status());
  auto obj = mod::verify_object(repo.value(), o.name);
  if (!obj) return fail("info", obj.status());
  const mod::ModuleEntry& m = obj->entry();
  std::cout << "module:      " << m.name << " " << m.version << "\n"
            << "abi:         " << m.abi << "\n"
            << "file:        " << obj->source().string() << "\n"
            << "sha256:      " << mod::to_hex(obj->sha256()) << " (verified)\n"
            << "repository:  " << repo->index.repository << " version " << repo->index.version << ", key "
            << repo->key_id << "\n"
            << "stages:      " << names(m.stages) << "\n"
            << "controllers: " << names(m.controllers) << "\n";
  // Parameters and counters come from the module's own description: load it (every check
  // again, then the loader's) and render its kinds as docs/stages.md renders built-ins.
  tmc::ModuleSet set;
  const tmc::ModuleRepository where{o.repo, o.trust, state_file(o).string()};
  if (tmc::Status s = tmc::load_from_repository(set, where, {o.name}); !s) return fail("info", s);
  const tmc::LoadedModule* loaded = set.find(o.name);
  std::cout << "provenance:  " << loaded->provenance() << "\n";
  tmc::Registry kinds;
  for (const tmc::StageInfo& info : loaded->stages()) {
    if (tmc::Status s = kinds.add(info); !s) return fail("info", s);
  }
  if (!loaded->stages().empty()) {
    const std::string md = tmc::stages_markdown(kinds);
    const auto first = md.find("\n## ");
    std::cout << (first == std::string::npos ? md : md.substr(first));
  }
  return 0;
}

}  // namespace

CLI::App* add_modules_command(CLI::App& app, ModulesOptions& o) {
  auto* modules = app.add_subcommand("modules", "Operate a signed module repository (keygen, sign, verify, list, info)");
  modules->require_subcommand(1);
  const std::string state_help = "rollback state file (default: " + mod::default_state_file().string() + ")";

  o.keygen = modules->add_subcommand("keygen", "Create an Ed25519 signing key; print its id and public key");
  o.keygen->add_option("--out", o.key, "secret key file to create (mode 0600, never overwritten)")->required();
  o.keygen->add_option("--trust", o.add_trust, "also add the public key to this trust file (created if missing)");

  o.sign = modules->add_subcommand("sign", "Digest every listed file, set version and expiry, sign index.yaml");
  o.sign->add_option("repo", o.repo, "repository directory holding index.yaml")->required();
  o.sign->add_option("--key", o.key, "secret key file (from keygen)")->required();
  o.sign->add_option("--version", o.version, "the new version (default: the current version + 1)")
      ->check(CLI::PositiveNumber);
  o.sign->add_option("--expires", o.expires, "validity from now: 30d, 12h, 90m, 3600s (default 30d)");

  o.verify = modules->add_subcommand("verify", "Run every check on a repository and each module; print each step");
  o.list = modules->add_subcommand("list", "List the modules of a verified repository");
  for (CLI::App* sub : {o.verify, o.list}) {
    sub->add_option("repo", o.repo, "repository directory")->required();
    sub->add_option("--trust", o.trust, "trust file listing the keys allowed to sign")->required();
    sub->add_option("--state", o.state, state_help);
  }
  o.info = modules->add_subcommand("info", "Describe one module of a verified repository");
  o.info->add_option("name", o.name, "module name")->required();
  o.info->add_option("--repo", o.repo, "repository directory")->required();
  o.info->add_option("--trust", o.trust, "trust file listing the keys allowed to sign")->required();
  o.info->add_option("--state", o.state, state_help);
  return modules;
}

void add_plan_repository_options(CLI::App* plan, PlanRepositoryOptions& o) {
  auto* repo = plan->add_option("--repo", o.repo, "load the manifest's 'modules:' from this signed module repository");
  auto* trust = plan->add_option("--trust", o.trust, "with --repo: the trust file listing the keys allowed to sign");
  repo->needs(trust);
  trust->needs(repo);
  plan->add_option("--state", o.state, "with --repo: rollback state file (default under the user's state directory)");
}

bool load_plan_modules(const std::string& manifest_path, const PlanRepositoryOptions& o, tmc::ModuleSet& set) {
  if (o.repo.empty()) return true;
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(manifest_path, m, diag) || m.modules.empty()) return true;
  if (tmc::Status s = tmc::load_from_repository(set, {o.repo, o.trust, o.state}, m.modules); !s) {
    std::cerr << s.to_string() << "\n";
    return false;
  }
  return true;
}

int run_modules(const ModulesOptions& o) {
  if (o.keygen->parsed()) return keygen(o);
  if (o.sign->parsed()) return sign(o);
  if (o.verify->parsed()) return verify(o);
  if (o.list->parsed()) return list(o);
  if (o.info->parsed()) return info(o);
  return 2;
}

}  // namespace tmc_tool
