// AEGIS-256 with AES-NI (aegis256.hpp). Written from the specification,
// draft-irtf-cfrg-aegis-aead, sections "AEGIS-256" (Init, Update, Absorb, Enc, Dec, DecPartial,
// Finalize); the names below follow it.
#include "primitives/security/aegis256.hpp"

#include <sodium.h>

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TMC_AEGIS256_AESNI 1
#endif

namespace tmc::security::aegis256 {

#if defined(TMC_AEGIS256_AESNI)

namespace {

using Block = __m128i;
constexpr std::size_t kRate = 16;

struct State {
  Block s[6];
};

#define TMC_AESNI __attribute__((target("aes,sse2")))

TMC_AESNI inline Block load(const std::uint8_t* p) noexcept {
  return _mm_loadu_si128(reinterpret_cast<const Block*>(p));
}
TMC_AESNI inline void store(std::uint8_t* p, Block b) noexcept { _mm_storeu_si128(reinterpret_cast<Block*>(p), b); }

/// Update(M): every block takes one AES round keyed by its predecessor; S0 also absorbs M.
TMC_AESNI inline void update(State& st, Block m) noexcept {
  Block* s = st.s;
  const Block t = s[5];
  s[5] = _mm_aesenc_si128(s[4], s[5]);
  s[4] = _mm_aesenc_si128(s[3], s[4]);
  s[3] = _mm_aesenc_si128(s[2], s[3]);
  s[2] = _mm_aesenc_si128(s[1], s[2]);
  s[1] = _mm_aesenc_si128(s[0], s[1]);
  s[0] = _mm_xor_si128(_mm_aesenc_si128(t, s[0]), m);
}

/// The keystream block: S1 ^ S4 ^ S5 ^ (S2 & S3).
TMC_AESNI inline Block keystream(const State& st) noexcept {
  const Block* s = st.s;
  return _mm_xor_si128(_mm_xor_si128(s[1], s[4]), _mm_xor_si128(s[5], _mm_and_si128(s[2], s[3])));
}

TMC_AESNI void init(State& st, const std::uint8_t* key, const std::uint8_t* nonce) noexcept {
  alignas(16) static constexpr std::uint8_t kC0[16] = {0x00, 0x01, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0d,
                                                       0x15, 0x22, 0x37, 0x59, 0x90, 0xe9, 0x79, 0x62};
  alignas(16) static constexpr std::uint8_t kC1[16] = {0xdb, 0x3d, 0x18, 0x55, 0x6d, 0xc2, 0x2f, 0xf1,
                                                       0x20, 0x11, 0x31, 0x42, 0x73, 0xb5, 0x28, 0xdd};
  const Block c0 = load(kC0);
  const Block c1 = load(kC1);
  const Block k0 = load(key);
  const Block k1 = load(key + 16);
  const Block k0n0 = _mm_xor_si128(k0, load(nonce));
  const Block k1n1 = _mm_xor_si128(k1, load(nonce + 16));
  st.s[0] = k0n0;
  st.s[1] = k1n1;
  st.s[2] = c1;
  st.s[3] = c0;
  st.s[4] = _mm_xor_si128(k0, c0);
  st.s[5] = _mm_xor_si128(k1, c1);
  for (int i = 0; i < 4; ++i) {
    update(st, k0);
    update(st, k1);
    update(st, k0n0);
    update(st, k1n1);
  }
}

TMC_AESNI void absorb(State& st, const std::uint8_t* ad, std::size_t adlen) noexcept {
  std::size_t i = 0;
  for (; i + kRate <= adlen; i += kRate) update(st, load(ad + i));
  if (i < adlen) {
    alignas(16) std::uint8_t pad[kRate] = {};
    std::memcpy(pad, ad + i, adlen - i);
    update(st, load(pad));
  }
}

/// Finalize with a 128-bit tag: seven updates with S3 ^ (LE64(ad bits) || LE64(msg bits)),
/// then the XOR of all six blocks.
TMC_AESNI void finalize(State& st, std::size_t adlen, std::size_t mlen, std::uint8_t* tag) noexcept {
  const Block lens = _mm_set_epi64x(static_cast<long long>(static_cast<std::uint64_t>(mlen) << 3),
                                    static_cast<long long>(static_cast<std::uint64_t>(adlen) << 3));
  const Block t = _mm_xor_si128(lens, st.s[3]);
  for (int i = 0; i < 7; ++i) update(st, t);
  const Block* s = st.s;
  store(tag, _mm_xor_si128(_mm_xor_si128(_mm_xor_si128(s[0], s[1]), _mm_xor_si128(s[2], s[3])),
                           _mm_xor_si128(s[4], s[5])));
}

TMC_AESNI void encrypt_impl(std::uint8_t* c, std::uint8_t* tag, const std::uint8_t* m, std::size_t mlen,
                            const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                            const std::uint8_t* key) noexcept {
  State st;
  init(st, key, nonce);
  absorb(st, ad, adlen);
  std::size_t i = 0;
  for (; i + kRate <= mlen; i += kRate) {
    const Block x = load(m + i);
    store(c + i, _mm_xor_si128(x, keystream(st)));
    update(st, x);
  }
  if (i < mlen) {
    alignas(16) std::uint8_t pad[kRate] = {};
    std::memcpy(pad, m + i, mlen - i);
    const Block x = load(pad);
    store(pad, _mm_xor_si128(x, keystream(st)));
    std::memcpy(c + i, pad, mlen - i);
    update(st, x);
  }
  finalize(st, adlen, mlen, tag);
}

TMC_AESNI bool decrypt_impl(std::uint8_t* m, const std::uint8_t* c, std::size_t clen, const std::uint8_t* tag,
                            const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                            const std::uint8_t* key) noexcept {
  State st;
  init(st, key, nonce);
  absorb(st, ad, adlen);
  std::size_t i = 0;
  for (; i + kRate <= clen; i += kRate) {
    const Block x = _mm_xor_si128(load(c + i), keystream(st));
    store(m + i, x);
    update(st, x);
  }
  if (i < clen) {
    // DecPartial: the plaintext's padding is zeroed before it is absorbed.
    const std::size_t n = clen - i;
    alignas(16) std::uint8_t pad[kRate] = {};
    std::memcpy(pad, c + i, n);
    store(pad, _mm_xor_si128(load(pad), keystream(st)));
    std::memset(pad + n, 0, kRate - n);
    std::memcpy(m + i, pad, n);
    update(st, load(pad));
  }
  alignas(16) std::uint8_t expected[kTagBytes];
  finalize(st, adlen, clen, expected);
  if (crypto_verify_16(expected, tag) != 0) {
    sodium_memzero(m, clen);
    return false;
  }
  return true;
}

}  // namespace

bool available() noexcept {
  static const bool yes = __builtin_cpu_supports("aes") != 0 && __builtin_cpu_supports("sse2") != 0;
  return yes;
}

void encrypt_detached(std::uint8_t* c, std::uint8_t* tag, const std::uint8_t* m, std::size_t mlen,
                      const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                      const std::uint8_t* key) noexcept {
  encrypt_impl(c, tag, m, mlen, ad, adlen, nonce, key);
}

bool decrypt_detached(std::uint8_t* m, const std::uint8_t* c, std::size_t clen, const std::uint8_t* tag,
                      const std::uint8_t* ad, std::size_t adlen, const std::uint8_t* nonce,
                      const std::uint8_t* key) noexcept {
  return decrypt_impl(m, c, clen, tag, ad, adlen, nonce, key);
}

#else  // no AES-NI in this build: security.aead never selects AEGIS-256

bool available() noexcept { return false; }

void encrypt_detached(std::uint8_t* c, std::uint8_t* tag, const std::uint8_t*, std::size_t mlen,
                      const std::uint8_t*, std::size_t, const std::uint8_t*, const std::uint8_t*) noexcept {
  std::memset(c, 0, mlen);
  std::memset(tag, 0, kTagBytes);
}

bool decrypt_detached(std::uint8_t* m, const std::uint8_t*, std::size_t clen, const std::uint8_t*,
                      const std::uint8_t*, std::size_t, const std::uint8_t*, const std::uint8_t*) noexcept {
  std::memset(m, 0, clen);
  return false;
}

#endif

}  // namespace tmc::security::aegis256
