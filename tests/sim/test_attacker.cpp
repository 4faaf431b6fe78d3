// Attackers against a secured channel (`security: encrypt`): three members m0..m2 hold the
// group key and run a reliable, strictly ordered channel whose messages are fragmented;
// links lose, duplicate, reorder and corrupt datagrams. A fourth process, x, holds no key
// and runs the same channel id without security, sending its own messages (so data,
// heartbeats and acks under its name). Meanwhile an attacker who sees every datagram the
// members send, and can send from any member's address, in every seed:
//   - replays captured datagrams of every kind, during the traffic and after it;
//   - tampers with them (one byte changed anywhere) and truncates them;
//   - forges them: a member's id put on another's datagram, a new epoch, a new nonce
//     counter, another key id;
//   - floods each member with copies under hundreds of random sender ids.
// Exactly-once delivery in order holds between the members, nothing x or the attacker sent
// is ever delivered or let into a view, and x never reads a member's message.
//
// A second scenario rolls the group's key: m0 and m1 restart holding only the new key while
// m2 keeps the old one, and m2 drops out of their views (and they out of its).
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <span>

#include "sim_util.hpp"
#include "../support/key_files.hpp"
#include "tmc/manifest.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

// 200 seeds in CI; 1,000 pass: TMC_SIM_SEEDS=1000.
constexpr std::uint64_t kSeeds = 200;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::size_t kMembers = 3;
constexpr std::size_t kOutsider = 3;
constexpr std::uint32_t kCount = 30;
constexpr std::size_t kFloodIds = 300;

tmc::Plan compiled(const std::string& yaml, const std::string& name) {
  return simtest::compile_plan(yaml, name);
}

/// Message k of member m: [k: u32][m: u8][filler], 16..4016 bytes, so many are fragmented.
std::vector<std::uint8_t> payload(std::size_t m, std::uint32_t k, std::uint64_t salt) {
  std::uint64_t state = salt ^ (std::uint64_t{m} << 40) ^ (std::uint64_t{k} << 8) ^ 0xA77AC4;
  const std::size_t len = 16 + tmc::sim::splitmix64(state) % 4000;
  std::vector<std::uint8_t> out(len);
  tmc::wire::put_u32(out.data(), k);
  out[4] = static_cast<std::uint8_t>(m);
  for (std::size_t i = 5; i < len; ++i) out[i] = static_cast<std::uint8_t>(tmc::sim::splitmix64(state));
  return out;
}

bool is_member_payload(const std::vector<std::uint8_t>& p, std::uint64_t salt, std::size_t& m, std::uint32_t& k) {
  if (p.size() < 16 || p[4] >= kMembers) return false;
  m = p[4];
  k = tmc::wire::get_u32(p.data());
  return k < kCount && payload(m, k, salt) == p;
}

constexpr std::size_t kSenderOffset = 12;  // base header: sender id, then epoch (wire.hpp)
constexpr std::size_t kEpochOffset = 16;

/// Where the auth extension's body sits in a datagram (0: none).
std::size_t auth_offset(const std::vector<std::uint8_t>& bytes) {
  static tmc::PacketPool pool(70000, 1, 1);
  tmc::Packet* p = pool.alloc();
  p->reset_for_receive();
  std::memcpy(p->buf, bytes.data(), bytes.size());
  p->len = static_cast<std::uint32_t>(bytes.size());
  std::size_t off = 0;
  if (tmc::wire::decode(*p) == tmc::wire::DecodeError::none) {
    if (const std::uint8_t* b = p->ext(tmc::wire::Ext::auth)) off = static_cast<std::size_t>(b - p->buf);
  }
  p->release();
  return off;
}

/// One hostile datagram made from a captured one, by a rule drawn from `rng`.
std::vector<std::uint8_t> mutate(std::vector<std::uint8_t> d, tmc::sim::Rng& rng, const std::vector<std::uint32_t>& ids) {
  const std::size_t auth = auth_offset(d);
  switch (rng.between(0, 6)) {
    case 0:  // tamper: one byte anywhere
      d[rng.between(0, d.size() - 1)] ^= static_cast<std::uint8_t>(rng.between(1, 255));
      break;
    case 1:  // truncate
      d.resize(rng.between(0, d.size() - 1));
      break;
    case 2:  // another member's name on it
      tmc::wire::put_u32(d.data() + kSenderOffset, ids[rng.between(0, ids.size() - 1)]);
      break;
    case 3:  // a forged restart
      tmc::wire::put_u32(d.data() + kEpochOffset, static_cast<std::uint32_t>(rng.next()) | 1u);
      break;
    case 4:  // a fresh nonce counter (no replay-window help)
      if (auth != 0) tmc::wire::put_u64(d.data() + auth + 2, rng.next() >> 1);
      break;
    case 5:  // another key id
      if (auth != 0) d[auth + 1] = static_cast<std::uint8_t>(d[auth + 1] + rng.between(1, 255));
      break;
    default:  // the payload changed under an intact header (a chosen-ciphertext try)
      if (d.size() > 100) d[d.size() - 1 - rng.between(0, 50)] ^= 0x5a;
      break;
  }
  return d;
}

void attacked(std::uint64_t seed, Check& c, const std::function<void(Network&)>& attach) {
  testkeys::KeyDir keys;
  const std::string key_file = keys.write("group.keys", {{1, seed}});
  Network net(simtest::config(seed, simtest::hostile_link(0.01 * static_cast<double>(seed % 5))));
  attach(net);
  const std::string channel = "id: sim-attacked\nreliability: true\npoint-to-point ordering: strict\n"
                              "max message bytes: 8000\n";
  const std::string secured = channel + "security: encrypt\nkey file: " + key_file + "\n";
  for (std::size_t i = 0; i < kMembers; ++i) net.add_member(compiled(secured, "m" + std::to_string(i)));
  net.add_member(compiled(channel, "x"));  // the same channel without the key

  std::vector<std::uint32_t> ids(kMembers);
  for (std::size_t s = 0; s < kMembers; ++s) ids[s] = net.sender_id(s);
  std::vector<std::vector<std::uint8_t>> captured;
  net.set_tap([&captured](std::size_t from, std::span<const std::uint8_t> bytes) {
    if (from < kMembers && captured.size() < 8192) captured.emplace_back(bytes.begin(), bytes.end());
  });
  const std::uint64_t start = 300 * kMs;
  for (std::uint32_t k = 0; k < kCount; ++k) {
    for (std::size_t s = 0; s <= kOutsider; ++s) {
      net.schedule_send(start + k * 20 * kMs + s * 7, s, payload(s, k, seed));
    }
  }
  tmc::sim::Rng rng(seed ^ 0xA77AC4ED);
  auto attack = [&](std::uint64_t at, std::size_t n, bool replay_only) {
    net.schedule(at, [&, n, replay_only] {
      if (captured.empty()) return;
      for (std::size_t i = 0; i < n; ++i) {
        std::vector<std::uint8_t> d = captured[rng.between(0, captured.size() - 1)];
        if (!replay_only) d = mutate(std::move(d), rng, ids);
        const std::size_t to = rng.between(0, kMembers - 1);
        const std::size_t from = rng.between(0, kMembers - 1);  // any member's address
        net.inject(net.now_ns() + i * 20'000, from, to, std::move(d));
      }
    });
  };
  for (std::uint32_t k = 2; k < kCount; k += 4) {
    attack(start + k * 20 * kMs + 3 * kMs, 40, true);
    attack(start + k * 20 * kMs + 9 * kMs, 40, false);
  }
  const std::uint64_t after = start + kCount * 20 * kMs + 500 * kMs;
  net.schedule(after, [&] {  // the flood
    if (captured.empty()) return;
    for (std::size_t k = 0; k < kFloodIds; ++k) {
      std::vector<std::uint8_t> d = captured[rng.between(0, captured.size() - 1)];
      tmc::wire::put_u32(d.data() + kSenderOffset, static_cast<std::uint32_t>(rng.next()) | 1u);
      for (std::size_t r = 0; r < kMembers; ++r) net.inject(net.now_ns() + k * 1000, 0, r, d);
    }
  });
  attack(after + 50 * kMs, 2000, true);  // every kind of datagram, replayed once more
  c.expect(net.run_until(after + 10'000 * kMs), "event limit hit");

  for (std::size_t r = 0; r < kMembers; ++r) {
    std::vector<std::int64_t> last(kMembers, -1);
    std::vector<std::uint32_t> got(kMembers, 0);
    for (const auto& d : net.deliveries(r)) {
      std::size_t m = 0;
      std::uint32_t k = 0;
      const bool ok = is_member_payload(d.payload, seed, m, k);
      if (!c.expect(ok && d.sender == ids[m], "member ", r, " delivered something no member sent (sender id ",
                    d.sender, ", ", d.payload.size(), " bytes)")) {
        continue;
      }
      c.expect(static_cast<std::int64_t>(k) > last[m], "member ", r, " delivered message ", k, " of member ", m,
               " after message ", last[m], " (twice or out of order)");
      last[m] = std::max<std::int64_t>(last[m], k);
      ++got[m];
    }
    for (std::size_t s = 0; s < kMembers; ++s) {
      if (s == r) continue;
      c.expect(got[s] == kCount, "member ", r, " delivered ", got[s], " of ", kCount, " messages of member ", s);
    }
    const tmc::CounterSnapshot counters = net.counters(r);
    c.expect(counters.get("security.failed") > 0 && counters.get("security.replayed") > 0, "member ", r,
             " saw no forged or no replayed datagram");
    const tmc::Group& view = net.pipeline(r)->group();
    c.expect(view.slot_of_name("x") < 0 && view.slot_of_sender(net.sender_id(kOutsider)) < 0, "member ", r,
             " let the keyless process into its view");
    for (const auto& e : net.events(r)) {
      c.expect(e.type != tmc::EventType::delivery_failed, "member ", r, " gave up a message");
    }
  }
  for (const auto& d : net.deliveries(kOutsider)) {
    std::size_t m = 0;
    std::uint32_t k = 0;
    c.expect(!is_member_payload(d.payload, seed, m, k), "the keyless process read message ", k, " of member ", m);
  }
}

void rolled(std::uint64_t seed, Check& c, const std::function<void(Network&)>& attach) {
  testkeys::KeyDir keys;
  const std::string group_file = keys.write("group.keys", {{1, seed}});
  const std::string kept_file = keys.write("kept.keys", {{1, seed}});
  Network net(simtest::config(seed, simtest::hostile_link(0.01 * static_cast<double>(seed % 3))));
  attach(net);
  const std::string channel = "id: sim-rolled\nreliability: true\nsecurity: authenticate\nkey file: ";
  for (std::size_t i = 0; i < kMembers; ++i) {
    net.add_member(compiled(channel + (i == 2 ? kept_file : group_file) + "\n", "m" + std::to_string(i)));
  }
  auto alive = [&net](std::size_t i, std::size_t j) {
    const tmc::Group& g = net.pipeline(i)->group();
    const int slot = g.slot_of_name("m" + std::to_string(j));
    return slot >= 0 && g.alive().contains(slot);
  };
  net.run_until(3000 * kMs);
  for (std::size_t i = 0; i < kMembers; ++i) {
    for (std::size_t j = 0; j < kMembers; ++j) {
      if (i != j) c.expect(alive(i, j), "before the roll, m", i, " does not see m", j);
    }
  }
  // The group moves to key 2; m2 still holds only key 1.
  (void)keys.write("group.keys", {{2, seed + 1000}});
  net.restart(0);
  net.restart(1);
  simtest::schedule_burst(net, {0, 1}, 10, 3500 * kMs, 20 * kMs, seed);
  net.run_until(9000 * kMs);
  for (std::size_t j : {0, 1}) {
    c.expect(!alive(j, 2), "after the roll, m", j, " still sees m2");
    c.expect(!alive(2, j), "after the roll, m2 still sees m", j);
    c.expect(net.counters(j).get("security.unknown_key") > 0, "m", j, " never refused m2's old key");
  }
  c.expect(alive(0, 1) && alive(1, 0), "after the roll, m0 and m1 lost each other");
  std::size_t from_rolled = 0;
  for (const auto& d : net.deliveries(2)) from_rolled += d.time_ns > 3500 * kMs ? 1 : 0;
  c.expect(from_rolled == 0, "m2 delivered ", from_rolled, " messages sent under a key it does not hold");
}

}  // namespace

TEST_CASE("sim: attackers against an encrypted channel: nothing forged or replayed is delivered") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) { attacked(seed, c, attach); });
}

TEST_CASE("sim: a member whose key was rolled away drops out of the view") {
  simtest::for_each_seed(kSeeds / 4, [](std::uint64_t seed, Check& c, auto& attach) { rolled(seed, c, attach); });
}
