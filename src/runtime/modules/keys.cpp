#include "runtime/modules/keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>

#include "runtime/manifest/yaml_value.hpp"
#include "runtime/modules/fields.hpp"

namespace tmc::modules {
namespace {

using detail::field;
using detail::line_of;

void ensure_sodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  });
}

Status trust_error(const std::filesystem::path& file, int line, std::string_view reason) {
  return refusal("trust", file.string(), line, "", reason);
}

// Parse a YAML text into a Value; the first diagnostic becomes the refusal.
Result<Value> parse_yaml(std::string_view text, const std::string& file, std::string_view step) {
  Value v;
  Diagnostics diag;
  if (!tmc::detail::yaml_to_value(text, file, v, diag)) {
    const Diagnostic& d = diag.items().front();
    return refusal(step, file, d.where.line, "", "malformed YAML: " + d.message);
  }
  return v;
}

// A required string field; the error names the field and the line of its map.
Status want_string(const Value& map, std::string_view key, std::string_view step, const std::string& file,
                   std::string_view module, const Value*& out) {
  out = field(map, key);
  if (out == nullptr) {
    return refusal(step, file, line_of(map), module, "missing field '" + std::string(key) + "'");
  }
  if (!out->is_string()) {
    return refusal(step, file, line_of(*out, line_of(map)), module,
                   "field '" + std::string(key) + "' must be a string (quote it), not " +
                       std::string(out->type_name()));
  }
  return Status::ok();
}

}  // namespace

void init_crypto() { ensure_sodium(); }

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

bool from_hex(std::string_view hex, std::span<std::uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return true;
}

bool from_base64(std::string_view text, std::span<std::uint8_t> out) {
  ensure_sodium();
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return false;
  }
  return len == out.size() && end == text.data() + text.size();
}

Sha256 sha256(std::string_view bytes) {
  ensure_sodium();
  Sha256 out{};
  crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

Result<Sha256> sha256_file(const std::filesystem::path& path) {
  ensure_sodium();
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::IO_ERROR, path.string() + ": cannot open: " + std::strerror(errno));
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::array<char, 1 << 16> buf;
  while (in) {
    in.read(buf.data(), buf.size());
    const auto n = in.gcount();
    if (n > 0) crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(buf.data()), static_cast<unsigned long long>(n));
  }
  if (in.bad()) return Status(Code::IO_ERROR, path.string() + ": read error");
  Sha256 out{};
  crypto_hash_sha256_final(&st, out.data());
  return out;
}

std::string key_id(const PublicKey& pk) {
  const Sha256 h = sha256(std::string_view(reinterpret_cast<const char*>(pk.data()), pk.size()));
  return to_hex(std::span<const std::uint8_t>(h.data(), 8));
}

KeyPair generate_keypair() {
  ensure_sodium();
  static_assert(crypto_sign_PUBLICKEYBYTES == 32 && crypto_sign_SECRETKEYBYTES == 64 && crypto_sign_BYTES == 64);
  KeyPair kp;
  crypto_sign_keypair(kp.public_key.data(), kp.secret_key.data());
  return kp;
}

Signature sign_detached(std::string_view message, const SecretKey& sk) {
  ensure_sodium();
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       sk.data());
  return sig;
}

bool verify_detached(std::string_view message, const Signature& sig, const PublicKey& pk) {
  ensure_sodium();
  return crypto_sign_verify_detached(sig.data(), reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), pk.data()) == 0;
}

Result<std::string> read_file(const std::filesystem::path& path, std::uintmax_t max_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status(Code::IO_ERROR, path.string() + ": is a directory, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::IO_ERROR, path.string() + ": cannot open: " + std::strerror(errno));
  std::string out;
  std::array<char, 1 << 14> buf;
  while (in) {
    in.read(buf.data(), buf.size());
    out.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (out.size() > max_bytes) {
      return Status(Code::IO_ERROR, path.string() + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  if (in.bad()) return Status(Code::IO_ERROR, path.string() + ": read error");
  return out;
}

Status write_file_atomically(const std::filesystem::path& path, std::string_view contents, unsigned mode) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string tmpl = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return Status(Code::IO_ERROR, path.string() + ": cannot create a temporary file: " + std::strerror(errno));
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return Status(Code::IO_ERROR, path.string() + ": " + what + ": " + std::strerror(err));
  };
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return fail("cannot set the mode");
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync failed");
  if (::close(fd) != 0) {
    ::unlink(tmpl.c_str());
    return Status(Code::IO_ERROR, path.string() + ": close failed: " + std::strerror(errno));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmpl.c_str());
    return Status(Code::IO_ERROR, path.string() + ": rename failed: " + std::strerror(err));
  }
  return Status::ok();
}

Result<std::vector<TrustedKey>> load_trust_file(const std::filesystem::path& path) {
  const std::string file = path.string();
  auto text = read_file(path);
  if (!text) return trust_error(path, 0, "cannot read the trust file: " + text.status().message());
  auto doc = parse_yaml(text.value(), file, "trust");
  if (!doc) return doc.status();
  const Value* keys = field(doc.value(), "keys");
  if (keys == nullptr || !keys->is_list()) {
    return trust_error(path, line_of(doc.value(), 1), "expected a list 'keys:' of {id, ed25519} entries");
  }
  std::vector<TrustedKey> out;
  std::set<std::string> seen;
  for (const Value& entry : keys->as_list()) {
    const int line = line_of(entry, line_of(*keys));
    if (!entry.is_map()) return trust_error(path, line, "each entry of 'keys' must be a map {id, ed25519}");
    const Value* id = nullptr;
    const Value* pk = nullptr;
    if (Status s = want_string(entry, "id", "trust", file, "", id); !s) return s;
    if (Status s = want_string(entry, "ed25519", "trust", file, "", pk); !s) return s;
    TrustedKey k;
    if (!from_hex(pk->as_string(), k.key) && !from_base64(pk->as_string(), k.key)) {
      return trust_error(path, line_of(*pk, line),
                         "'ed25519' must be a 32-byte public key in hex (64 digits) or base64 (44 characters)");
    }
    k.id = id->as_string();
    const std::string want = key_id(k.key);
    if (k.id != want) {
      return trust_error(path, line_of(*id, line), "key id '" + k.id + "' does not match its key (its id is '" + want + "')");
    }
    if (!seen.insert(k.id).second) return trust_error(path, line_of(*id, line), "key '" + k.id + "' is listed twice");
    out.push_back(std::move(k));
  }
  if (out.empty()) return trust_error(path, line_of(*keys, 1), "the trust file lists no keys");
  return out;
}

std::string render_trust_file(const std::vector<TrustedKey>& keys) {
  std::string out = "# Keys trusted to sign libTMC module repositories (docs/modules.md).\nkeys:\n";
  for (const TrustedKey& k : keys) {
    out += "  - id: \"" + k.id + "\"\n    ed25519: \"" + to_hex(k.key) + "\"\n";
  }
  return out;
}

Status write_secret_key_file(const std::filesystem::path& path, const KeyPair& kp) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status(errno == EEXIST ? Code::INVALID_ARGUMENT : Code::IO_ERROR,
                  path.string() + ": cannot create the key file: " + std::strerror(errno) +
                      (errno == EEXIST ? " (a key file is never overwritten)" : ""));
  }
  std::string text = "# libTMC module repository signing key: SECRET, keep it 0600 and off the repository.\n";
  text += "id: \"" + kp.id() + "\"\ned25519_secret: \"" + to_hex(kp.secret_key) + "\"\n";
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status(Code::IO_ERROR, path.string() + ": write failed: " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  sodium_memzero(text.data(), text.size());
  if (::close(fd) != 0) return Status(Code::IO_ERROR, path.string() + ": close failed: " + std::strerror(errno));
  return Status::ok();
}

Result<KeyPair> load_secret_key_file(const std::filesystem::path& path) {
  const std::string file = path.string();
  auto text = read_file(path);
  if (!text) return refusal("key", file, 0, "", "cannot read the key file: " + text.status().message());
  auto doc = parse_yaml(text.value(), file, "key");
  sodium_memzero(text.value().data(), text.value().size());
  if (!doc) return doc.status();
  const Value* id = nullptr;
  const Value* sk = nullptr;
  if (Status s = want_string(doc.value(), "id", "key", file, "", id); !s) return s;
  if (Status s = want_string(doc.value(), "ed25519_secret", "key", file, "", sk); !s) return s;
  KeyPair kp;
  if (!from_hex(sk->as_string(), kp.secret_key)) {
    return refusal("key", file, line_of(*sk), "", "'ed25519_secret' must be 128 hex digits");
  }
  ensure_sodium();
  crypto_sign_ed25519_sk_to_pk(kp.public_key.data(), kp.secret_key.data());
  if (kp.id() != id->as_string()) {
    return refusal("key", file, line_of(*id), "",
                   "key id '" + id->as_string() + "' does not match the secret key (its id is '" + kp.id() + "')");
  }
  return kp;
}

std::string render_signature_file(const DetachedSignature& sig) {
  return "# Ed25519 signature over the exact bytes of index.yaml.\nkey: \"" + sig.key_id + "\"\ned25519: \"" +
         to_hex(sig.signature) + "\"\n";
}

Result<DetachedSignature> parse_signature_file(std::string_view text, const std::string& file) {
  auto doc = parse_yaml(text, file, "signature");
  if (!doc) return doc.status();
  const Value* key = nullptr;
  const Value* sig = nullptr;
  if (Status s = want_string(doc.value(), "key", "signature", file, "", key); !s) return s;
  if (Status s = want_string(doc.value(), "ed25519", "signature", file, "", sig); !s) return s;
  DetachedSignature out;
  out.key_id = key->as_string();
  if (!from_hex(sig->as_string(), out.signature)) {
    return refusal("signature", file, line_of(*sig), "", "'ed25519' must be a 64-byte signature in hex (128 digits)");
  }
  return out;
}

}  // namespace tmc::modules
