// The committed decode seeds (tests/fuzz/make_decode_seeds.py) must stay valid datagrams:
// a seed the decoder refuses would start the fuzzer in the wrong place.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "tmc/packet.hpp"

using namespace tmc;

TEST_CASE("fuzz seeds: every decode seed is a valid datagram on channel \"fuzz\"") {
  const std::filesystem::path dir = std::filesystem::path(TMC_SOURCE_DIR) / "tests/fuzz/seeds/decode";
  REQUIRE(std::filesystem::is_directory(dir));
  PacketPool pool(65536, 1, 4);
  int seeds = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    CAPTURE(entry.path().filename().string());
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Packet* p = pool.alloc();
    p->reset_for_receive();
    REQUIRE(bytes.size() <= p->cap);
    std::copy(bytes.begin(), bytes.end(), p->buf);
    p->len = static_cast<std::uint32_t>(bytes.size());
    CHECK(wire::decode(*p) == wire::DecodeError::none);
    CHECK(p->channel == wire::channel_hash("fuzz", 4));
    p->release();
    ++seeds;
  }
  CHECK(seeds >= 5);
}
