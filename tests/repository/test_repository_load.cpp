// Loading modules through the verified repository: a module loads only from a repository
// that passed every check, only when its bytes match the signed digest, and only when the
// loaded object is what the signed index says it is.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/modules/repository.hpp"
#include "tmc/channel.hpp"
#include "tmc/module_repository.hpp"
#include "tmc/modules.hpp"

namespace fs = std::filesystem;
namespace mod = tmc::modules;
using namespace std::chrono_literals;

namespace {

const std::chrono::sys_seconds kT0 = *mod::parse_utc("2026-03-01T00:00:00Z");

std::string entry(std::string_view version, std::string_view stages) {
  return "  - name: tally\n    version: \"" + std::string(version) + "\"\n    abi: 1\n    file: tally.so\n    stages: " +
         std::string(stages) + "\n    controllers: [fixed]\n";
}

// A repository holding the tally test module, signed at kT0 for 7 days.
struct TallyRepo {
  fs::path root;
  tmc::ModuleRepository repo;
  mod::KeyPair key = mod::generate_keypair();

  explicit TallyRepo(const std::string& index_entry = entry("1.0.0", "[tally.count]")) {
    std::string tmpl = (fs::temp_directory_path() / "tmc-repo-load.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    root = tmpl;
    repo.dir = (root / "repo").string();
    repo.trust_file = (root / "trust.yaml").string();
    repo.state_file = (root / "state.yaml").string();
    fs::create_directories(repo.dir);
    fs::copy_file(TMC_TALLY_MODULE, fs::path(repo.dir) / "tally.so");
    std::ofstream(fs::path(repo.dir) / "index.yaml") << "format: 1\nrepository: \"load\"\nmodules:\n" << index_entry;
    std::ofstream(repo.trust_file) << mod::render_trust_file({{key.id(), key.public_key}});
    mod::SignOptions o;
    o.now = kT0;
    o.valid_for = 7 * 24h;
    auto signed_index = mod::sign_repository(repo.dir, key, o);
    REQUIRE_MESSAGE(signed_index.ok(), signed_index.status().to_string());
  }
  ~TallyRepo() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  TallyRepo(const TallyRepo&) = delete;
  TallyRepo& operator=(const TallyRepo&) = delete;
};

void check_refused(const tmc::Status& s, std::initializer_list<std::string> fragments) {
  REQUIRE_FALSE(s.is_ok());
  CHECK(s.code() == tmc::Code::MODULE_ERROR);
  for (const std::string& f : fragments) CHECK_MESSAGE(s.message().find(f) != std::string::npos, s.message());
}

}  // namespace

TEST_CASE("a module from a verified repository loads and its kinds join the registry") {
  TallyRepo t;
  tmc::ModuleSet set;
  const tmc::Status s = tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 1h);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  const tmc::LoadedModule* m = set.find("tally");
  REQUIRE(m != nullptr);
  const std::string digest = mod::to_hex(mod::sha256_file(fs::path(t.repo.dir) / "tally.so").value());
  CHECK(m->sha256() == digest);
  CHECK(m->provenance().find(digest) != std::string::npos);
  const tmc::StageInfo* info = set.registry().find("tally.count");
  REQUIRE(info != nullptr);
  CHECK(std::string(info->provenance).find("module tally 1.0.0") != std::string::npos);
  CHECK(set.make_controller("fixed", tmc::CongestionLimits{}) != nullptr);
}

TEST_CASE("a module whose object was altered is refused before it is loaded") {
  TallyRepo t;
  const fs::path so = fs::path(t.repo.dir) / "tally.so";
  std::string bytes;
  {
    std::ifstream in(so, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes[bytes.size() / 3] = static_cast<char>(bytes[bytes.size() / 3] ^ 0x40);
  std::ofstream(so, std::ios::binary | std::ios::trunc) << bytes;
  tmc::ModuleSet set;
  check_refused(tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 1h),
                {so.string() + ": refused at step 'digest' for module 'tally': digest mismatch"});
  CHECK(set.modules().empty());
  CHECK(set.registry().find("tally.count") == nullptr);
}

TEST_CASE("a module is refused when the object is not what the signed index says") {
  SUBCASE("other stage kinds") {
    TallyRepo t(entry("1.0.0", "[tally.other]"));
    tmc::ModuleSet set;
    check_refused(tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 1h),
                  {"tally.so: refused at step 'index' for module 'tally': the loaded object provides stage kinds "
                   "[tally.count], the index lists [tally.other]"});
    CHECK(set.modules().empty());
  }
  SUBCASE("another version") {
    TallyRepo t(entry("2.0.0", "[tally.count]"));
    tmc::ModuleSet set;
    check_refused(tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 1h),
                  {"refused at step 'index' for module 'tally': the loaded object has version 1.0.0, the index says 2.0.0"});
  }
}

TEST_CASE("nothing loads from a repository that fails a check") {
  TallyRepo t;
  tmc::ModuleSet set;
  check_refused(tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 8 * 24h), {"refused at step 'expiry'"});
  const mod::KeyPair other = mod::generate_keypair();
  std::ofstream(t.repo.trust_file, std::ios::trunc) << mod::render_trust_file({{other.id(), other.public_key}});
  check_refused(tmc::load_from_repository(set, t.repo, {"tally"}, kT0 + 1h), {"refused at step 'trust'"});
  CHECK(set.modules().empty());
}

TEST_CASE("the tally module loads from the test repository signed during the build") {
  TallyRepo scratch;  // only for a private state file
  tmc::ModuleRepository repo;
  repo.dir = TMC_TEST_REPO_DIR;
  repo.trust_file = std::string(TMC_TEST_REPO_DIR) + "-key/trust.yaml";
  repo.state_file = (scratch.root / "build-repo-state.yaml").string();
  tmc::ModuleSet set;
  const tmc::Status s = tmc::load_from_repository(set, repo, {"tally"});
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  CHECK(set.registry().find("tally.count") != nullptr);
}

TEST_CASE("a channel loads the manifest's modules from the repository in OpenOptions") {
  TallyRepo scratch;
  tmc::OpenOptions opts;
  opts.module_repository.dir = TMC_TEST_REPO_DIR;
  opts.module_repository.trust_file = std::string(TMC_TEST_REPO_DIR) + "-key/trust.yaml";
  opts.module_repository.state_file = (scratch.root / "channel-state.yaml").string();
  tmc::Manifest m;
  tmc::Diagnostics diag;
  REQUIRE_MESSAGE(tmc::parse_manifest("id: repo-channel\nmodules: [tally]\nstages: {tally.count: {}}\n", "m.yaml", m, diag),
                  diag.to_string());
  tmc::Channel ch;
  const tmc::Status s = tmc::Channel::try_open(m, opts, ch);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  bool found = false;
  for (const auto& stage : ch.plan().stages) found = found || stage.kind == "tally.count";
  CHECK(found);
  ch.close();

  // A repository that fails a check fails the open, naming the step.
  opts.module_repository.trust_file = (scratch.root / "trust.yaml").string();  // another key
  tmc::Channel refused;
  const tmc::Status r = tmc::Channel::try_open(m, opts, refused);
  CHECK(r.code() == tmc::Code::MODULE_ERROR);
  CHECK_MESSAGE(r.message().find("channel 'repo-channel': ") == 0, r.message());
  CHECK_MESSAGE(r.message().find("refused at step 'trust'") != std::string::npos, r.message());
}

TEST_CASE("the project's modules load from the test repository into one channel") {
  TallyRepo scratch;
  tmc::OpenOptions opts;
  opts.module_repository.dir = TMC_TEST_REPO_DIR;
  opts.module_repository.trust_file = std::string(TMC_TEST_REPO_DIR) + "-key/trust.yaml";
  opts.module_repository.state_file = (scratch.root / "modules-state.yaml").string();
  tmc::Manifest m;
  tmc::Diagnostics diag;
  REQUIRE_MESSAGE(tmc::parse_manifest("id: repo-all-modules\n"
                                      "reliability: true\n"
                                      "point-to-point ordering: strict\n"
                                      "congestion control: ledbat\n"
                                      "modules: [fec, causal, ledbat]\n"
                                      "stages:\n"
                                      "  fec.xor: {k: 4}\n"
                                      "  ordering.causal: {}\n",
                                      "m.yaml", m, diag),
                  diag.to_string());
  tmc::Channel ch;
  const tmc::Status s = tmc::Channel::try_open(m, opts, ch);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  // Each requested stage is in the plan, and its reason names the signed module it came
  // from; congestion.window runs the module's controller.
  for (const char* kind : {"fec.xor", "ordering.causal"}) {
    CAPTURE(kind);
    const tmc::PlannedStage* found = nullptr;
    for (const auto& st : ch.plan().stages) {
      if (st.kind == kind) found = &st;
    }
    REQUIRE(found != nullptr);
    CHECK_MESSAGE(found->reason.find("sha256") != std::string::npos, found->reason);
  }
  bool ledbat = false;
  for (const auto& st : ch.plan().stages) {
    if (st.kind == "congestion.window") ledbat = st.params.count("algorithm") == 1 && st.params.at("algorithm") == "ledbat";
  }
  CHECK(ledbat);
  ch.close();
}
