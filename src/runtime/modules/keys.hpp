// Ed25519 keys for module repositories: key ids, the operator's trust file, the signer's
// secret key file and the detached signature file (index.yaml.sig). libsodium does the
// cryptography; this file holds the formats around it.
//
//   trust file (YAML)              secret key file (YAML, mode 0600)
//     keys:                          id: "9c1f0e6d2b7a4c58"
//       - id: "9c1f0e6d2b7a4c58"     ed25519_secret: "<128 hex digits>"
//         ed25519: "<64 hex digits or 44 base64 characters>"
//
//   index.yaml.sig (YAML)
//     key: "9c1f0e6d2b7a4c58"
//     ed25519: "<128 hex digits: the detached signature over the exact bytes of index.yaml>"
//
// A key id is the first 8 bytes of SHA-256 over the 32-byte public key, in hex, so an id
// can always be recomputed from the key it names; a trust file whose id does not match its
// key is refused.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/modules/result.hpp"

namespace tmc::modules {

using PublicKey = std::array<std::uint8_t, 32>;
using SecretKey = std::array<std::uint8_t, 64>;  ///< libsodium's seed || public key form
using Signature = std::array<std::uint8_t, 64>;
using Sha256 = std::array<std::uint8_t, 32>;

/// Initialise libsodium once (thread-safe); every function here calls it itself.
void init_crypto();

std::string to_hex(std::span<const std::uint8_t> bytes);
/// Exactly `out.size()` bytes of hex (either case); false on any other length or character.
bool from_hex(std::string_view hex, std::span<std::uint8_t> out);
/// Standard base64 with padding; false unless it decodes to exactly `out.size()` bytes.
bool from_base64(std::string_view text, std::span<std::uint8_t> out);

/// "9c1f0e6d2b7a4c58": the first 8 bytes of SHA-256(public key), hex.
std::string key_id(const PublicKey& pk);

Sha256 sha256(std::string_view bytes);
/// SHA-256 of a whole file, read in blocks; IO_ERROR naming the file when it cannot be read.
Result<Sha256> sha256_file(const std::filesystem::path& path);

struct KeyPair {
  PublicKey public_key{};
  SecretKey secret_key{};
  [[nodiscard]] std::string id() const { return key_id(public_key); }
};
KeyPair generate_keypair();
Signature sign_detached(std::string_view message, const SecretKey& sk);
bool verify_detached(std::string_view message, const Signature& sig, const PublicKey& pk);

/// One trusted signing key.
struct TrustedKey {
  std::string id;
  PublicKey key{};
};
/// Parse a trust file. Every problem (a missing field, a key of the wrong length, an id
/// that does not match its key, a duplicated id) names the file and line.
Result<std::vector<TrustedKey>> load_trust_file(const std::filesystem::path& path);
/// The trust file text listing `keys`, in the format load_trust_file reads.
std::string render_trust_file(const std::vector<TrustedKey>& keys);

/// The secret key file: write with mode 0600 (refusing to overwrite an existing file), read back.
Status write_secret_key_file(const std::filesystem::path& path, const KeyPair& kp);
Result<KeyPair> load_secret_key_file(const std::filesystem::path& path);

/// index.yaml.sig: who signed and the signature.
struct DetachedSignature {
  std::string key_id;
  Signature signature{};
};
std::string render_signature_file(const DetachedSignature& sig);
/// `text` is the file's contents, `file` its name for messages.
Result<DetachedSignature> parse_signature_file(std::string_view text, const std::string& file);

/// Write `contents` to `path` through a temporary file in the same directory and rename,
/// so a reader sees the old file or the new one, never a torn one.
Status write_file_atomically(const std::filesystem::path& path, std::string_view contents, unsigned mode = 0644);

/// The largest file of the repository's own formats (index, signature, trust, key, state)
/// read at all: an index is read before it is authenticated, so its size is bounded.
inline constexpr std::uintmax_t kMaxMetadataBytes = 1 << 20;

/// Read a whole file of at most `max_bytes`; IO_ERROR naming the file on failure.
Result<std::string> read_file(const std::filesystem::path& path, std::uintmax_t max_bytes = kMaxMetadataBytes);

}  // namespace tmc::modules
