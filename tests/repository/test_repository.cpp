// The verified module repository: a good repository is accepted, and every refusal
// (unsigned, bad signature, tampered index, untrusted key, expired, rolled back, malformed
// index, missing file, digest mismatch) names its step, its file and its module.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>
#include <doctest/doctest.h>
#include <sodium.h>
#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/modules/repository.hpp"
#include "runtime/modules/state.hpp"

namespace fs = std::filesystem;
namespace mod = tmc::modules;
using namespace std::chrono_literals;

namespace {

const std::chrono::sys_seconds kT0 = *mod::parse_utc("2026-01-01T00:00:00Z");

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

void replace_once(const fs::path& p, std::string_view from, std::string_view to) {
  std::string s = slurp(p);
  const auto at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "'" << from << "' not in " << p);
  s.replace(at, from.size(), to);
  spit(p, s);
}

constexpr std::string_view kDraft =
    "format: 1\n"
    "repository: \"unit\"\n"
    "modules:\n"
    "  - name: fixture\n"
    "    version: \"1.0.0\"\n"
    "    abi: 1\n"
    "    file: lib/fixture.so\n"
    "    stages: [fixture.noop]\n";

// A repository in a fresh temporary directory, signed at kT0 for 30 days by `key`, with a
// trust file listing `key` and an empty rollback state.
struct Repo {
  fs::path root;
  fs::path dir, trust, state;
  mod::KeyPair key = mod::generate_keypair();

  Repo() {
    std::string tmpl = (fs::temp_directory_path() / "tmc-repo-test.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    root = tmpl;
    dir = root / "repo";
    trust = root / "trust.yaml";
    state = root / "state" / "accepted.yaml";
    fs::create_directories(dir / "lib");
    fs::copy_file(TMC_FIXTURE_MODULE, dir / "lib" / "fixture.so");
    spit(dir / "index.yaml", kDraft);
    spit(trust, mod::render_trust_file({{key.id(), key.public_key}}));
    sign();
  }
  ~Repo() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  Repo(const Repo&) = delete;
  Repo& operator=(const Repo&) = delete;

  mod::Index sign(std::optional<std::int64_t> version = std::nullopt, const mod::KeyPair* by = nullptr) {
    mod::SignOptions o;
    o.now = kT0;
    o.valid_for = 30 * 24h;
    o.version = version;
    auto r = mod::sign_repository(dir, by != nullptr ? *by : key, o);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return r.value();
  }
  mod::Result<mod::VerifiedIndex> open(std::chrono::sys_seconds now = kT0 + 24h) const {
    return mod::open_repository(dir, trust, state, now);
  }
  // Sign index text as given (even malformed), by this repository's key.
  void sign_text(std::string_view text) const {
    spit(dir / "index.yaml", text);
    const mod::DetachedSignature sig{key.id(), mod::sign_detached(text, key.secret_key)};
    spit(dir / "index.yaml.sig", mod::render_signature_file(sig));
  }
};

// The refusal's text: MODULE_ERROR and every fragment present.
void check_refused(const tmc::Status& s, std::initializer_list<std::string> fragments) {
  CHECK(s.code() == tmc::Code::MODULE_ERROR);
  for (const std::string& f : fragments) CHECK_MESSAGE(s.message().find(f) != std::string::npos, s.message());
}

template <class T>
tmc::Status refusal_of(const mod::Result<T>& r) {
  REQUIRE_MESSAGE(!r.ok(), "accepted, but a refusal was expected");
  return r.status();
}

}  // namespace

TEST_CASE("a signed repository with a trusted key is accepted and its object verifies") {
  Repo r;
  std::vector<std::string> passed;
  auto idx = mod::open_repository(r.dir, r.trust, r.state, kT0 + 1h, &passed);
  REQUIRE_MESSAGE(idx.ok(), idx.status().to_string());
  CHECK(idx->key_id == r.key.id());
  CHECK(idx->index.repository == "unit");
  CHECK(idx->index.version == 1);
  REQUIRE(idx->index.modules.size() == 1);
  CHECK(idx->index.modules[0].stages == std::vector<std::string>{"fixture.noop"});
  REQUIRE(passed.size() == 6);
  CHECK(passed[0].rfind("read:", 0) == 0);
  CHECK(passed[5].rfind("rollback:", 0) == 0);

  auto obj = mod::verify_object(idx.value(), "fixture");
  REQUIRE_MESSAGE(obj.ok(), obj.status().to_string());
  CHECK(obj->sha256() == mod::sha256_file(r.dir / "lib" / "fixture.so").value());
  CHECK(obj->source() == r.dir / "lib" / "fixture.so");
  // The sealed copy is what a loader maps: it holds exactly the verified bytes and loads.
  CHECK(slurp(obj->load_path()) == slurp(r.dir / "lib" / "fixture.so"));
  void* handle = dlopen(obj->load_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE_MESSAGE(handle != nullptr, dlerror());
  auto* answer = reinterpret_cast<int (*)()>(dlsym(handle, "tmc_repository_fixture_answer"));
  REQUIRE(reinterpret_cast<void*>(answer) != nullptr);
  CHECK(answer() == 42);
  dlclose(handle);
}

TEST_CASE("the verified copy does not change when the file on disk does") {
  Repo r;
  auto idx = r.open();
  REQUIRE(idx.ok());
  auto obj = mod::verify_object(idx.value(), "fixture");
  REQUIRE(obj.ok());
  const std::string verified = slurp(obj->load_path());
  spit(r.dir / "lib" / "fixture.so", "replaced after verification");
  CHECK(slurp(obj->load_path()) == verified);
  // Sealed: even this process cannot write to it.
  const int fd = ::open(obj->load_path().c_str(), O_WRONLY | O_APPEND);
  REQUIRE(fd >= 0);
  CHECK(::write(fd, "x", 1) == -1);
  CHECK(errno == EPERM);
  ::close(fd);
  CHECK(slurp(obj->load_path()) == verified);
}

TEST_CASE("an unsigned index is refused at the signature step") {
  Repo r;
  fs::remove(r.dir / "index.yaml.sig");
  check_refused(refusal_of(r.open()), {(r.dir / "index.yaml.sig").string() + ": refused at step 'signature': ",
                                       "the index is unsigned"});
}

TEST_CASE("a missing index is refused at the read step") {
  Repo r;
  fs::remove(r.dir / "index.yaml");
  check_refused(refusal_of(r.open()), {(r.dir / "index.yaml").string() + ": refused at step 'read': ",
                                       "cannot read the repository index"});
}

TEST_CASE("a bad signature is refused") {
  Repo r;
  std::string sig = slurp(r.dir / "index.yaml.sig");
  const auto at = sig.find("ed25519: \"") + 10;
  sig[at] = sig[at] == '0' ? '1' : '0';
  spit(r.dir / "index.yaml.sig", sig);
  check_refused(refusal_of(r.open()), {(r.dir / "index.yaml.sig").string() + ": refused at step 'signature': ",
                                       "bad signature: the signature by key '" + r.key.id() + "'"});
}

TEST_CASE("a tampered index is refused at the signature step") {
  Repo r;
  replace_once(r.dir / "index.yaml", "version: 1\n", "version: 9\n");
  check_refused(refusal_of(r.open()), {"refused at step 'signature'", "does not verify over index.yaml"});
  // So is a digest swapped for that of another file: the index is signed as a whole.
  Repo r2;
  const std::string other = mod::to_hex(mod::sha256("another object"));
  const std::string mine = mod::to_hex(mod::sha256_file(r2.dir / "lib" / "fixture.so").value());
  replace_once(r2.dir / "index.yaml", mine, other);
  check_refused(refusal_of(r2.open()), {"refused at step 'signature'"});
}

TEST_CASE("an index signed by a key the trust file does not list is refused") {
  Repo r;
  const mod::KeyPair stranger = mod::generate_keypair();
  r.sign(std::nullopt, &stranger);
  check_refused(refusal_of(r.open()),
                {(r.dir / "index.yaml.sig").string() + ": refused at step 'trust': ",
                 "signed by key '" + stranger.id() + "', which the trust file " + r.trust.string() + " does not list",
                 "(it trusts: " + r.key.id() + ")"});
}

TEST_CASE("a signature file that names a trusted key but was made by another is a bad signature") {
  Repo r;
  const mod::KeyPair stranger = mod::generate_keypair();
  const std::string text = slurp(r.dir / "index.yaml");
  spit(r.dir / "index.yaml.sig",
       mod::render_signature_file({r.key.id(), mod::sign_detached(text, stranger.secret_key)}));
  check_refused(refusal_of(r.open()), {"refused at step 'signature'", "bad signature"});
}

TEST_CASE("signing-key rotation: a trust file listing both keys accepts either") {
  Repo r;
  const mod::KeyPair next = mod::generate_keypair();
  spit(r.trust, mod::render_trust_file({{r.key.id(), r.key.public_key}, {next.id(), next.public_key}}));
  REQUIRE(r.open().ok());
  r.sign(std::nullopt, &next);
  auto idx = r.open();
  REQUIRE_MESSAGE(idx.ok(), idx.status().to_string());
  CHECK(idx->key_id == next.id());
  CHECK(idx->index.version == 2);
  // Once the old key is dropped, an index it signs is refused.
  spit(r.trust, mod::render_trust_file({{next.id(), next.public_key}}));
  r.sign();
  check_refused(refusal_of(r.open()), {"refused at step 'trust'", r.key.id()});
}

TEST_CASE("an expired index is refused, with `now` injected") {
  Repo r;
  const auto expires = kT0 + 30 * 24h;
  CHECK(r.open(expires - 1s).ok());
  check_refused(refusal_of(r.open(expires)), {(r.dir / "index.yaml").string() + ": refused at step 'expiry': ",
                                              "the index expired at 2026-01-31T00:00:00Z (now is 2026-01-31T00:00:00Z)"});
  check_refused(refusal_of(r.open(expires + 24h)), {"expired at 2026-01-31T00:00:00Z (now is 2026-02-01T00:00:00Z)"});
}

TEST_CASE("rollback: the accepted version persists across opens and an older index is refused") {
  Repo r;
  const std::string v1_index = slurp(r.dir / "index.yaml");
  const std::string v1_sig = slurp(r.dir / "index.yaml.sig");
  REQUIRE(r.open().ok());
  r.sign();  // version 2
  REQUIRE(r.open().ok());
  auto state = mod::load_state(r.state);
  REQUIRE(state.ok());
  REQUIRE(state->count("unit") == 1);
  CHECK(state->at("unit").version == 2);

  // An attacker replays the old, validly signed, unexpired index.
  spit(r.dir / "index.yaml", v1_index);
  spit(r.dir / "index.yaml.sig", v1_sig);
  check_refused(refusal_of(r.open()), {(r.dir / "index.yaml").string() + ": refused at step 'rollback': ",
                                       "repository 'unit' is at version 1, older than version 2 accepted before",
                                       r.state.string()});
  // The refusal left the state alone.
  CHECK(mod::load_state(r.state)->at("unit").version == 2);
}

TEST_CASE("rollback: the same version with different contents is refused, the same bytes accepted") {
  Repo r;
  REQUIRE(r.open().ok());
  REQUIRE(r.open().ok());  // re-reading the accepted index is fine
  std::string text = slurp(r.dir / "index.yaml");
  const auto at = text.find("version: \"1.0.0\"");
  REQUIRE(at != std::string::npos);
  text.replace(at, 16, "version: \"1.0.1\"");
  r.sign_text(text);  // validly signed, still version 1
  check_refused(refusal_of(r.open()), {"refused at step 'rollback'",
                                       "repository 'unit' version 1 differs from the version 1 accepted before"});
}

TEST_CASE("each repository id keeps its own rollback state") {
  Repo a;
  Repo b;
  b.state = a.state;
  replace_once(b.dir / "index.yaml", "repository: \"unit\"", "repository: \"other\"");
  b.sign(5);
  REQUIRE(a.open().ok());
  REQUIRE(b.open().ok());
  auto state = mod::load_state(a.state);
  REQUIRE(state.ok());
  CHECK(state->at("unit").version == 1);
  CHECK(state->at("other").version == 5);
}

TEST_CASE("the signer refuses a version that clients would refuse") {
  Repo r;
  mod::SignOptions o;
  o.now = kT0;
  o.version = 1;
  auto s = mod::sign_repository(r.dir, r.key, o);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == tmc::Code::INVALID_ARGUMENT);
  CHECK(s.status().message().find("version 1 must be above the index's current version 1") != std::string::npos);
  CHECK(r.sign(7).version == 7);
  CHECK(r.sign().version == 8);
}

TEST_CASE("a shared object whose bytes changed is refused at the digest step") {
  Repo r;
  auto idx = r.open();
  REQUIRE(idx.ok());
  const fs::path so = r.dir / "lib" / "fixture.so";
  std::string bytes = slurp(so);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  spit(so, bytes);
  check_refused(refusal_of(mod::verify_object(idx.value(), "fixture")),
                {so.string() + ": refused at step 'digest' for module 'fixture': digest mismatch: the file's SHA-256 is " +
                     mod::to_hex(mod::sha256(bytes)),
                 "the signed index says " + mod::to_hex(*idx->index.modules[0].sha256)});
}

TEST_CASE("a shared object the index lists but the repository lacks is refused at the file step") {
  Repo r;
  auto idx = r.open();
  REQUIRE(idx.ok());
  fs::remove(r.dir / "lib" / "fixture.so");
  check_refused(refusal_of(mod::verify_object(idx.value(), "fixture")),
                {(r.dir / "lib" / "fixture.so").string() +
                 ": refused at step 'file' for module 'fixture': the file the index lists is missing"});
  check_refused(refusal_of(mod::verify_object(idx.value(), "nonesuch")),
                {"refused at step 'index' for module 'nonesuch': the repository does not list it (it lists: fixture)"});
}

TEST_CASE("a signed but malformed index is refused naming the field and the line") {
  Repo r;
  const std::string index = (r.dir / "index.yaml").string();
  const std::string digest = mod::to_hex(mod::sha256_file(r.dir / "lib" / "fixture.so").value());
  const std::string head = "format: 1\nrepository: \"unit\"\nversion: 1\nexpires: \"2026-02-01T00:00:00Z\"\nmodules:\n";
  auto module = [&](std::string_view abi, std::string_view file, std::string_view extra = "") {
    return "  - name: fixture\n    version: \"1.0.0\"\n    abi: " + std::string(abi) + "\n    file: " +
           std::string(file) + "\n    sha256: \"" + digest + "\"\n" + std::string(extra);
  };
  struct Case {
    std::string text;
    std::string want;
  };
  const Case cases[] = {
      {head + module("one", "lib/fixture.so"),
       index + ":8: refused at step 'index' for module 'fixture': field 'abi' must be an integer, not string"},
      {head + module("1", "../fixture.so"),
       index + ":9: refused at step 'index' for module 'fixture': field 'file' must be a relative path inside the repository"},
      {head + module("1", "/etc/passwd"), ":9: refused at step 'index' for module 'fixture': field 'file'"},
      {head + module("1", "lib/fixture.so", "    stage: [typo]\n"),
       ":11: refused at step 'index' for module 'fixture': unknown field 'stage' (known: name, version, abi, file, sha256, "
       "stages, controllers)"},
      {head + "  - name: fixture\n    version: \"1.0.0\"\n    abi: 1\n    file: lib/fixture.so\n",
       ":6: refused at step 'index' for module 'fixture': missing field 'sha256'"},
      {head + module("1", "lib/fixture.so") + module("1", "lib/fixture.so"),
       ":11: refused at step 'index' for module 'fixture': the module is listed twice"},
      {head + module("1", "lib/fixture.so", "    stages: [fixture.noop]\n") +
           "  - name: other\n    version: \"1.0.0\"\n    abi: 1\n    file: lib/fixture.so\n    sha256: \"" + digest +
           "\"\n    stages: [fixture.noop]\n",
       ":12: refused at step 'index' for module 'other': 'fixture.noop' is already provided by module 'fixture'"},
      {"format: 2\nrepository: \"unit\"\nversion: 1\nexpires: \"2026-02-01T00:00:00Z\"\nmodules: []\n",
       ":1: refused at step 'index': index format 2 is not supported (this build reads format 1)"},
      {"format: 1\nrepository: \"unit\"\nexpires: \"2026-02-01T00:00:00Z\"\nmodules: []\n",
       ": refused at step 'index': missing field 'version'"},
      {"format: 1\nrepository: \"unit\"\nversion: 1\nexpires: \"tomorrow\"\nmodules: []\n",
       ":4: refused at step 'index': field 'expires' must be a UTC time like \"2027-01-06T09:00:00Z\", not 'tomorrow'"},
      {"format: 1\nrepository: \"unit\"\nversion: 1\nexpires: \"2026-02-01T00:00:00Z\"\nmodules: [\n",
       ": refused at step 'index': malformed YAML"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    r.sign_text(c.text);
    check_refused(refusal_of(r.open()), {c.want});
  }
}

TEST_CASE("trust files are checked: ids match their keys, keys have the right length") {
  Repo r;
  const std::string trust = r.trust.string();
  const std::string pk = mod::to_hex(r.key.public_key);
  spit(r.trust, "keys:\n  - id: \"0000000000000000\"\n    ed25519: \"" + pk + "\"\n");
  check_refused(refusal_of(r.open()), {trust + ":2: refused at step 'trust': key id '0000000000000000' does not match "
                                                "its key (its id is '" + r.key.id() + "')"});
  spit(r.trust, "keys:\n  - id: \"" + r.key.id() + "\"\n    ed25519: \"abcd\"\n");
  check_refused(refusal_of(r.open()), {trust + ":3: refused at step 'trust': 'ed25519' must be a 32-byte public key"});
  spit(r.trust, "keys: []\n");
  check_refused(refusal_of(r.open()), {trust + ":1: refused at step 'trust': the trust file lists no keys"});
  fs::remove(r.trust);
  check_refused(refusal_of(r.open()), {trust + ": refused at step 'trust': cannot read the trust file"});
  // base64 is accepted as well as hex.
  std::string b64(sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), r.key.public_key.data(), 32, sodium_base64_VARIANT_ORIGINAL);
  b64.resize(b64.find('\0'));
  spit(r.trust, "keys:\n  - id: \"" + r.key.id() + "\"\n    ed25519: \"" + b64 + "\"\n");
  auto idx = r.open();
  CHECK_MESSAGE(idx.ok(), idx.status().to_string());
}

TEST_CASE("secret key files round-trip, are private, and are never overwritten") {
  Repo r;
  const fs::path kf = r.root / "signing.key";
  REQUIRE(mod::write_secret_key_file(kf, r.key).is_ok());
  const fs::perms mode = fs::status(kf).permissions() & fs::perms::all;
  CHECK(mode == (fs::perms::owner_read | fs::perms::owner_write));
  auto back = mod::load_secret_key_file(kf);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(back->public_key == r.key.public_key);
  CHECK(back->secret_key == r.key.secret_key);
  const tmc::Status again = mod::write_secret_key_file(kf, mod::generate_keypair());
  CHECK_FALSE(again.is_ok());
  CHECK(again.message().find("never overwritten") != std::string::npos);
  CHECK(mod::load_secret_key_file(kf)->public_key == r.key.public_key);
}

TEST_CASE("index text round-trips and times and durations parse strictly") {
  Repo r;
  const std::string text = slurp(r.dir / "index.yaml");
  auto idx = mod::parse_index(text, "index.yaml");
  REQUIRE(idx.ok());
  CHECK(mod::render_index(idx.value()) == text);

  CHECK(mod::format_utc(*mod::parse_utc("2024-02-29T23:59:59Z")) == "2024-02-29T23:59:59Z");
  CHECK_FALSE(mod::parse_utc("2023-02-29T00:00:00Z"));
  CHECK_FALSE(mod::parse_utc("2026-01-01T00:00:00+01:00"));
  CHECK_FALSE(mod::parse_utc("2026-01-01 00:00:00Z"));
  CHECK(mod::parse_duration("30d") == std::chrono::seconds(30 * 86400));
  CHECK(mod::parse_duration("12h") == std::chrono::seconds(12 * 3600));
  CHECK(mod::parse_duration("90m") == std::chrono::seconds(90 * 60));
  CHECK(mod::parse_duration("3600s") == std::chrono::seconds(3600));
  CHECK_FALSE(mod::parse_duration("0d"));
  CHECK_FALSE(mod::parse_duration("d"));
  CHECK_FALSE(mod::parse_duration("3w"));
  CHECK_FALSE(mod::parse_duration("-1d"));
}

TEST_CASE("the test repository built with the tree verifies against its trust file") {
  const fs::path dir = TMC_TEST_REPO_DIR;
  Repo scratch;  // only for a private state file
  const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  auto idx = mod::open_repository(dir, fs::path(std::string(TMC_TEST_REPO_DIR) + "-key") / "trust.yaml",
                                  scratch.state, now);
  REQUIRE_MESSAGE(idx.ok(), idx.status().to_string());
  CHECK(idx->index.repository == "libtmc-test");
  for (const mod::ModuleEntry& m : idx->index.modules) {
    auto obj = mod::verify_object(idx.value(), m);
    CHECK_MESSAGE(obj.ok(), obj.status().to_string());
  }
}

TEST_CASE("the index finds the module that provides a kind") {
  Repo r;
  auto idx = r.open();
  REQUIRE(idx.ok());
  const mod::ModuleEntry* m = idx->index.provider_of("fixture.noop");
  REQUIRE(m != nullptr);
  CHECK(m->name == "fixture");
  CHECK(idx->index.provider_of("reliability.arq") == nullptr);
}

TEST_CASE("rollback protection cannot be skipped, and an oversized index is not read") {
  Repo r;
  check_refused(refusal_of(mod::open_repository(r.dir, r.trust, fs::path(), kT0)),
                {"refused at step 'rollback': no state file given"});
  spit(r.dir / "index.yaml", std::string(mod::kMaxMetadataBytes + 1, '#'));
  check_refused(refusal_of(r.open()), {"refused at step 'read'", "larger than 1048576 bytes"});
}

TEST_CASE("verify_modules hands the loader every named module, or the first refusal") {
  Repo r;
  auto all = mod::verify_modules(r.dir, r.trust, r.state, {"fixture"}, kT0 + 1h);
  REQUIRE_MESSAGE(all.ok(), all.status().to_string());
  REQUIRE(all->size() == 1);
  CHECK(all->front().entry().name == "fixture");
  CHECK(slurp(all->front().load_path()) == slurp(r.dir / "lib" / "fixture.so"));
  check_refused(refusal_of(mod::verify_modules(r.dir, r.trust, r.state, {"fixture", "fec"}, kT0 + 1h)),
                {"refused at step 'index' for module 'fec': the repository does not list it"});
  check_refused(refusal_of(mod::verify_modules(r.dir, r.trust, r.state, {"fixture"}, kT0 + 365 * 24h)),
                {"refused at step 'expiry'"});
}

TEST_CASE("an entry without a digest is never handed out") {
  Repo r;
  auto idx = r.open();
  REQUIRE(idx.ok());
  mod::ModuleEntry draft = idx->index.modules[0];
  draft.sha256.reset();
  check_refused(refusal_of(mod::verify_object(idx.value(), draft)),
                {"refused at step 'digest' for module 'fixture': the index gives no sha256 for it"});
}
