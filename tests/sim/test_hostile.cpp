// Hostile senders without keys, against the compiler's reliable, ordered channel (three
// members, loss up to 4 %). An attacker who can put any datagram on the network, but holds
// no member's key, in every seed:
//   - floods each receiver with well-formed data datagrams (copies of a member's) under
//     many random sender ids, more than reliability.arq has receive slots;
//   - replays every datagram a member sent, after the flood;
//   - forges a datagram under a member's id and epoch whose sequence number and trailing
//     edge are 2^20 ahead, while that member is still sending.
// With the members named in the manifest (a closed view) nothing forged is delivered;
// without (an open view) strangers' streams are delivered as theirs. Either way every
// member's messages reach every other member exactly once, in the order sent.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <span>

#include "primitives/reliability/ack_format.hpp"
#include "sim_util.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

// 200 seeds in CI (about 4 s of CPU for both scenarios); 1,000 pass: TMC_SIM_SEEDS=1000.
constexpr std::uint64_t kSeeds = 200;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::size_t kMembers = 3;
constexpr std::uint32_t kCount = 40;
constexpr std::uint32_t kFloodIds = 150;  // > the 64 receive slots of reliability.arq

tmc::Plan compiled(const std::string& yaml, std::size_t self) {
  return simtest::compile_plan(yaml, "m" + std::to_string(self));
}

// Where the reliable extension's body sits in a datagram (0: none). Datagrams here are
// unchecksummed, so an attacker can rewrite any field.
std::size_t rel_offset(const std::vector<std::uint8_t>& bytes) {
  static tmc::PacketPool pool(2048, 1, 1);
  tmc::Packet* p = pool.alloc();
  p->reset_for_receive();
  std::memcpy(p->buf, bytes.data(), bytes.size());
  p->len = static_cast<std::uint32_t>(bytes.size());
  std::size_t off = 0;
  if (tmc::wire::decode(*p) == tmc::wire::DecodeError::none && p->kind == tmc::wire::Kind::data) {
    std::uint8_t len = 0;
    if (const std::uint8_t* b = p->ext(tmc::wire::Ext::rel, &len); b != nullptr && len == tmc::detail::kRelBodyBytes) {
      off = static_cast<std::size_t>(b - p->buf);
    }
  }
  p->release();
  return off;
}

constexpr std::size_t kSenderOffset = 12;  // base header: the sender id (wire.hpp)

void scenario(bool closed, std::uint64_t seed, Check& c, const std::function<void(Network&)>& attach) {
  // Loss, duplication, reordering and delay, but no corruption: the channel has no
  // checksum here (an attacker who can forge can compute one anyway).
  tmc::sim::LinkParams link = simtest::hostile_link(0.01 * static_cast<double>(seed % 5));
  link.corrupt = 0.0;
  Network net(simtest::config(seed, link));
  attach(net);
  const std::string yaml = std::string("id: sim-hostile\n") + (closed ? "members: [m0, m1, m2]\n" : "") +
                           "reliability: true\npoint-to-point ordering: strict\n";
  for (std::size_t i = 0; i < kMembers; ++i) net.add_member(compiled(yaml, i));
  // Everything member 0 sends that carries a reliable sequence number, as sent.
  std::vector<std::vector<std::uint8_t>> captured;
  net.set_tap([&captured](std::size_t from, std::span<const std::uint8_t> bytes) {
    if (from == 0 && captured.size() < 4096) captured.emplace_back(bytes.begin(), bytes.end());
  });
  simtest::schedule_burst(net, simtest::all(net), kCount, 300 * kMs, 20 * kMs, seed);
  tmc::sim::Rng rng(seed ^ 0xBAD5EED);
  // The forged jump: member 0's latest reliable datagram, 2^20 ahead, mid-stream.
  net.schedule(300 * kMs + kCount / 2 * 20 * kMs, [&] {
    for (auto it = captured.rbegin(); it != captured.rend(); ++it) {
      const std::size_t off = rel_offset(*it);
      if (off == 0) continue;
      std::vector<std::uint8_t> forged = *it;
      const std::uint64_t next = tmc::detail::decode_rel(forged.data() + off, tmc::detail::kRelBodyBytes).value() +
                                 (std::uint64_t{1} << 20);
      tmc::detail::encode_rel(forged.data() + off, tmc::detail::RelBody{next, next});
      for (std::size_t r = 1; r < kMembers; ++r) net.inject(net.now_ns(), 0, r, forged);
      return;
    }
  });
  // After the burst: the flood, then the replay of everything member 0 sent.
  const std::uint64_t after = 300 * kMs + kCount * 20 * kMs + 500 * kMs;
  net.schedule(after, [&] {
    std::vector<std::size_t> rel;
    for (std::size_t i = 0; i < captured.size(); ++i) {
      if (rel_offset(captured[i]) != 0) rel.push_back(i);
    }
    if (rel.empty()) return;
    for (std::uint32_t k = 0; k < kFloodIds; ++k) {
      std::vector<std::uint8_t> d = captured[rel[rng.between(0, rel.size() - 1)]];
      tmc::wire::put_u32(d.data() + kSenderOffset, static_cast<std::uint32_t>(rng.next()) | 1u);
      for (std::size_t r = 1; r < kMembers; ++r) net.inject(net.now_ns() + k * 1000, 0, r, d);
    }
    for (std::size_t i = 0; i < captured.size(); ++i) {
      for (std::size_t r = 1; r < kMembers; ++r) net.inject(net.now_ns() + 10 * kMs + i * 1000, 0, r, captured[i]);
    }
  });
  c.expect(net.run_until(after + 10'000 * kMs), "event limit hit");

  std::vector<std::uint32_t> ids(kMembers);
  for (std::size_t s = 0; s < kMembers; ++s) ids[s] = net.sender_id(s);
  for (std::size_t r = 1; r < kMembers; ++r) {
    std::vector<std::int64_t> last(kMembers, -1);
    std::vector<std::uint32_t> got(kMembers, 0);
    for (const auto& d : net.deliveries(r)) {
      std::size_t s = kMembers;
      for (std::size_t i = 0; i < kMembers; ++i) {
        if (ids[i] == d.sender) s = i;
      }
      if (s == kMembers) {
        c.expect(!closed, "member ", r, " delivered a datagram of sender id ", d.sender, " outside the named members");
        continue;
      }
      const auto p = simtest::parse_payload(d.payload, seed);
      c.expect(p.ok && p.member == s, "member ", r, " delivered a bad payload under member ", s, "'s id");
      if (!p.ok) continue;
      c.expect(static_cast<std::int64_t>(p.k) > last[s], "member ", r, " delivered message ", p.k, " of member ", s,
               " after message ", last[s], " (twice or out of order)");
      last[s] = std::max<std::int64_t>(last[s], p.k);
      ++got[s];
    }
    for (std::size_t s = 0; s < kMembers; ++s) {
      if (s == r) continue;
      bool any_failed = false;
      for (const auto& e : net.events(s)) any_failed = any_failed || e.type == tmc::EventType::delivery_failed;
      c.expect(any_failed || got[s] == kCount, "member ", r, " delivered ", got[s], " of ", kCount, " messages of member ",
               s, " and none failed");
    }
    c.expect(net.counters(r).get("reliability.beyond_window") >= 1, "member ", r, " never saw the forged jump");
  }
}

}  // namespace

TEST_CASE("sim: hostile senders against named members: floods and replays and a forged jump deliver nothing forged") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) { scenario(true, seed, c, attach); });
}

TEST_CASE("sim: hostile senders against an open group: members' messages still arrive exactly once and in order") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) { scenario(false, seed, c, attach); });
}
