#include "runtime/modules/repository.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "runtime/modules/state.hpp"

namespace tmc::modules {
namespace {

namespace fs = std::filesystem;

std::string trusted_ids(const std::vector<TrustedKey>& keys) {
  std::string out;
  for (const TrustedKey& k : keys) out += (out.empty() ? "" : ", ") + k.id;
  return out;
}

void note(std::vector<std::string>* passed, std::string line) {
  if (passed != nullptr) passed->push_back(std::move(line));
}

Status write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Code::IO_ERROR, std::strerror(errno));
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return Status::ok();
}

}  // namespace

Result<VerifiedIndex> open_repository(const fs::path& dir, const fs::path& trust_file, const fs::path& state_file,
                                      std::chrono::sys_seconds now, std::vector<std::string>* passed) {
  const fs::path index_path = dir / kIndexFile;
  const fs::path sig_path = dir / kSignatureFile;
  if (state_file.empty()) {
    return refusal("rollback", index_path.string(), 0, "",
                   "no state file given: rollback protection needs one to remember accepted versions");
  }

  // read: the index and its detached signature.
  auto index_text = read_file(index_path);
  if (!index_text) {
    return refusal("read", index_path.string(), 0, "", "cannot read the repository index: " + index_text.status().message());
  }
  std::error_code ec;
  if (!fs::exists(sig_path, ec)) {
    return refusal("signature", sig_path.string(), 0, "",
                   "the index is unsigned: there is no index.yaml.sig next to index.yaml (sign it with `tmc modules sign`)");
  }
  auto sig_text = read_file(sig_path, 4096);
  if (!sig_text) {
    return refusal("read", sig_path.string(), 0, "", "cannot read the index signature: " + sig_text.status().message());
  }
  auto sig = parse_signature_file(sig_text.value(), sig_path.string());
  if (!sig) return sig.status();
  note(passed, "read: " + index_path.string() + " and " + sig_path.string());

  // trust: the signing key is one the operator listed.
  auto trusted = load_trust_file(trust_file);
  if (!trusted) return trusted.status();
  const TrustedKey* key = nullptr;
  for (const TrustedKey& k : trusted.value()) {
    if (k.id == sig->key_id) key = &k;
  }
  if (key == nullptr) {
    return refusal("trust", sig_path.string(), 0, "",
                   "the index is signed by key '" + sig->key_id + "', which the trust file " + trust_file.string() +
                       " does not list (it trusts: " + trusted_ids(trusted.value()) + ")");
  }
  note(passed, "trust: signing key " + key->id + " is listed in " + trust_file.string());

  // signature: over the exact bytes of index.yaml.
  if (!verify_detached(index_text.value(), sig->signature, key->key)) {
    return refusal("signature", sig_path.string(), 0, "",
                   "bad signature: the signature by key '" + key->id +
                       "' does not verify over index.yaml (the index or its signature was altered after signing)");
  }
  note(passed, "signature: Ed25519 signature by " + key->id + " verified over index.yaml");

  // index: parsed only now that it is authenticated.
  auto index = parse_index(index_text.value(), index_path.string());
  if (!index) return index.status();
  note(passed, "index: repository '" + index->repository + "' version " + std::to_string(index->version) + ", " +
                   std::to_string(index->modules.size()) + " module(s)");

  // expiry
  if (now >= *index->expires) {
    return refusal("expiry", index_path.string(), 0, "",
                   "the index expired at " + format_utc(*index->expires) + " (now is " + format_utc(now) +
                       "); the repository's operator must re-sign it");
  }
  note(passed, "expiry: valid until " + format_utc(*index->expires));

  // rollback: never accept an older version than one accepted before.
  VerifiedIndex out;
  out.dir = dir;
  out.key_id = key->id;
  out.index_sha256 = sha256(index_text.value());
  std::int64_t previous = 0;
  Status recorded = update_state(state_file, [&](RepositoryState& state) -> Status {
    auto it = state.find(index->repository);
    if (it != state.end()) {
      previous = it->second.version;
      if (index->version < previous) {
        return refusal("rollback", index_path.string(), 0, "",
                       "repository '" + index->repository + "' is at version " + std::to_string(index->version) +
                           ", older than version " + std::to_string(previous) + " accepted before (recorded in " +
                           state_file.string() + "): a stale or replayed index");
      }
      if (index->version == previous && it->second.index_sha256 != out.index_sha256) {
        return refusal("rollback", index_path.string(), 0, "",
                       "repository '" + index->repository + "' version " + std::to_string(index->version) +
                           " differs from the version " + std::to_string(previous) +
                           " accepted before (recorded in " + state_file.string() +
                           "): a signer must bump the version for every change");
      }
    }
    state[index->repository] = AcceptedVersion{index->version, out.index_sha256};
    return Status::ok();
  });
  if (!recorded) return recorded;
  note(passed, "rollback: version " + std::to_string(index->version) +
                   (previous == 0 ? " is the first accepted" : " is not below " + std::to_string(previous)) +
                   " (" + state_file.string() + ")");
  out.index = std::move(index).value();
  return out;
}

VerifiedObject::VerifiedObject(const ModuleEntry& entry, fs::path source, int sealed_fd)
    : entry_(entry), source_(std::move(source)), fd_(sealed_fd) {}
VerifiedObject::VerifiedObject(VerifiedObject&& other) noexcept
    : entry_(std::move(other.entry_)), source_(std::move(other.source_)), fd_(std::exchange(other.fd_, -1)) {}
VerifiedObject& VerifiedObject::operator=(VerifiedObject&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    entry_ = std::move(other.entry_);
    source_ = std::move(other.source_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}
VerifiedObject::~VerifiedObject() {
  if (fd_ >= 0) ::close(fd_);
}
std::string VerifiedObject::load_path() const { return "/proc/self/fd/" + std::to_string(fd_); }

Result<VerifiedObject> verify_object(const VerifiedIndex& repo, std::string_view name) {
  const ModuleEntry* entry = repo.index.find(name);
  if (entry == nullptr) {
    std::string known;
    for (const ModuleEntry& m : repo.index.modules) known += (known.empty() ? "" : ", ") + m.name;
    return refusal("index", (repo.dir / kIndexFile).string(), 0, name,
                   "the repository does not list it (it lists: " + (known.empty() ? std::string("nothing") : known) + ")");
  }
  return verify_object(repo, *entry);
}

Result<VerifiedObject> verify_object(const VerifiedIndex& repo, const ModuleEntry& entry) {
  const fs::path path = repo.dir / entry.file;
  const std::string file = path.string();
  if (!entry.sha256) return refusal("digest", file, 0, entry.name, "the index gives no sha256 for it");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return refusal("file", file, 0, entry.name,
                   fs::exists(path, ec) ? "not a regular file" : "the file the index lists is missing");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return refusal("file", file, 0, entry.name, std::string("cannot open: ") + std::strerror(errno));

  // Copy into a sealed memfd while hashing, so the bytes hashed are the bytes loaded.
  const int fd = ::memfd_create(("tmc-module-" + entry.name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return refusal("file", file, 0, entry.name, std::string("memfd_create failed: ") + std::strerror(errno));
  auto fail = [&](std::string_view step, std::string reason) {
    ::close(fd);
    return refusal(step, file, 0, entry.name, reason);
  };
  init_crypto();
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::array<char, 1 << 16> buf;
  while (in) {
    in.read(buf.data(), buf.size());
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(buf.data()), n);
    if (Status s = write_all(fd, buf.data(), n); !s) return fail("file", "cannot copy for loading: " + s.message());
  }
  if (in.bad()) return fail("file", "read error");
  Sha256 got{};
  crypto_hash_sha256_final(&st, got.data());
  if (got != *entry.sha256) {
    return fail("digest", "digest mismatch: the file's SHA-256 is " + to_hex(got) + ", the signed index says " +
                              to_hex(*entry.sha256) + " (the file was altered or replaced)");
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return fail("file", std::string("cannot seal the verified copy: ") + std::strerror(errno));
  }
  return VerifiedObject(entry, path, fd);
}

Result<std::vector<VerifiedObject>> verify_modules(const fs::path& dir, const fs::path& trust_file,
                                                   const fs::path& state_file, const std::vector<std::string>& names,
                                                   std::chrono::sys_seconds now) {
  auto repo = open_repository(dir, trust_file, state_file, now);
  if (!repo) return repo.status();
  std::vector<VerifiedObject> out;
  out.reserve(names.size());
  for (const std::string& name : names) {
    auto obj = verify_object(repo.value(), name);
    if (!obj) return obj.status();
    out.push_back(std::move(obj).value());
  }
  return out;
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.size() < 2) return std::nullopt;
  std::int64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9' || n > 1'000'000'000) return std::nullopt;
    n = n * 10 + (c - '0');
  }
  if (n == 0) return std::nullopt;
  switch (text.back()) {
    case 'd': return std::chrono::seconds(n * 86400);
    case 'h': return std::chrono::seconds(n * 3600);
    case 'm': return std::chrono::seconds(n * 60);
    case 's': return std::chrono::seconds(n);
    default: return std::nullopt;
  }
}

Result<Index> sign_repository(const fs::path& dir, const KeyPair& key, const SignOptions& options) {
  const fs::path index_path = dir / kIndexFile;
  auto text = read_file(index_path);
  if (!text) return refusal("read", index_path.string(), 0, "", "cannot read the index to sign: " + text.status().message());
  auto parsed = parse_index(text.value(), index_path.string(), IndexMode::draft);
  if (!parsed) return parsed.status();
  Index index = std::move(parsed).value();
  for (ModuleEntry& m : index.modules) {
    const fs::path path = dir / m.file;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return refusal("file", path.string(), 0, m.name, "the file the index lists is missing");
    }
    auto digest = sha256_file(path);
    if (!digest) return refusal("digest", path.string(), 0, m.name, digest.status().message());
    m.sha256 = digest.value();
  }
  if (options.version) {
    if (*options.version < 1 || *options.version <= index.version) {
      return Status(Code::INVALID_ARGUMENT, index_path.string() + ": version " + std::to_string(*options.version) +
                                                " must be above the index's current version " +
                                                std::to_string(index.version) + " (clients refuse anything lower)");
    }
    index.version = *options.version;
  } else {
    index.version += 1;
  }
  index.expires = options.now + options.valid_for;
  const std::string rendered = render_index(index);
  const DetachedSignature sig{key.id(), sign_detached(rendered, key.secret_key)};
  if (Status s = write_file_atomically(index_path, rendered); !s) return s;
  if (Status s = write_file_atomically(dir / kSignatureFile, render_signature_file(sig)); !s) return s;
  return index;
}

}  // namespace tmc::modules
