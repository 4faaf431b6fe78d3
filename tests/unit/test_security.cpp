// The `security` property: key files, the compiler's placement of security.aead, and the
// stage itself between two pipelines (sealing, opening, tampering, replays, key rollover).
#include <doctest/doctest.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../support/key_files.hpp"
#include "../support/recording_sink.hpp"
#include "primitives/security/keyfile.hpp"
#include "tmc/manifest.hpp"

namespace {

using tmc::security::GroupKey;
using tmc::test::Endpoint;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

tmc::Plan secured_plan(const std::string& mode, const std::string& key_file) {
  return tmc::test::make_plan({tmc::test::stage("security.aead", {{"mode", mode}, {"key_file", key_file}})});
}

std::uint64_t counter(Endpoint& e, const std::string& name) { return e->counters().get(name); }

}  // namespace

TEST_CASE("key files: hex and base64 keys, comments, the last key sends") {
  const std::string text =
      "# rotation of 2026-12\n\n"
      "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
      "  7\tAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=  \n";
  std::vector<GroupKey> keys;
  std::string error;
  REQUIRE_MESSAGE(tmc::security::parse_key_file(text, "k.txt", keys, error), error);
  REQUIRE(keys.size() == 2);
  CHECK(keys[0].id == 1);
  CHECK(keys[1].id == 7);
  CHECK(keys[0].key == keys[1].key);  // the same bytes, written two ways
  CHECK(keys[0].key[31] == 0x1f);
}

TEST_CASE("key files: every malformed line is refused naming the file and line, never the key") {
  const std::string key = testkeys::hex_key(5);
  struct Case {
    std::string text;
    std::string says;
  };
  const Case cases[] = {
      {"", "k.txt: holds no key"},
      {"# only a comment\n", "holds no key"},
      {"1\n", "k.txt:1: expected \"<id> <key>\""},
      {"x " + key + "\n", "k.txt:1: key id must be an integer in 0..255"},
      {"256 " + key + "\n", "key id must be an integer in 0..255"},
      {"1 " + key.substr(0, 60) + "\n", "k.txt:1: key must be 32 bytes as 64 hex digits or 44 base64 characters, got 60"},
      {"1 " + key.substr(0, 63) + "g\n", "key must be 32 bytes"},
      {"1 " + key + "\n\n1 " + key + "\n", "k.txt:3: key id 1 is listed twice"},
      {"1 " + key + " extra\n", "nothing after the key"},
  };
  for (const Case& c : cases) {
    std::vector<GroupKey> keys;
    std::string error;
    CHECK_FALSE(tmc::security::parse_key_file(c.text, "k.txt", keys, error));
    CHECK_MESSAGE(contains(error, c.says), error);
    CHECK_MESSAGE(!contains(error, key.substr(0, 16)), error);
    CHECK(keys.empty());
  }
}

TEST_CASE("key files: a missing file, a directory and no file at all are named") {
  std::vector<GroupKey> keys;
  std::string error;
  CHECK_FALSE(tmc::security::load_key_file("/nonexistent/dir/group.keys", keys, error));
  CHECK_MESSAGE(contains(error, "key file /nonexistent/dir/group.keys: cannot open"), error);
  testkeys::KeyDir dir;
  CHECK_FALSE(tmc::security::load_key_file(dir.path(), keys, error));
  CHECK_MESSAGE(contains(error, "key file " + dir.path() + ": is a directory"), error);
  CHECK_FALSE(tmc::security::load_key_file("", keys, error));
  CHECK_MESSAGE(contains(error, "no key file given"), error);
}

TEST_CASE("compiler: security places security.aead lowest but faults and leaves the CRC out") {
  tmc::Manifest m = tmc::ManifestBuilder("sec").error_checking(true).security("encrypt").key_file("g.keys").build();
  m.reliability.enabled = true;
  m.faults.loss = 0.1;
  tmc::Plan plan;
  REQUIRE(tmc::compile(m, tmc::Capabilities::defaults(), tmc::Registry::builtin(), plan).is_ok());
  std::vector<std::string> kinds;
  for (const auto& s : plan.stages) kinds.push_back(s.kind);
  REQUIRE(kinds.size() >= 3);
  CHECK(kinds[kinds.size() - 2] == "security.aead");
  CHECK(kinds.back() == "faults.inject");
  CHECK(std::find(kinds.begin(), kinds.end(), "checksum.crc32c") == kinds.end());
  CHECK(plan.traits.error_checking);
  const tmc::PlannedStage& aead = plan.stages[kinds.size() - 2];
  CHECK(aead.params.at("mode") == "encrypt");
  CHECK(aead.params.at("key_file") == "g.keys");
  CHECK(contains(aead.reason, "checksum.crc32c is left out"));

  // 28 bytes of auth extension come off every datagram's payload room.
  tmc::Plan plain;
  tmc::Manifest none = m;
  none.security = "none";
  none.error_checking = false;
  REQUIRE(tmc::compile(none, tmc::Capabilities::defaults(), tmc::Registry::builtin(), plain).is_ok());
  CHECK(plain.transport.max_payload_bytes == plan.transport.max_payload_bytes + 28);
  for (const auto& s : plain.stages) CHECK(s.kind != "security.aead");

  // Declared crypto offload: the plan keeps the entry, placed on the NIC, and no bytes.
  tmc::Capabilities caps = tmc::Capabilities::defaults();
  caps.nic.crypto_offload = true;
  tmc::Plan off;
  REQUIRE(tmc::compile(m, caps, tmc::Registry::builtin(), off).is_ok());
  bool found = false;
  for (const auto& s : off.stages) {
    if (s.kind != "security.aead") continue;
    found = true;
    CHECK(s.placement == tmc::Placement::offload);
  }
  CHECK(found);
  CHECK(off.transport.max_payload_bytes == plain.transport.max_payload_bytes);
}

TEST_CASE("manifest: security takes none, authenticate or encrypt") {
  tmc::Manifest m;
  tmc::Diagnostics d;
  CHECK(tmc::parse_manifest("id: a\nsecurity: encrypt\nkey file: /etc/tmc/a.keys\n", "m.yaml", m, d));
  CHECK(m.security == "encrypt");
  CHECK(m.key_file == "/etc/tmc/a.keys");
  CHECK_FALSE(tmc::parse_manifest("id: a\nsecurity: rot13\n", "m.yaml", m, d));
  CHECK_MESSAGE(contains(d.to_string(), "'security' must be one of none, authenticate, encrypt"), d.to_string());
}

TEST_CASE("security.aead: without a key file the pipeline is refused naming the file") {
  tmc::PacketPool pool(2048, 16, 64);
  tmc::test::RecordingSink sink;
  std::unique_ptr<tmc::Pipeline> pl;
  const tmc::Status s = tmc::Pipeline::build(secured_plan("encrypt", "/nonexistent/g.keys"), tmc::Registry::builtin(),
                                             tmc::test::make_env(1), pool, sink, pl);
  CHECK_FALSE(s.is_ok());
  CHECK_MESSAGE(contains(s.message(), "key file /nonexistent/g.keys: cannot open"), s.message());
}

TEST_CASE("security.aead: encrypt hides the payload; tampering with any byte and replays are dropped") {
  testkeys::KeyDir dir;
  const std::string file = dir.write("g.keys", {{3, 1}});
  tmc::PacketPool pool(2048, 16, 256);
  Endpoint a(pool, secured_plan("encrypt", file), tmc::test::make_env(11));
  Endpoint b(pool, secured_plan("encrypt", file), tmc::test::make_env(22));
  const std::string secret = "attack at dawn, bring the whole fleet";
  a.send(secret);
  REQUIRE(a.sink.transmitted.size() == 1);
  const tmc::Packet& wire = *a.sink.transmitted[0];
  const std::string bytes(reinterpret_cast<const char*>(wire.data()), wire.len);
  CHECK_FALSE(contains(bytes, "dawn"));

  // Every single-byte change is caught.
  for (std::uint32_t i = 0; i < wire.len; ++i) {
    tmc::Packet* r = tmc::test::as_received(pool, wire);
    r->buf[i] ^= 0x01;
    b->receive(r, 0);
  }
  CHECK(b.sink.delivered.empty());
  // Changes to the header's length fields are malformed before the stage; the rest fail it.
  CHECK(counter(b, "security.failed") + counter(b, "security.wrong_suite") + counter(b, "security.unknown_key") +
            counter(b, "security.missing") >= wire.len - 26);

  b->receive(tmc::test::as_received(pool, wire), 0);
  REQUIRE(b.sink.payloads() == std::vector<std::string>{secret});
  const std::uint64_t replayed = counter(b, "security.replayed");  // counter 1 flipped to 0 above
  b->receive(tmc::test::as_received(pool, wire), 0);  // the same datagram again
  CHECK(b.sink.delivered.size() == 1);
  CHECK(counter(b, "security.replayed") == replayed + 1);
  CHECK(counter(b, "security.verified") == 1);
}

TEST_CASE("security.aead: every algorithm seals and opens any length, and an auto receiver opens each") {
  testkeys::KeyDir dir;
  const std::string file = dir.write("g.keys", {{4, 2}});
  const std::pair<std::string, std::string> algorithms[] = {{"aes-256-gcm", "security.uses_aes256gcm"},
                                                            {"xchacha20-poly1305", "security.uses_xchacha20poly1305"}};
  for (const auto& [algorithm, uses] : algorithms) {
    for (const std::string mode : {"encrypt", "authenticate"}) {
      CAPTURE(algorithm);
      CAPTURE(mode);
      const tmc::Plan plan = tmc::test::make_plan(
          {tmc::test::stage("security.aead", {{"mode", mode}, {"key_file", file}, {"algorithm", algorithm}})});
      tmc::PacketPool pool(2048, 16, 256);
      {
        tmc::test::RecordingSink probe_sink;
        std::unique_ptr<tmc::Pipeline> probe;
        const tmc::Status s =
            tmc::Pipeline::build(plan, tmc::Registry::builtin(), tmc::test::make_env(11), pool, probe_sink, probe);
        if (!s.is_ok()) {  // a host without AES-NI: the refusal names what is missing
          CHECK_MESSAGE(contains(s.message(), "AES-NI"), s.message());
          continue;
        }
      }
      Endpoint a(pool, plan, tmc::test::make_env(11));
      Endpoint b(pool, secured_plan(mode, file), tmc::test::make_env(22));  // algorithm: auto
      a->start(0);
      b->start(0);
      std::vector<std::string> sent;
      for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 100u, 1000u}) {
        std::string m(n, '\0');
        for (std::size_t i = 0; i < n; ++i) m[i] = static_cast<char>('a' + (i * 7 + n) % 26);
        sent.push_back(m);
        a.send(m);
      }
      CHECK(counter(a, uses) == 1);
      // One flipped payload byte of the 1000-byte message is refused; the untouched copy opens.
      const tmc::Packet& last = *a.sink.transmitted.back();
      tmc::Packet* bad = tmc::test::as_received(pool, last);
      bad->buf[bad->len - 500] ^= 0x20;
      b->receive(bad, 0);
      CHECK(counter(b, "security.failed") == 1);
      tmc::test::carry(a, b);
      CHECK(b.sink.payloads() == sent);
      CHECK(counter(b, "security.verified") == sent.size());
    }
  }
}

TEST_CASE("security.aead: AES-256-GCM datagrams are suite 1 as libsodium seals and opens them") {
  REQUIRE(sodium_init() >= 0);
  if (crypto_aead_aes256gcm_is_available() == 0) return;  // no AES-NI: the stage refuses the algorithm
  testkeys::KeyDir dir;
  const std::string file = dir.write("g.keys", {{5, 3}});
  std::vector<GroupKey> keys;
  std::string error;
  REQUIRE_MESSAGE(tmc::security::load_key_file(file, keys, error), error);
  const tmc::Plan plan = tmc::test::make_plan(
      {tmc::test::stage("security.aead", {{"mode", "encrypt"}, {"key_file", file}, {"algorithm", "aes-256-gcm"}})});
  tmc::PacketPool pool(2048, 16, 256);
  Endpoint a(pool, plan, tmc::test::make_env(11));
  Endpoint b(pool, secured_plan("encrypt", file), tmc::test::make_env(22));  // auto
  const std::string secret = "a payload long enough to span several AES blocks: 0123456789abcdef0123456789";
  a.send(secret);
  REQUIRE(a.sink.transmitted.size() == 1);
  const tmc::Packet& w = *a.sink.transmitted[0];
  std::uint8_t body_len = 0;
  const std::uint8_t* body_at = w.ext(tmc::wire::Ext::auth, &body_len);
  REQUIRE(body_at != nullptr);
  REQUIRE(body_len == 26);
  std::vector<std::uint8_t> d(w.data(), w.data() + w.len);
  const std::size_t body = static_cast<std::size_t>(body_at - w.data());
  const std::size_t head = w.payload_off - w.off;
  CHECK(d[body] == 0x81);  // encrypted, suite 1
  CHECK(d[body + 1] == 5);

  // The subkey as documented: BLAKE2b keyed with the group key over
  // "libTMC aead v1" || suite || channel || sender || epoch || key id.
  std::uint8_t info[28];
  std::memcpy(info, "libTMC aead v1", 14);
  info[14] = 1;
  tmc::wire::put_u32(info + 15, tmc::test::make_env(11).channel);
  tmc::wire::put_u32(info + 19, 11);
  tmc::wire::put_u32(info + 23, 1000);
  info[27] = 5;
  std::uint8_t subkey[32];
  crypto_generichash(subkey, sizeof subkey, info, sizeof info, keys.back().key.data(), keys.back().key.size());

  // libsodium opens what OpenSSL sealed: nonce = counter (big-endian) then 4 zero bytes, the
  // tag computed with its own bytes zeroed, header and extensions as associated data.
  std::uint8_t tag[16];
  std::memcpy(tag, &d[body + 10], 16);
  std::memset(&d[body + 10], 0, 16);
  std::uint8_t npub[12] = {};
  std::memcpy(npub, &d[body + 2], 8);
  std::vector<std::uint8_t> plain(d.size() - head);
  REQUIRE(crypto_aead_aes256gcm_decrypt_detached(plain.data(), nullptr, &d[head], d.size() - head, tag, d.data(),
                                                 head, npub, subkey) == 0);
  CHECK(std::string(plain.begin(), plain.end()) == secret);

  // And the stage opens what libsodium sealed, under the next counter.
  tmc::wire::put_u64(&d[body + 2], tmc::wire::get_u64(&d[body + 2]) + 1);
  std::memcpy(npub, &d[body + 2], 8);
  unsigned long long taglen = 0;
  REQUIRE(crypto_aead_aes256gcm_encrypt_detached(&d[head], tag, &taglen, plain.data(), plain.size(), d.data(), head,
                                                 nullptr, npub, subkey) == 0);
  std::memcpy(&d[body + 10], tag, 16);
  auto receive = [&](const std::vector<std::uint8_t>& bytes) {
    tmc::Packet* r = pool.alloc();
    REQUIRE(r != nullptr);
    r->reset_for_receive();
    std::memcpy(r->buf, bytes.data(), bytes.size());
    r->len = static_cast<std::uint32_t>(bytes.size());
    b->receive(r, 0);
  };
  receive(d);
  CHECK(b.sink.payloads() == std::vector<std::string>{secret});
  CHECK(counter(b, "security.verified") == 1);

  // Suite 3 (an algorithm this build does not have) is refused before any crypto.
  d[body] = 0x83;
  receive(d);
  CHECK(counter(b, "security.wrong_suite") == 1);
  CHECK(b.sink.delivered.size() == 1);
}

TEST_CASE("security.aead: AES-256-GCM peers forgotten for room are re-keyed when heard again") {
  testkeys::KeyDir dir;
  const std::string file = dir.write("g.keys", {{2, 6}});
  tmc::PacketPool pool(2048, 64, 256);
  const tmc::Plan plan = tmc::test::make_plan({tmc::test::stage(
      "security.aead", {{"mode", "encrypt"}, {"key_file", file}, {"algorithm", "auto"}, {"max_senders", "4"}})});
  Endpoint b(pool, plan, tmc::test::make_env(99));
  std::vector<std::unique_ptr<Endpoint>> senders;
  for (std::uint32_t s = 1; s <= 6; ++s) senders.push_back(std::make_unique<Endpoint>(pool, plan, tmc::test::make_env(s)));
  std::size_t sent = 0;
  for (int round = 0; round < 3; ++round) {
    for (auto& a : senders) {
      (*a).send("round " + std::to_string(round));
      ++sent;
      tmc::test::carry(*a, b);
    }
  }
  CHECK(b.sink.delivered.size() == sent);
  CHECK(counter(b, "security.verified") == sent);
  CHECK(counter(b, "security.senders_forgotten") == 3 * 6 - 4);  // round robin over 6 with room for 4
  CHECK(counter(b, "security.failed") == 0);
}

TEST_CASE("security.aead: authenticate keeps the payload readable and still refuses forgeries") {
  testkeys::KeyDir dir;
  const std::string file = dir.write("g.keys", {{1, 9}});
  tmc::PacketPool pool(2048, 16, 256);
  Endpoint a(pool, secured_plan("authenticate", file), tmc::test::make_env(11));
  Endpoint b(pool, secured_plan("authenticate", file), tmc::test::make_env(22));
  Endpoint enc(pool, secured_plan("encrypt", file), tmc::test::make_env(33));
  a.send("in the clear");
  REQUIRE(a.sink.transmitted.size() == 1);
  const tmc::Packet& wire = *a.sink.transmitted[0];
  CHECK(contains(std::string(reinterpret_cast<const char*>(wire.data()), wire.len), "in the clear"));
  enc->receive(tmc::test::as_received(pool, wire), 0);  // another mode: refused
  CHECK(enc.sink.delivered.empty());
  CHECK(counter(enc, "security.wrong_suite") == 1);
  b->receive(tmc::test::datagram(pool, 11, 1000, 0, "forged"), 0);  // no auth extension
  CHECK(counter(b, "security.missing") == 1);
  tmc::test::carry(a, b);
  CHECK(b.sink.payloads() == std::vector<std::string>{"in the clear"});
}

TEST_CASE("security.aead: a key file with the new key accepts both, and an old-only member is refused") {
  testkeys::KeyDir dir;
  const std::string old_only = dir.write("old.keys", {{1, 100}});
  const std::string overlap = dir.write("overlap.keys", {{1, 100}, {2, 200}});  // sends with 2
  const std::string new_only = dir.write("new.keys", {{2, 200}});
  tmc::PacketPool pool(2048, 16, 256);
  Endpoint old_sender(pool, secured_plan("encrypt", old_only), tmc::test::make_env(1));
  Endpoint mid(pool, secured_plan("encrypt", overlap), tmc::test::make_env(2));
  Endpoint fresh(pool, secured_plan("encrypt", new_only), tmc::test::make_env(3));
  old_sender.send("old");
  tmc::test::carry(old_sender, mid);
  CHECK(mid.sink.payloads() == std::vector<std::string>{"old"});
  old_sender.send("old again");
  tmc::test::carry(old_sender, fresh);
  CHECK(fresh.sink.delivered.empty());
  CHECK(counter(fresh, "security.unknown_key") == 1);
  mid.send("new");
  tmc::test::carry(mid, fresh);
  CHECK(fresh.sink.payloads() == std::vector<std::string>{"new"});
}

TEST_CASE("compiler: with security, group ordering is sequenced by a member, not the network sequencer") {
  tmc::Manifest m = tmc::ManifestBuilder("sec").group_ordering(true).security("authenticate").key_file("g").build();
  tmc::Capabilities caps = tmc::Capabilities::defaults();
  caps.network.sequencer = "10.0.0.9:4800";
  tmc::Plan plan;
  REQUIRE(tmc::compile(m, caps, tmc::Registry::builtin(), plan).is_ok());
  CHECK_FALSE(plan.traits.network_sequenced);
  bool noted = false;
  for (const auto& n : plan.notes) noted = noted || contains(n, "network sequencer 10.0.0.9:4800: not used");
  CHECK(noted);
}
