// The wire codec: round trips, and refusal of every kind of malformed datagram.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "tmc/packet.hpp"

using namespace tmc;

namespace {

Packet* make_sealed(PacketPool& pool, const char* payload, std::uint16_t flags = 0) {
  Packet* p = pool.alloc();
  const auto n = static_cast<std::uint32_t>(std::strlen(payload));
  p->reset_for_send(n);
  std::memcpy(p->payload(), payload, n);
  p->flags = flags;
  p->channel = 0xC0FFEE;
  p->sender = 7;
  p->epoch = 99;
  std::uint8_t* body = p->push_ext(wire::Ext::seq, 8);
  REQUIRE(body != nullptr);
  wire::put_u64(body, 42);
  p->seal();
  return p;
}

// Copy a sealed packet's bytes into a fresh receive-path packet.
Packet* as_received(PacketPool& pool, const Packet& sent) {
  Packet* r = pool.alloc();
  r->reset_for_receive();
  std::memcpy(r->buf, sent.data(), sent.len);
  r->len = sent.len;
  return r;
}

}  // namespace

TEST_CASE("wire: a sealed packet decodes to the same fields, extension and payload") {
  PacketPool pool(2048, 8, 64);
  Packet* s = make_sealed(pool, "hello");
  CHECK(s->len == wire::kBaseHeaderBytes + 2 + 8 + 5);
  Packet* r = as_received(pool, *s);
  REQUIRE(wire::decode(*r) == wire::DecodeError::none);
  CHECK(r->channel == 0xC0FFEE);
  CHECK(r->sender == 7);
  CHECK(r->epoch == 99);
  CHECK(r->payload_len == 5);
  CHECK(std::memcmp(r->payload(), "hello", 5) == 0);
  std::uint8_t elen = 0;
  const std::uint8_t* body = r->ext(wire::Ext::seq, &elen);
  REQUIRE(body != nullptr);
  CHECK(elen == 8);
  CHECK(wire::get_u64(body) == 42);
  CHECK(r->ext(wire::Ext::fragment) == nullptr);
  s->release();
  r->release();
  CHECK(pool.in_use() == 0);
}

TEST_CASE("wire: a best-effort packet carries no extension bytes") {
  PacketPool pool(2048, 8, 64);
  Packet* p = pool.alloc();
  p->reset_for_send(3);
  std::memcpy(p->payload(), "abc", 3);
  p->seal();
  CHECK(p->len == wire::kBaseHeaderBytes + 3);
  p->release();
}

TEST_CASE("wire: decode refuses malformed datagrams, naming why") {
  PacketPool pool(2048, 8, 64);
  Packet* s = make_sealed(pool, "payload");
  auto check = [&](auto mutate, wire::DecodeError want) {
    Packet* r = as_received(pool, *s);
    mutate(*r);
    CHECK(wire::decode(*r) == want);
    r->release();
  };
  check([](Packet& r) { r.len = 10; }, wire::DecodeError::too_short);
  check([](Packet& r) { r.buf[0] = 'X'; }, wire::DecodeError::bad_magic);
  check([](Packet& r) { r.buf[2] = 2; }, wire::DecodeError::bad_version);
  check([](Packet& r) { r.buf[3] = 77; }, wire::DecodeError::bad_kind);
  check([](Packet& r) { r.buf[4] = 0x80; }, wire::DecodeError::bad_flags);
  check([](Packet& r) { r.len -= 1; }, wire::DecodeError::bad_length);
  check([](Packet& r) { r.buf[23] += 1; }, wire::DecodeError::bad_length);          // payload_len
  check([](Packet& r) { r.buf[wire::kBaseHeaderBytes + 1] = 200; }, wire::DecodeError::bad_extension);
  check([](Packet& r) { r.buf[wire::kBaseHeaderBytes] = 0; }, wire::DecodeError::bad_extension);
  check([](Packet& r) { wire::put_u32(r.buf + 20, 0xFFFFFFF0u); }, wire::DecodeError::bad_length);
  s->release();
}

TEST_CASE("wire: random garbage never decodes out of bounds and mostly fails") {
  PacketPool pool(2048, 8, 64);
  std::mt19937_64 rng(1234);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Packet* r = pool.alloc();
    r->reset_for_receive();
    r->len = static_cast<std::uint32_t>(rng() % 200);
    for (std::uint32_t b = 0; b < r->len; ++b) r->buf[b] = static_cast<std::uint8_t>(rng());
    if (i % 2 == 0 && r->len >= 4) {  // half of them with a valid magic and version
      wire::put_u16(r->buf, wire::kMagic);
      r->buf[2] = wire::kVersion;
    }
    if (wire::decode(*r) == wire::DecodeError::none) {
      ++accepted;
      CHECK(r->payload_off + r->payload_len <= r->len);
    }
    r->release();
  }
  CHECK(accepted < 100);
}

TEST_CASE("pool: bounded, reuses buffers, clone copies live bytes") {
  PacketPool pool(512, 2, 4);
  Packet* a = pool.alloc();
  Packet* b = pool.alloc();
  Packet* c = pool.alloc();
  Packet* d = pool.alloc();
  REQUIRE(d != nullptr);
  CHECK(pool.alloc() == nullptr);  // hard cap
  a->reset_for_send(4);
  std::memcpy(a->payload(), "abcd", 4);
  a->seal();
  b->release();
  Packet* e = pool.clone(*a);
  REQUIRE(e != nullptr);
  CHECK(e->len == a->len);
  CHECK(std::memcmp(e->data(), a->data(), a->len) == 0);
  for (Packet* p : {a, c, d, e}) p->release();
  CHECK(pool.in_use() == 0);
}
