// AEGIS-256 (security.aead's preferred AEAD) against the test vectors of the specification,
// draft-irtf-cfrg-aegis-aead, appendix "AEGIS-256 Test Vectors" (128-bit tags), plus in-place
// round trips at every length around the 16-byte rate and a flipped bit anywhere.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "primitives/security/aegis256.hpp"

namespace {

namespace aegis = tmc::security::aegis256;
using Bytes = std::vector<std::uint8_t>;

Bytes hex(const std::string& s) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
  return out;
}

struct Vector {
  const char* key;
  const char* nonce;
  const char* ad;
  const char* msg;
  const char* ct;
  const char* tag;
};

constexpr const char* kKey = "1001000000000000000000000000000000000000000000000000000000000000";
constexpr const char* kNonce = "1000020000000000000000000000000000000000000000000000000000000000";

const Vector kVectors[] = {
    {kKey, kNonce, "", "00000000000000000000000000000000", "754fc3d8c973246dcc6d741412a4b236",
     "3fe91994768b332ed7f570a19ec5896e"},
    {kKey, kNonce, "", "", "", "e3def978a0f054afd1e761d7553afba3"},
    {kKey, kNonce, "0001020304050607", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "f373079ed84b2709faee373584585d60accd191db310ef5d8b11833df9dec711", "8d86f91ee606e9ff26a01b64ccbdd91d"},
    {kKey, kNonce, "0001020304050607", "000102030405060708090a0b0c0d", "f373079ed84b2709faee37358458",
     "c60b9c2d33ceb058f96e6dd03c215652"},
    {kKey, kNonce, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829",
     "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
     "57754a7d09963e7c787583a2e7b859bb24fa1e04d49fd550b2511a358e3bca252a9b1b8b30cc4a67",
     "ab8a7d53fd0e98d727accca94925e128"},
};

// Test vectors 6-9: each must fail to verify (wrong key and nonce, changed ciphertext,
// changed associated data, changed tag).
const Vector kForgeries[] = {
    {"1000020000000000000000000000000000000000000000000000000000000000",
     "1001000000000000000000000000000000000000000000000000000000000000", "0001020304050607", "",
     "f373079ed84b2709faee37358458", "c60b9c2d33ceb058f96e6dd03c215652"},
    {kKey, kNonce, "0001020304050607", "", "f373079ed84b2709faee37358459", "c60b9c2d33ceb058f96e6dd03c215652"},
    {kKey, kNonce, "0001020304050608", "", "f373079ed84b2709faee37358458", "c60b9c2d33ceb058f96e6dd03c215652"},
    {kKey, kNonce, "0001020304050607", "", "f373079ed84b2709faee37358458", "c60b9c2d33ceb058f96e6dd03c215653"},
};

}  // namespace

TEST_CASE("aegis-256: the specification's test vectors seal and open, in place") {
  if (!aegis::available()) return;  // no AES-NI: security.aead falls back to XChaCha20-Poly1305
  for (const Vector& v : kVectors) {
    const Bytes key = hex(v.key), nonce = hex(v.nonce), ad = hex(v.ad), msg = hex(v.msg), ct = hex(v.ct),
                tag = hex(v.tag);
    CAPTURE(v.ct);
    Bytes buf = msg;
    std::uint8_t out[aegis::kTagBytes] = {};
    aegis::encrypt_detached(buf.data(), out, buf.data(), buf.size(), ad.data(), ad.size(), nonce.data(), key.data());
    CHECK(buf == ct);
    CHECK(Bytes(out, out + aegis::kTagBytes) == tag);
    CHECK(aegis::decrypt_detached(buf.data(), buf.data(), buf.size(), tag.data(), ad.data(), ad.size(), nonce.data(),
                                  key.data()));
    CHECK(buf == msg);
  }
}

TEST_CASE("aegis-256: the specification's forgeries are refused and the output wiped") {
  if (!aegis::available()) return;
  for (const Vector& v : kForgeries) {
    const Bytes key = hex(v.key), nonce = hex(v.nonce), ad = hex(v.ad), ct = hex(v.ct), tag = hex(v.tag);
    CAPTURE(v.ct);
    Bytes out(ct.size(), 0xee);
    CHECK_FALSE(aegis::decrypt_detached(out.data(), ct.data(), ct.size(), tag.data(), ad.data(), ad.size(),
                                        nonce.data(), key.data()));
    CHECK(out == Bytes(ct.size(), 0));
  }
}

TEST_CASE("aegis-256: every length around the rate round-trips; any flipped bit is refused") {
  if (!aegis::available()) return;
  Bytes key(aegis::kKeyBytes), nonce(aegis::kNonceBytes);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(7 * i + 1);
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = static_cast<std::uint8_t>(13 * i + 5);
  for (std::size_t adlen : {0u, 1u, 15u, 16u, 17u, 40u}) {
    for (std::size_t mlen = 0; mlen <= 70; ++mlen) {
      Bytes ad(adlen), msg(mlen);
      for (std::size_t i = 0; i < adlen; ++i) ad[i] = static_cast<std::uint8_t>(i * 31 + mlen);
      for (std::size_t i = 0; i < mlen; ++i) msg[i] = static_cast<std::uint8_t>(i * 17 + adlen);
      Bytes buf = msg;
      std::uint8_t tag[aegis::kTagBytes];
      aegis::encrypt_detached(buf.data(), tag, buf.data(), mlen, ad.data(), adlen, nonce.data(), key.data());
      if (mlen >= 16) CHECK(buf != msg);
      Bytes opened = buf;
      REQUIRE(aegis::decrypt_detached(opened.data(), opened.data(), mlen, tag, ad.data(), adlen, nonce.data(),
                                      key.data()));
      CHECK(opened == msg);
      // A flipped bit in the ciphertext, the associated data or the tag.
      const std::size_t total = mlen + adlen + aegis::kTagBytes;
      for (std::size_t at = 0; at < total; at += 1 + total / 9) {
        Bytes c = buf, a = ad;
        std::uint8_t t[aegis::kTagBytes];
        std::copy(tag, tag + aegis::kTagBytes, t);
        if (at < mlen) {
          c[at] ^= 0x01;
        } else if (at < mlen + adlen) {
          a[at - mlen] ^= 0x80;
        } else {
          t[at - mlen - adlen] ^= 0x10;
        }
        CHECK_FALSE(aegis::decrypt_detached(c.data(), c.data(), mlen, t, a.data(), adlen, nonce.data(), key.data()));
      }
    }
  }
}
