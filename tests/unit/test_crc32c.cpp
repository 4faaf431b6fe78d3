// checksum.crc32c: the CRC function (vectors, hardware == software) and the stage.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "../support/recording_sink.hpp"
#include "primitives/checksum/crc32c_impl.hpp"

using namespace tmc;
using namespace tmc::test;

TEST_CASE("crc32c: standard check value and known vectors") {
  const char* check = "123456789";
  CHECK(detail::crc32c_sw(check, 9) == 0xE3069283u);
  CHECK(detail::crc32c(check, 9) == 0xE3069283u);
  if (detail::crc32c_hw_available()) CHECK(detail::crc32c_hw(check, 9) == 0xE3069283u);
  CHECK(detail::crc32c_sw(check, 0) == 0);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, and 32 bytes of 0xFF.
  std::uint8_t zeros[32] = {};
  std::uint8_t ones[32];
  std::memset(ones, 0xFF, sizeof ones);
  CHECK(detail::crc32c_sw(zeros, 32) == 0x8A9136AAu);
  CHECK(detail::crc32c_sw(ones, 32) == 0x62A8AB43u);
  CHECK(detail::crc32c(zeros, 32) == 0x8A9136AAu);
  CHECK(detail::crc32c(ones, 32) == 0x62A8AB43u);
}

TEST_CASE("crc32c: hardware equals software on random buffers of every length 0..300") {
  std::mt19937_64 rng(7);
  std::vector<std::uint8_t> buf(320);
  for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
  for (std::size_t n = 0; n <= 300; ++n) {
    for (std::size_t shift : {0u, 1u, 3u, 7u}) {  // misaligned starts too
      const std::uint32_t sw = detail::crc32c_sw(buf.data() + shift, n);
      CHECK(detail::crc32c(buf.data() + shift, n) == sw);
      if (detail::crc32c_hw_available()) CHECK(detail::crc32c_hw(buf.data() + shift, n) == sw);
    }
    // Continuing a CRC over a split buffer equals one pass.
    const std::size_t cut = n / 3;
    CHECK(detail::crc32c_sw(buf.data() + cut, n - cut, detail::crc32c_sw(buf.data(), cut)) ==
          detail::crc32c_sw(buf.data(), n));
    CHECK(detail::crc32c(buf.data() + cut, n - cut, detail::crc32c(buf.data(), cut)) ==
          detail::crc32c(buf.data(), n));
  }
  MESSAGE("SSE4.2 crc32 available: " << detail::crc32c_hw_available());
}

namespace {

struct Pair {
  PacketPool pool{2048, 16, 1024};
  Endpoint tx;
  Endpoint rx;
  explicit Pair(const char* require = "false")
      : tx(pool, make_plan({stage("checksum.crc32c")}), make_env(1)),
        rx(pool, make_plan({stage("checksum.crc32c", {{"require", require}})}), make_env(2)) {}
};

}  // namespace

TEST_CASE("checksum.crc32c: the sender appends a big-endian trailer; the receiver verifies and strips it") {
  Pair t;
  t.tx.send("hello");
  REQUIRE(t.tx.sink.transmitted.size() == 1);
  const Packet* p = t.tx.sink.transmitted[0];
  CHECK((p->flags & wire::kFlagCrc) != 0);
  CHECK((wire::get_u16(p->data() + 4) & wire::kFlagCrc) != 0);  // on the wire, too
  CHECK(p->len == wire::kBaseHeaderBytes + 5 + wire::kTrailerBytes);
  CHECK(wire::get_u32(p->data() + p->len - 4) == detail::crc32c(p->data(), p->len - 4));
  CHECK(t.tx->counters().get("checksum.sealed") == 1);

  carry(t.tx, t.rx);
  REQUIRE(t.rx.sink.delivered.size() == 1);
  const Packet* d = t.rx.sink.delivered[0];
  CHECK(t.rx.sink.payloads() == std::vector<std::string>{"hello"});
  CHECK(d->len == wire::kBaseHeaderBytes + 5);  // trailer stripped
  CHECK(t.rx->counters().get("checksum.verified") == 1);
}

TEST_CASE("checksum.crc32c: one flipped bit anywhere (header, extension, payload, trailer) is caught") {
  PacketPool pool(2048, 16, 1024);
  const Plan plan = make_plan({stage("ordering.seq"), stage("checksum.crc32c")});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  tx.send("payload bytes");
  REQUIRE(tx.sink.transmitted.size() == 1);
  const Packet& sent = *tx.sink.transmitted[0];
  // Byte offsets that keep the datagram decodable, so only the CRC can notice: the sender
  // id (header), the seq extension's body, the payload, and the trailer.
  const std::uint32_t spots[] = {12, 15, 26, 33, 34, 40, sent.len - 4, sent.len - 1};
  std::uint64_t expected_drops = 0;
  for (std::uint32_t at : spots) {
    for (int bit = 0; bit < 8; ++bit) {
      Packet* r = as_received(pool, sent);
      r->buf[at] = static_cast<std::uint8_t>(r->buf[at] ^ (1u << bit));
      rx->receive(r, 0);
      ++expected_drops;
    }
  }
  CHECK(rx.sink.delivered.empty());
  CHECK(rx->drops(DropReason::checksum) == expected_drops);
  CHECK(rx->counters().get("checksum.mismatch") == expected_drops);
  // The untouched datagram still passes.
  rx->receive(as_received(pool, sent), 0);
  CHECK(rx.sink.payloads() == std::vector<std::string>{"payload bytes"});
}

TEST_CASE("checksum.crc32c: a packet without a CRC passes unless require is true") {
  PacketPool pool(2048, 16, 1024);
  Endpoint plain(pool, make_plan({}), make_env(1));
  Endpoint lenient(pool, make_plan({stage("checksum.crc32c")}), make_env(2));
  Endpoint strict(pool, make_plan({stage("checksum.crc32c", {{"require", "true"}})}), make_env(3));
  plain.send("no crc");
  REQUIRE(plain.sink.transmitted.size() == 1);
  lenient->receive(as_received(pool, *plain.sink.transmitted[0]), 0);
  strict->receive(as_received(pool, *plain.sink.transmitted[0]), 0);
  CHECK(lenient.sink.payloads() == std::vector<std::string>{"no crc"});
  CHECK(lenient->counters().get("checksum.unchecked") == 1);
  CHECK(strict.sink.delivered.empty());
  CHECK(strict->drops(DropReason::missing_checksum) == 1);
  CHECK(strict->counters().get("checksum.missing") == 1);
}

TEST_CASE("checksum.crc32c: without the stage a channel pays zero bytes; control kinds are covered too") {
  PacketPool pool(2048, 16, 1024);
  Endpoint plain(pool, make_plan({}), make_env(1));
  plain.send("abc");
  CHECK(plain.sink.transmitted[0]->len == wire::kBaseHeaderBytes + 3);
  Endpoint crc(pool, make_plan({stage("checksum.crc32c")}), make_env(2));
  Packet* p = pool.alloc();
  p->reset_for_send(0);
  p->kind = wire::Kind::ack;
  crc->send(p, 0);
  REQUIRE(crc.sink.transmitted.size() == 1);
  CHECK(crc.sink.transmitted[0]->len == wire::kBaseHeaderBytes + wire::kTrailerBytes);
  Endpoint rx(pool, make_plan({stage("checksum.crc32c", {{"require", "true"}})}), make_env(3));
  carry(crc, rx);
  CHECK(rx.sink.delivered.size() == 1);
}

TEST_CASE("checksum.crc32c: a packet already sealed above it gets its header flag patched") {
  // faults.inject with corrupt: 1 seals the packet before flipping a bit, above the CRC
  // stage here; the CRC then covers the corrupted bytes, so this is only about framing:
  // the receiver must still find a consistent trailer.
  PacketPool pool(2048, 16, 1024);
  Endpoint tx(pool, make_plan({stage("faults.inject", {{"corrupt", "1"}}), stage("checksum.crc32c")}), make_env(1));
  Endpoint rx(pool, make_plan({stage("checksum.crc32c", {{"require", "true"}})}), make_env(2));
  for (int i = 0; i < 50; ++i) tx.send("sealed early");
  carry(tx, rx);
  // Every datagram whose corrupted bit left the header decodable verified fine.
  CHECK(rx->drops(DropReason::checksum) == 0);
  CHECK(rx->drops(DropReason::missing_checksum) == 0);
  CHECK(rx.sink.delivered.size() + rx->drops(DropReason::malformed) + rx->drops(DropReason::foreign_channel) +
            rx->counter(PipelineCounter::own_packets) ==
        50);
}

TEST_CASE("checksum.crc32c: no room for the trailer drops the packet on send") {
  PacketPool pool(512, 4, 16);
  Endpoint ep(pool, make_plan({stage("checksum.crc32c")}), make_env(1));
  Packet* p = pool.alloc();
  p->reset_for_send(512 - kHeadroom);  // payload runs to the end of the buffer
  ep->send(p, 0);
  CHECK(ep.sink.transmitted.empty());
  CHECK(ep->counters().get("checksum.no_room") == 1);
  CHECK(ep->drops(DropReason::too_large) == 1);
}
