// fragment.split in the simulator: messages from 1 B to 256 KiB (and a few of 16 MiB),
// below ordering.fifo + ordering.seq, over lossy, reordering, duplicating links.
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kFragmentBytes = 1100;
constexpr std::size_t kBig = 16u << 20;  // 16 MiB, the default max_message_bytes

tmc::Plan plan(bool reliable = false) {
  std::vector<tmc::PlannedStage> stages = {
      // With reliability a message may wait for repairs for a while: ordering must not give
      // up on it first.
      tmc::sim::stage("ordering.fifo",
                      {{"mode", "strict"}, {"window", "256"}, {"hold_us", reliable ? "5000000" : "50000"}}),
      tmc::sim::stage("ordering.seq"),
      tmc::sim::stage("fragment.split", {{"fragment_bytes", std::to_string(kFragmentBytes)},
                                         {"reassembly_timeout_us", reliable ? "30000000" : "2000000"}})};
  if (reliable) {
    stages.push_back(tmc::sim::stage("reliability.arq", {{"messages", "all"}, {"max_retries", "60"}}));
    stages.push_back(tmc::sim::stage("membership.heartbeat", {{"interval_us", "20000"}, {"timeout_us", "5000000"}}));
  }
  tmc::Plan p = tmc::sim::make_plan(std::move(stages), "fragments");
  p.traits.fragment_bytes = kFragmentBytes;
  p.member.clear();  // the simulator names members m<index> (heartbeats carry names)
  return p;
}

// A payload of `len` bytes, every byte derived from (salt, member, k).
std::vector<std::uint8_t> payload(std::size_t len, std::size_t member, std::uint32_t k, std::uint64_t salt) {
  std::uint64_t state = salt ^ (std::uint64_t{member} << 40) ^ (std::uint64_t{k} << 8) ^ len;
  std::vector<std::uint8_t> out(len);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) tmc::wire::put_u64(out.data() + i, tmc::sim::splitmix64(state));
  for (; i < len; ++i) out[i] = static_cast<std::uint8_t>(tmc::sim::splitmix64(state));
  return out;
}

// Sizes from 1 B to 256 KiB: a third fit in one datagram, the rest spread over the
// fragment counts (log-uniform), so both tiny and large messages are common.
std::size_t random_size(std::uint64_t& state) {
  const std::uint64_t r = tmc::sim::splitmix64(state);
  if (r % 3 == 0) return 1 + (r >> 8) % kFragmentBytes;
  const unsigned bits = 11 + static_cast<unsigned>((r >> 4) % 8);  // 2 KiB .. 256 KiB
  return 1 + (r >> 16) % (std::size_t{1} << bits);
}

struct Traffic {
  std::vector<std::size_t> senders;
  std::uint32_t per_sender = 0;
};

// Schedule the traffic of one seed: a few messages per sender, one every 5 ms; in a few
// seeds one of them is 16 MiB.
Traffic schedule(Network& net, std::uint64_t seed, std::uint32_t per_sender, bool big) {
  Traffic t;
  t.senders = {0, 1};
  t.per_sender = per_sender;
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull;
  for (std::uint32_t k = 0; k < per_sender; ++k) {
    for (std::size_t s : t.senders) {
      const std::size_t len = big && s == 0 && k == 1 ? kBig : random_size(state);
      net.schedule_send(k * 5'000'000 + s * 7, s, payload(len, s, k, seed));
    }
  }
  return t;
}

// Every delivery is byte-identical to the message sent with its sequence number, from the
// member it came from, and none is delivered twice.
void check_deliveries(const Network& net, std::size_t r, Check& c) {
  std::set<std::pair<std::size_t, std::uint64_t>> seen;
  for (const auto& d : net.deliveries(r)) {
    if (!c.expect(d.from < net.size() && d.seq >= 1 && d.seq <= net.sent(d.from).size(), "member ", r,
                  " delivered seq ", d.seq, " from member ", static_cast<std::int64_t>(d.from),
                  ", which never sent it")) {
      continue;
    }
    const auto& sent = net.sent(d.from)[d.seq - 1];
    c.expect(sent.payload == d.payload, "member ", r, " delivered seq ", d.seq, " of member ", d.from, " (",
             d.payload.size(), " bytes) differing from what was sent (", sent.payload.size(), " bytes)");
    c.expect(seen.insert({d.from, d.seq}).second, "member ", r, " delivered seq ", d.seq, " of member ", d.from,
             " twice");
  }
}

// At idle nothing is held: no partial message, no queued fragment, no buffer, no large bytes;
// and every partial message ended one way (reassembled, incomplete or evicted).
void check_bounded(const Network& net, Check& c) {
  for (std::size_t r = 0; r < net.size(); ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at idle");
    c.expect(net.pool_in_use(r) == 0, "member ", r, " still has ", net.pool_in_use(r), " buffers in use at idle");
    c.expect(net.pool_large_bytes(r) == 0, "member ", r, " still has ", net.pool_large_bytes(r),
             " large bytes at idle");
    const auto k = net.counters(r);
    const std::uint64_t started = k.get("fragment.partials_started");
    const std::uint64_t ended =
        k.get("fragment.messages_reassembled") + k.get("fragment.incomplete") + k.get("fragment.evicted");
    c.expect(started == ended, "member ", r, ": ", started, " partial messages started, ", ended, " ended");
    c.expect(k.get("fragment.incomplete") == k.get("drops.incomplete"), "member ", r,
             ": fragment.incomplete disagrees with drops.incomplete");
    c.expect(k.get("fragment.malformed") == 0, "member ", r, " saw malformed fragments on a clean wire");
  }
}

void check_all_sent_accepted(const Network& net, const Traffic& t, Check& c) {
  for (std::size_t s : t.senders) {
    c.expect(net.sent(s).size() == t.per_sender, "member ", s, " sent ", net.sent(s).size(), " messages");
    for (const auto& m : net.sent(s)) c.expect(m.accepted, "member ", s, " could not send ", m.payload.size(), " bytes");
  }
}

LinkParams faulty_link(std::uint64_t seed, double loss) {
  LinkParams l = LinkParams::clean();
  l.loss = loss;
  l.reorder = 0.05 + 0.05 * static_cast<double>(seed % 3);
  l.reorder_delay_ns = 2'000'000;
  l.duplicate = 0.05;
  l.jitter_ns = 50'000;
  return l;
}

}  // namespace

TEST_CASE("sim: fragment.split without loss: every message of 1 B .. 16 MiB arrives whole exactly once in order") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, faulty_link(seed, 0.0)));
    attach(net);
    for (int i = 0; i < 3; ++i) net.add_member(plan());
    const Traffic t = schedule(net, seed, 5, seed % 250 == 3);
    c.expect(net.run_until_idle(60'000'000'000), "the run did not go idle");
    check_all_sent_accepted(net, t, c);
    for (std::size_t r = 0; r < net.size(); ++r) {
      check_deliveries(net, r, c);
      simtest::check_fifo(net.deliveries(r), r, 0, c);
      std::size_t expect = 0;
      for (std::size_t s : t.senders) expect += s == r ? 0 : t.per_sender;
      c.expect(net.deliveries(r).size() == expect, "member ", r, " delivered ", net.deliveries(r).size(), " of ",
               expect, " messages");
      const auto k = net.counters(r);
      c.expect(k.get("fragment.incomplete") + k.get("fragment.evicted") == 0, "member ", r,
               " dropped a partial message on a lossless network");
    }
    check_bounded(net, c);
  });
}

TEST_CASE("sim: fragment.split under loss without reliability: intact or dropped whole and counted") {
  std::uint64_t total_reassembled = 0;
  std::uint64_t total_incomplete = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    // 0.05% .. 3% loss: small messages mostly arrive, the largest mostly do not.
    const double loss = 0.0005 + 0.03 * static_cast<double>(seed % 7) / 6.0;
    Network net(simtest::config(seed, faulty_link(seed, loss)));
    attach(net);
    for (int i = 0; i < 3; ++i) net.add_member(plan());
    const Traffic t = schedule(net, seed, 6, seed % 333 == 5);
    c.expect(net.run_until_idle(60'000'000'000), "the run did not go idle");
    check_all_sent_accepted(net, t, c);
    for (std::size_t r = 0; r < net.size(); ++r) {
      check_deliveries(net, r, c);
      simtest::check_fifo(net.deliveries(r), r, 0, c);
      // ordering.fifo strict accounts for every number: delivered or reported skipped.
      for (std::size_t s : t.senders) {
        if (s != r) simtest::check_exactly_once(net, r, s, net.epoch(s), c);
      }
      // A fragmented message that was not delivered either never reached this member at
      // all or was dropped whole and counted.
      std::uint64_t fragmented_missing = 0;
      std::set<std::pair<std::size_t, std::uint64_t>> got;
      for (const auto& d : net.deliveries(r)) got.insert({d.from, d.seq});
      for (std::size_t s : t.senders) {
        if (s == r) continue;
        for (std::size_t k = 0; k < net.sent(s).size(); ++k) {
          if (net.sent(s)[k].payload.size() > kFragmentBytes && got.count({s, k + 1}) == 0) ++fragmented_missing;
        }
      }
      const auto k = net.counters(r);
      c.expect(k.get("fragment.incomplete") + k.get("fragment.evicted") <= fragmented_missing, "member ", r,
               " counted more incomplete messages than are missing");
      total_reassembled += k.get("fragment.messages_reassembled");
      total_incomplete += k.get("fragment.incomplete");
    }
    check_bounded(net, c);
  });
  if (simtest::many_seeds(kSeeds)) {
    // Over all seeds, both outcomes really happened.
    CHECK(total_reassembled > 0);
    CHECK(total_incomplete > 0);
  }
}

TEST_CASE("sim: fragment.split over reliability.arq + membership.heartbeat at 10% loss: every message whole once") {
  if (tmc::Registry::builtin().find("reliability.arq") == nullptr ||
      tmc::Registry::builtin().find("membership.heartbeat") == nullptr) {
    MESSAGE("reliability.arq or membership.heartbeat not built in; scenario skipped");
    return;
  }
  std::uint64_t retransmits = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, faulty_link(seed, 0.10)));
    attach(net);
    for (int i = 0; i < 3; ++i) net.add_member(plan(/*reliable=*/true));
    // Let the members hear each other first, so the ack sets hold everyone.
    net.run_until(200'000'000);
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull;
    Traffic t;
    t.senders = {0, 1};
    t.per_sender = 4;
    for (std::uint32_t k = 0; k < t.per_sender; ++k) {
      for (std::size_t s : t.senders) {
        const std::size_t len = random_size(state) / 4 + 1;  // up to 64 KiB: 60 fragments
        net.schedule_send(200'000'000 + k * 5'000'000 + s * 7, s, payload(len, s, k, seed));
      }
    }
    // Heartbeats never stop, so the run cannot go idle: run long enough for every repair.
    net.run_until(8'000'000'000);
    check_all_sent_accepted(net, t, c);
    retransmits += net.counters(0).get("reliability.retransmits") + net.counters(1).get("reliability.retransmits");
    for (std::size_t r = 0; r < net.size(); ++r) {
      check_deliveries(net, r, c);
      simtest::check_fifo(net.deliveries(r), r, 0, c);
      std::size_t expect = 0;
      for (std::size_t s : t.senders) expect += s == r ? 0 : t.per_sender;
      c.expect(net.deliveries(r).size() == expect, "member ", r, " delivered ", net.deliveries(r).size(), " of ",
               expect, " messages");
      const auto k = net.counters(r);
      c.expect(k.get("fragment.incomplete") + k.get("fragment.evicted") == 0, "member ", r,
               " dropped a partial message although every fragment is repaired");
      c.expect(k.get("fragment.partials_started") == k.get("fragment.messages_reassembled"), "member ", r,
               " holds a partial message at the end");
      c.expect(net.pool_large_bytes(r) == 0, "member ", r, " still has large bytes at the end");
    }
  });
  if (simtest::many_seeds(kSeeds)) CHECK(retransmits > 0);  // fragments really were repaired
}
