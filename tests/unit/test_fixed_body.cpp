// Fixed-layout extension bodies (src/primitives/common/fixed_body.hpp): byte layout, round
// trips, refusal of wrong lengths; and the bodies built on it keep their documented layout.
#include <doctest/doctest.h>

#include <array>

#include "primitives/common/fixed_body.hpp"
#include "primitives/flow/flow_format.hpp"
#include "primitives/reliability/ack_format.hpp"

using namespace tmc;
using namespace tmc::detail;

namespace {

struct Mixed {
  std::uint8_t a = 0;
  std::uint16_t b = 0;
  std::uint32_t c = 0;
  std::uint64_t d = 0;
  std::uint32_t not_on_wire = 0;
};
// Wire order differs from declaration order on purpose.
using MixedCodec = FixedBody<Mixed, &Mixed::d, &Mixed::a, &Mixed::c, &Mixed::b>;
static_assert(MixedCodec::kBytes == 15);

}  // namespace

TEST_CASE("fixed body: fields go big-endian in the order named, nothing else") {
  Mixed m;
  m.a = 0xA1;
  m.b = 0xB1B2;
  m.c = 0xC1C2C3C4;
  m.d = 0xD1D2D3D4D5D6D7D8;
  m.not_on_wire = 77;
  std::array<std::uint8_t, 16> out{};
  out.fill(0xEE);
  MixedCodec::encode(out.data(), m);
  const std::array<std::uint8_t, 16> want{0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8,
                                          0xA1, 0xC1, 0xC2, 0xC3, 0xC4, 0xB1, 0xB2, 0xEE};
  CHECK(out == want);  // the byte after the body is untouched

  const auto back = MixedCodec::decode(out.data(), MixedCodec::kBytes);
  REQUIRE(back.has_value());
  CHECK(back->a == m.a);
  CHECK(back->b == m.b);
  CHECK(back->c == m.c);
  CHECK(back->d == m.d);
  CHECK(back->not_on_wire == 0);  // not part of the layout: value-initialised
}

TEST_CASE("fixed body: a null body or any other length is refused") {
  std::array<std::uint8_t, 32> buf{};
  CHECK_FALSE(MixedCodec::decode(nullptr, MixedCodec::kBytes).has_value());
  for (std::size_t len = 0; len < buf.size(); ++len) {
    CHECK(MixedCodec::decode(buf.data(), len).has_value() == (len == MixedCodec::kBytes));
  }
}

TEST_CASE("fixed body: reliability's ack and NACK and flow's advertisement keep their layouts") {
  AckBody a;
  a.target_sender = 0x01020304;
  a.target_epoch = 0x05060708;
  a.cumulative = 0x1112131415161718;
  a.sack = 0x2122232425262728;
  std::array<std::uint8_t, kAckBodyBytes> ab{};
  encode_ack(ab.data(), a);
  CHECK(wire::get_u32(ab.data()) == a.target_sender);
  CHECK(wire::get_u32(ab.data() + 4) == a.target_epoch);
  CHECK(wire::get_u64(ab.data() + 8) == a.cumulative);
  CHECK(wire::get_u64(ab.data() + 16) == a.sack);
  const auto a2 = decode_ack(ab.data(), ab.size());
  REQUIRE(a2.has_value());
  CHECK(a2->sack == a.sack);
  CHECK_FALSE(decode_ack(ab.data(), ab.size() - 1).has_value());

  NackBody n;
  n.target_sender = 9;
  n.target_epoch = 10;
  n.first = 0x0102030405060708;
  n.count = 0xA0B0C0D0;
  std::array<std::uint8_t, kNackBodyBytes> nb{};
  encode_nack(nb.data(), n);
  CHECK(wire::get_u64(nb.data() + 8) == n.first);
  CHECK(wire::get_u32(nb.data() + 16) == n.count);
  const auto n2 = decode_nack(nb.data(), nb.size());
  REQUIRE(n2.has_value());
  CHECK(n2->count == n.count);
  CHECK(n2->first == n.first);
  CHECK_FALSE(decode_nack(ab.data(), ab.size()).has_value());  // an ack's length

  FlowBody f;
  f.target_sender = 3;
  f.target_epoch = 4;
  f.consumed_bytes = 0xFFFFFFFF00000001;
  f.window_bytes = 65536;
  std::array<std::uint8_t, kFlowBodyBytes> fb{};
  encode_flow(fb.data(), f);
  CHECK(wire::get_u32(fb.data()) == 3);
  CHECK(wire::get_u32(fb.data() + 4) == 4);
  CHECK(wire::get_u64(fb.data() + 8) == f.consumed_bytes);
  CHECK(wire::get_u32(fb.data() + 16) == 65536);
  const auto f2 = decode_flow(fb.data(), fb.size());
  REQUIRE(f2.has_value());
  CHECK(f2->consumed_bytes == f.consumed_bytes);
  CHECK(f2->window_bytes == f.window_bytes);
}
