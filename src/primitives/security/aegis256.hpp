// AEGIS-256 (draft-irtf-cfrg-aegis-aead) with AES-NI, 128-bit tags: the AEAD that
// security.aead prefers on CPUs with AES instructions.
//
// AEGIS-256 runs the AES round function over a 6-block state, one round per 16 bytes, with
// no key schedule and no GHASH; where AES-NI is present it seals 1 KiB in about a fifth of
// the time AES-256-GCM takes (docs/benchmarks.md, "Security"). It is a CAESAR-portfolio
// cipher and an IRTF CFRG draft; libsodium ships it from 1.0.19, and this implementation
// exists because the libsodium of Debian 12 (1.0.18) does not. The unit tests check it
// against the draft's test vectors, including those that must fail.
//
// Key 32 bytes, nonce 32 bytes, tag 16 bytes. Encryption and decryption work in place
// (c == m). Only x86 with AES-NI: `available()` says whether this host can run it; the other
// functions must not be called where it is false.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmc::security::aegis256 {

inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kTagBytes = 16;

/// True when this build and CPU can run AEGIS-256 (x86 with AES-NI).
[[nodiscard]] bool available() noexcept;

/// Encrypt `mlen` bytes of `m` into `c` (which may equal `m`), authenticating `ad` too, and
/// write the 16-byte tag.
void encrypt_detached(std::uint8_t* c, std::uint8_t* tag, const std::uint8_t* m, std::size_t mlen,
                      const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                      const std::uint8_t* key) noexcept;

/// Decrypt `clen` bytes of `c` into `m` (which may equal `c`) and verify the tag in constant
/// time. On failure returns false and zeroes `m`.
[[nodiscard]] bool decrypt_detached(std::uint8_t* m, const std::uint8_t* c, std::size_t clen, const std::uint8_t* tag,
                                    const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                                    const std::uint8_t* key) noexcept;

}  // namespace tmc::security::aegis256
