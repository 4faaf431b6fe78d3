// security.aead — every datagram authenticated (and its payload optionally encrypted) under
// the group key, with a per-sender anti-replay window.
//
// Synopsis
//   On send: append the `auth` extension, seal the header, and compute an AEAD tag over the
//   whole datagram (authenticate) or encrypt the payload with the header and extensions as
//   associated data (encrypt). On receive: check the replay window, verify (and decrypt),
//   and only then pass the packet up; anything else is dropped as drops.auth.
// Params
//   mode       authenticate | encrypt
//   key_file   the group key file (keyfile.hpp); read once, in configure()
//   algorithm  auto | aes-256-gcm | xchacha20-poly1305
//   max_senders  authenticated sender incarnations whose replay window is kept
// Wire
//   Extension `auth` (type 10), 26 bytes: u8 suite (bit 7: payload encrypted; low bits: 1
//   AES-256-GCM, 2 XChaCha20-Poly1305), u8 key id, u64 nonce counter, 16 bytes
//   tag. The tag is computed with its own 16 bytes zeroed, so the header, every extension
//   (this one's suite, key id and counter included) and the payload are all covered.
// Keys and nonces
//   Each sender incarnation seals with its own subkey, BLAKE2b keyed with the group key over
//   (suite, channel, sender, epoch, key id), and a 64-bit counter that starts at a random
//   point in [1, 2^62] for every pipeline (StageEnv::incarnation_random). The epoch is fresh
//   for every pipeline (every open and update), so a (subkey, nonce) pair repeats only if a
//   member name draws the same 32-bit epoch twice under one group key and the two
//   incarnations' counter ranges overlap; docs/security.md discusses it. The counter,
//   big-endian, is the nonce's first 8 bytes (zeros after) for AES-256-GCM, and the last 8 of
//   XChaCha20's 24 (16 zero bytes before it), so that HChaCha20 runs once per subkey.
// Implementations
//   AES-256-GCM is OpenSSL's (EVP; AES-NI with PCLMULQDQ GHASH), one context per
//   subkey keyed once; XChaCha20-Poly1305, the BLAKE2b subkeys and the wiping are libsodium's. A receiver derives a
//   peer's subkey on its first datagram and keeps it, with the replay window, only once a
//   datagram has verified: datagrams from a process without the key cost CPU, never memory.
// Replay window
//   1024 counters per sender incarnation, as SRTP's (RFC 3711 section 3.3.2): a counter at
//   or below the window's floor, or one already seen, is dropped. When more incarnations
//   have verified than `max_senders`, the least recently heard is forgotten and its highest
//   counter remembered (64 of them), so that replaying its datagrams later does not open a
//   fresh window.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "primitives/security/keyfile.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

#define TMC_AEAD_COUNTERS(X, P)                                                                                      \
  X(P, sealed, "datagrams authenticated (and encrypted) on send")                                                    \
  X(P, no_room, "datagrams dropped on send: no headroom for the auth extension")                                     \
  X(P, seal_failed, "datagrams dropped on send: the AEAD library failed to seal")                                    \
  X(P, verified, "received datagrams that verified and were passed up")                                              \
  X(P, missing, "received datagrams without an auth extension (drops.auth)")                                         \
  X(P, unknown_key, "received datagrams under a key id this member does not hold (drops.auth)")                      \
  X(P, wrong_suite, "received datagrams with another mode or an algorithm this host cannot run (drops.auth)")        \
  X(P, replayed, "received datagrams whose counter the replay window had seen or left behind (drops.auth)")          \
  X(P, failed, "received datagrams whose tag did not verify: forged, tampered or truncated (drops.auth)")            \
  X(P, senders_forgotten, "authenticated sender incarnations forgotten for room (their floor is remembered)")        \
  X(P, uses_aes256gcm, "1 when this member seals with AES-256-GCM")                                                  \
  X(P, uses_xchacha20poly1305, "1 when this member seals with XChaCha20-Poly1305")
TMC_STAGE_COUNTERS("security.", TMC_AEAD_COUNTERS);

constexpr std::uint8_t kSuiteAes = 1;
constexpr std::uint8_t kSuiteXChaCha = 2;
constexpr std::uint8_t kSuiteEncrypted = 0x80;
constexpr std::size_t kTagBytes = 16;
constexpr std::size_t kGcmIvBytes = 12;
constexpr std::size_t kBodyBytes = 1 + 1 + 8 + kTagBytes;  // suite, key id, counter, tag
constexpr std::size_t kTagOffset = 10;                      // within the body
constexpr std::size_t kWindowBits = 1024;
constexpr std::size_t kWindowWords = kWindowBits / 64;
constexpr std::size_t kFloors = 64;

constexpr std::string_view kModes[] = {"authenticate", "encrypt"};
constexpr std::string_view kAlgorithms[] = {"auto", "aes-256-gcm", "xchacha20-poly1305"};

/// Frees an OpenSSL cipher context (which wipes its key schedule).
struct EvpCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using EvpCtx = std::unique_ptr<EVP_CIPHER_CTX, EvpCtxFree>;

/// The AEAD tag as an OpenSSL parameter: the provider's own interface, a little cheaper per
/// datagram than EVP_CIPHER_CTX_ctrl, which builds the same parameter and then calls it.
inline std::array<OSSL_PARAM, 2> tag_param(std::uint8_t* tag) noexcept {
  return {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, kTagBytes), OSSL_PARAM_construct_end()};
}

/// One sender incarnation's cipher state in one direction (this member seals with its own;
/// it opens with one per peer), everything per key done once in derive(): the subkey, and
/// for AES-256-GCM an OpenSSL context holding the expanded key and GHASH table, for
/// XChaCha20 the HChaCha20 key. Per datagram only the nonce is set.
struct Cipher {
  EvpCtx ctx;  ///< AES-256-GCM only; made on the first derive, re-keyed in place after
  std::array<std::uint8_t, 32> key{};
  std::uint8_t suite = 0;  ///< kSuiteAes or kSuiteXChaCha

  /// Cold path (once per subkey). False only if OpenSSL cannot make or key the context.
  [[nodiscard]] bool derive(const security::GroupKey& group, std::uint8_t s, std::uint32_t channel,
                            std::uint32_t sender, std::uint32_t epoch, bool sealing) noexcept {
    std::uint8_t info[14 + 1 + 4 + 4 + 4 + 1];
    std::memcpy(info, "libTMC aead v1", 14);
    info[14] = s;
    wire::put_u32(info + 15, channel);
    wire::put_u32(info + 19, sender);
    wire::put_u32(info + 23, epoch);
    info[27] = group.id;
    crypto_generichash(key.data(), key.size(), info, sizeof info, group.key.data(), group.key.size());
    suite = s;
    if (s == kSuiteAes) {
      const int enc = sealing ? 1 : 0;
      if (!ctx) {
        // The cipher is bound once; later keys go through the nullptr-cipher form, which
        // re-keys the same provider context without freeing or allocating anything.
        ctx.reset(EVP_CIPHER_CTX_new());
        if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr, enc) != 1) {
          ctx.reset();
          return false;
        }
      }
      // The default IV length is 12 bytes, the nonce below.
      const bool keyed = EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), nullptr, enc) == 1;
      sodium_memzero(key.data(), key.size());  // the context holds the schedule; the subkey is not kept
      return keyed;
    }
    // XChaCha20's nonce is 16 zero bytes and then the counter: its first step, HChaCha20
    // over those 16 bytes, is the same for every datagram and done here once.
    const std::uint8_t zeros[crypto_core_hchacha20_INPUTBYTES] = {};
    crypto_core_hchacha20(key.data(), zeros, key.data(), nullptr);
    return true;
  }

  /// Forget the key material (the context, if any, is kept for the next derive).
  void wipe() noexcept {
    sodium_memzero(key.data(), key.size());
    suite = 0;
  }

  /// Seal: `m` (mlen bytes, possibly 0) encrypted in place, `ad` authenticated.
  [[nodiscard]] bool seal(std::uint8_t* m, std::size_t mlen, const std::uint8_t* ad, std::size_t adlen,
                          std::uint64_t counter, std::uint8_t* tag) const noexcept {
    if (suite == kSuiteAes) {
      // The counter, big-endian, is the first 8 of the 12 nonce bytes.
      std::uint8_t iv[kGcmIvBytes] = {};
      wire::put_u64(iv, counter);
      EVP_CIPHER_CTX* c = ctx.get();
      int n = 0;
      return EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv) == 1 &&
             EVP_EncryptUpdate(c, nullptr, &n, ad, static_cast<int>(adlen)) == 1 &&
             (mlen == 0 || EVP_EncryptUpdate(c, m, &n, m, static_cast<int>(mlen)) == 1) &&
             EVP_EncryptFinal_ex(c, m + mlen, &n) == 1 && EVP_CIPHER_CTX_get_params(c, tag_param(tag).data()) == 1;
    }
    // The counter, big-endian, is the last 8 of XChaCha20's 24 nonce bytes, which after
    // HChaCha20 (done in derive) leaves it as the last 8 of ChaCha20's 12.
    std::uint8_t npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {};
    wire::put_u64(npub + 4, counter);
    unsigned long long taglen = 0;
    return crypto_aead_chacha20poly1305_ietf_encrypt_detached(m, tag, &taglen, m, mlen, ad, adlen, nullptr, npub,
                                                              key.data()) == 0;
  }

  /// Open: `c` decrypted in place if (and only if) the tag verifies; wiped if it does not.
  [[nodiscard]] bool open(std::uint8_t* c, std::size_t clen, const std::uint8_t* ad, std::size_t adlen,
                          std::uint64_t counter, const std::uint8_t* tag) const noexcept {
    if (suite == kSuiteAes) {
      std::uint8_t iv[kGcmIvBytes] = {};
      wire::put_u64(iv, counter);
      EVP_CIPHER_CTX* x = ctx.get();
      std::uint8_t t[kTagBytes];
      std::memcpy(t, tag, kTagBytes);
      int n = 0;
      const bool ok = EVP_DecryptInit_ex(x, nullptr, nullptr, nullptr, iv) == 1 &&
                      EVP_CIPHER_CTX_set_params(x, tag_param(t).data()) == 1 &&
                      EVP_DecryptUpdate(x, nullptr, &n, ad, static_cast<int>(adlen)) == 1 &&
                      (clen == 0 || EVP_DecryptUpdate(x, c, &n, c, static_cast<int>(clen)) == 1) &&
                      EVP_DecryptFinal_ex(x, c + clen, &n) == 1;
      if (!ok && clen != 0) sodium_memzero(c, clen);  // no unauthenticated plaintext left behind
      return ok;
    }
    std::uint8_t npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {};
    wire::put_u64(npub + 4, counter);
    return crypto_aead_chacha20poly1305_ietf_decrypt_detached(c, nullptr, c, clen, tag, ad, adlen, npub,
                                                              key.data()) == 0;
  }
};

/// An SRTP-style sliding window over one sender incarnation's counters.
struct ReplayWindow {
  std::uint64_t top = 0;  ///< highest counter accepted (0: none; counters start at 1)
  std::array<std::uint64_t, kWindowWords> bits{};

  [[nodiscard]] bool fresh(std::uint64_t c) const noexcept {
    if (c == 0) return false;
    if (c > top) return true;
    if (top - c >= kWindowBits) return false;
    return (bits[(c / 64) % kWindowWords] >> (c % 64) & 1u) == 0;
  }
  void accept(std::uint64_t c) noexcept {
    if (c > top) {
      if (c - top >= kWindowBits) {
        bits.fill(0);
      } else {
        for (std::uint64_t i = top + 1; i < c && i <= top + kWindowBits; ++i) {
          bits[(i / 64) % kWindowWords] &= ~(std::uint64_t{1} << (i % 64));
        }
      }
      top = c;
    }
    bits[(c / 64) % kWindowWords] |= std::uint64_t{1} << (c % 64);
  }
  /// Everything at or below `floor` counts as seen.
  void start_at(std::uint64_t floor) noexcept {
    top = floor;
    bits.fill(~std::uint64_t{0});
  }
};

struct Peer {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint8_t key_id = 0;
  std::uint8_t suite = 0;
  bool used = false;
  std::uint64_t last_heard = 0;  ///< stage-local tick of the last verified datagram
  ReplayWindow window;
  Cipher cipher;
};

struct Floor {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint8_t key_id = 0;
  std::uint64_t top = 0;
};

class AeadStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    if (sodium_init() < 0) {
      errors.emplace_back("libsodium failed to initialise");
      return false;
    }
    encrypt_ = params.text("mode") == "encrypt";
    const std::string& algorithm = params.text("algorithm");
    // libsodium's check: AES-NI and PCLMULQDQ, without which OpenSSL's AES would fall back
    // to table lookups (not constant-time) and XChaCha20 is the better choice.
    aes_available_ = crypto_aead_aes256gcm_is_available() != 0;
    if (algorithm == "aes-256-gcm" && !aes_available_) {
      errors.emplace_back("algorithm 'aes-256-gcm' needs a CPU with AES-NI and PCLMUL, which this host lacks; "
                          "use 'xchacha20-poly1305' or 'auto'");
      return false;
    }
    if (algorithm == "aes-256-gcm" || (algorithm == "auto" && aes_available_)) {
      suite_ = kSuiteAes;
    } else {
      suite_ = kSuiteXChaCha;
    }
    std::string error;
    if (!security::load_key_file(params.text("key_file"), keys_, error)) {
      errors.push_back(std::move(error));
      return false;
    }
    env_ = env;
    peers_.resize(static_cast<std::size_t>(params.integer("max_senders")));
    if (!own_.derive(keys_.back(), suite_, env.channel, env.sender, env.epoch, /*sealing=*/true)) {
      errors.emplace_back("OpenSSL could not set up AES-256-GCM");
      return false;
    }
    // The first counter: 1 + 62 random bits (1 without them). Two incarnations of one member
    // that draw the same epoch share a subkey, and then only counter ranges apart keep their
    // nonces apart.
    counter_ = env.incarnation_random >> 2;
    return true;
  }

  ~AeadStage() override {
    sodium_memzero(keys_.data(), keys_.size() * sizeof(security::GroupKey));
    // The OpenSSL contexts wipe their key schedules when the Ciphers free them.
    own_.wipe();
    scratch_.wipe();
    for (Peer& q : peers_) q.cipher.wipe();
  }

  void on_start(StageIo& io) noexcept override {
    io.count(suite_ == kSuiteAes ? uses_aes256gcm : uses_xchacha20poly1305);
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    const bool was_sealed = p->sealed;
    p->unseal();
    std::uint8_t* body = p->push_ext(wire::Ext::auth, static_cast<std::uint8_t>(kBodyBytes));
    if (body == nullptr) {
      if (was_sealed) p->seal();
      io.count(no_room);
      io.drop(p, DropReason::too_large);
      return;
    }
    p->seal();  // rewrites the header with the new extension length
    body[0] = static_cast<std::uint8_t>(suite_ | (encrypt_ ? kSuiteEncrypted : 0));
    body[1] = keys_.back().id;
    const std::uint64_t counter = ++counter_;
    wire::put_u64(body + 2, counter);
    std::uint8_t* tag = body + kTagOffset;
    std::memset(tag, 0, kTagBytes);
    std::uint8_t out[kTagBytes];
    const std::size_t head = p->payload_off - p->off;
    std::uint8_t none[1] = {0};  // authenticate: no message, the whole datagram is associated data
    const bool ok = encrypt_ ? own_.seal(p->payload(), p->payload_len, p->data(), head, counter, out)
                             : own_.seal(none, 0, p->data(), p->len, counter, out);
    if (!ok) {  // only if the AEAD library itself fails; nothing unsealed leaves
      io.count(seal_failed);
      io.drop(p, DropReason::auth);
      return;
    }
    std::memcpy(tag, out, kTagBytes);
    io.count(sealed);
    io.down(p);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    std::uint8_t body_len = 0;
    const std::uint8_t* body_c = p->ext(wire::Ext::auth, &body_len);
    if (body_c == nullptr || body_len != kBodyBytes) {
      reject(p, io, missing);
      return;
    }
    std::uint8_t* body = p->buf + (body_c - p->buf);
    const std::uint8_t suite = body[0];
    const bool encrypted = (suite & kSuiteEncrypted) != 0;
    const std::uint8_t algo = suite & 0x7f;
    if (encrypted != encrypt_ || (algo != kSuiteAes && algo != kSuiteXChaCha) || (algo == kSuiteAes && !aes_available_)) {
      reject(p, io, wrong_suite);
      return;
    }
    const security::GroupKey* key = find_key(body[1]);
    if (key == nullptr) {
      reject(p, io, unknown_key);
      return;
    }
    const std::uint64_t counter = wire::get_u64(body + 2);
    Peer* peer = find_peer(p->sender, p->epoch, key->id, algo);
    const Cipher* cipher = nullptr;
    if (peer != nullptr) {
      if (!peer->window.fresh(counter)) {
        reject(p, io, replayed);
        return;
      }
      cipher = &peer->cipher;
    } else {
      // Not known yet: a floor remembered for it still applies before any crypto is spent.
      const std::uint64_t floor = floor_of(p->sender, p->epoch, key->id);
      if (counter == 0 || counter <= floor) {
        reject(p, io, replayed);
        return;
      }
      if (!scratch_.derive(*key, algo, env_.channel, p->sender, p->epoch, /*sealing=*/false)) {
        reject(p, io, failed);
        return;
      }
      cipher = &scratch_;
    }
    std::uint8_t tag[kTagBytes];
    std::memcpy(tag, body + kTagOffset, kTagBytes);
    std::memset(body + kTagOffset, 0, kTagBytes);
    const std::size_t head = p->payload_off - p->off;
    std::uint8_t none[1] = {0};
    const bool ok = encrypt_ ? cipher->open(p->payload(), p->payload_len, p->data(), head, counter, tag)
                             : cipher->open(none, 0, p->data(), p->len, counter, tag);
    std::memcpy(body + kTagOffset, tag, kTagBytes);
    if (!ok) {
      reject(p, io, failed);
      return;
    }
    if (peer == nullptr) peer = admit(p->sender, p->epoch, key->id, algo, io);
    peer->last_heard = ++clock_;
    peer->window.accept(counter);
    io.count(verified);
    io.up(p);
  }

 private:
  static void reject(Packet* p, StageIo& io, Counter why) noexcept {
    io.count(why);
    io.drop(p, DropReason::auth);
  }

  const security::GroupKey* find_key(std::uint8_t id) const noexcept {
    for (const auto& k : keys_) {
      if (k.id == id) return &k;
    }
    return nullptr;
  }

  Peer* find_peer(std::uint32_t sender, std::uint32_t epoch, std::uint8_t key_id, std::uint8_t suite) noexcept {
    if (last_ != nullptr && last_->sender == sender && last_->epoch == epoch && last_->key_id == key_id &&
        last_->suite == suite) {
      return last_;
    }
    for (std::size_t i = 0; i < used_; ++i) {
      Peer& q = peers_[i];
      if (q.sender == sender && q.epoch == epoch && q.key_id == key_id && q.suite == suite) {
        last_ = &q;
        return &q;
      }
    }
    return nullptr;
  }

  std::uint64_t floor_of(std::uint32_t sender, std::uint32_t epoch, std::uint8_t key_id) const noexcept {
    for (const Floor& f : floors_) {
      if (f.top != 0 && f.sender == sender && f.epoch == epoch && f.key_id == key_id) return f.top;
    }
    return 0;
  }

  /// A slot for an incarnation whose first datagram just verified (cold: once per incarnation).
  Peer* admit(std::uint32_t sender, std::uint32_t epoch, std::uint8_t key_id, std::uint8_t suite,
              StageIo& io) noexcept {
    Peer* slot = nullptr;
    if (used_ < peers_.size()) {
      slot = &peers_[used_++];
    } else {
      slot = &peers_[0];
      for (Peer& q : peers_) {
        if (q.last_heard < slot->last_heard) slot = &q;
      }
      floors_[next_floor_] = Floor{slot->sender, slot->epoch, slot->key_id, slot->window.top};
      next_floor_ = (next_floor_ + 1) % kFloors;
      io.count(senders_forgotten);
    }
    slot->sender = sender;
    slot->epoch = epoch;
    slot->key_id = key_id;
    slot->suite = suite;
    slot->used = true;
    slot->window = ReplayWindow{};
    if (const std::uint64_t floor = floor_of(sender, epoch, key_id); floor != 0) slot->window.start_at(floor);
    // The verified subkey moves in; the slot's previous context (an evicted peer's) is freed,
    // and scratch_ makes a new one on the next unknown sender.
    slot->cipher = std::move(scratch_);
    scratch_ = Cipher{};
    last_ = slot;
    return slot;
  }

  bool encrypt_ = false;
  bool aes_available_ = false;
  std::uint8_t suite_ = kSuiteXChaCha;
  StageEnv env_;
  std::vector<security::GroupKey> keys_;
  Cipher own_;
  Cipher scratch_;
  std::uint64_t counter_ = 0;
  std::uint64_t clock_ = 0;
  std::vector<Peer> peers_;
  std::size_t used_ = 0;
  Peer* last_ = nullptr;
  std::array<Floor, kFloors> floors_{};
  std::size_t next_floor_ = 0;
};

}  // namespace

void register_security_aead(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "security.aead",
      .synopsis = "Security: every datagram authenticated (AEAD tag) and optionally encrypted under the group "
                  "key, with a per-sender replay window; failures dropped as drops.auth.",
      .notes = "Lowest stage but fault injection, so it covers every datagram the stages above send: data, "
               "fragments, batches, acks, NAKs, heartbeats, sequencer stamps. Appends the `auth` extension (26 "
               "bytes: suite, key id, 64-bit nonce counter, 16-byte tag) and seals; the tag covers the header, "
               "every extension and the payload (authenticate) or encrypts the payload with the rest as "
               "associated data (encrypt). Each sender incarnation uses a subkey derived from the group key "
               "with BLAKE2b over (suite, channel, sender, epoch, key id) and counts nonces up from a random start. "
               "`algorithm: auto` takes AES-256-GCM (OpenSSL) when the CPU has AES-NI and PCLMULQDQ, else "
               "XChaCha20-Poly1305 (libsodium); the counters uses_aes256gcm / uses_xchacha20poly1305 say which "
               "this member chose, "
               "and a member that cannot run a peer's algorithm drops its datagrams (wrong_suite): give mixed "
               "hosts `xchacha20-poly1305`. A datagram with no tag, an unknown key id, a seen or too old counter "
               "(1024-counter window) or a tag that does not verify is dropped (`drops.auth`) before any "
               "stage above sees it; state is kept only for senders whose datagrams verified. Makes "
               "checksum.crc32c redundant: the compiler leaves it out. Keys: docs/security.md.",
      .params = {{.name = "mode", .type = ParamType::string, .default_value = "encrypt",
                  .doc = "authenticate: the payload stays readable and is covered by the tag; encrypt: the "
                         "payload is encrypted too.",
                  .one_of = kModes},
                 {.name = "key_file", .type = ParamType::string, .default_value = "",
                  .doc = "The group key file: lines \"<id> <key>\", the last one sends, all are accepted."},
                 {.name = "algorithm", .type = ParamType::string, .default_value = "auto",
                  .doc = "The AEAD: auto (AES-256-GCM with AES-NI, else XChaCha20-Poly1305) or one of them.",
                  .one_of = kAlgorithms},
                 {.name = "max_senders", .type = ParamType::integer, .default_value = "256",
                  .doc = "Authenticated sender incarnations whose keys and replay windows are kept.",
                  .min = 4, .max = 65536}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<AeadStage>(); },
      .wire_bytes_per_datagram = wire::kExtHeaderBytes + kBodyBytes,
      .serves = "security",
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::auth),
                      .name = "auth",
                      .body_bytes = kBodyBytes,
                      .carried_on = "every datagram (security)",
                      .body = "u8 suite (bit 7 encrypted; 1 AES-256-GCM, 2 XChaCha20-Poly1305), u8 "
                              "key id, u64 nonce counter, 16-byte AEAD tag (26 bytes)"}},
  });
}

}  // namespace tmc
