// Pacing and batching in the simulator: pacing.coalesce (and pacing.bucket) between
// ordering (ordering.fifo + ordering.seq above) and checksum.crc32c below, under loss,
// duplication, reordering and corruption; and the latency bound of coalescing in a clean
// network (virtual time).
#include <doctest/doctest.h>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint32_t kMessages = 40;        // per sender
constexpr std::uint64_t kIntervalNs = 20'000;  // each sender sends every 20 us

using simtest::all;
using simtest::config;

struct CoalesceParams {
  std::uint32_t max_bytes;
  std::uint32_t delay_us;
  std::uint32_t max_messages;
  const char* records;  // "full" or "compact" (what the compiler asks for)
};

// Varied by seed so that every flush reason (size, count, timer) and delay 0 are covered.
CoalesceParams coalesce_params(std::uint64_t seed) {
  static constexpr std::uint32_t kBytes[] = {200, 600, 1200};
  static constexpr std::uint32_t kDelays[] = {0, 50, 100, 300};
  static constexpr std::uint32_t kCounts[] = {2, 8, 64};
  return {kBytes[seed % 3], kDelays[(seed / 3) % 4], kCounts[(seed / 12) % 3], (seed / 36) % 2 == 0 ? "full" : "compact"};
}

tmc::Plan plan(const CoalesceParams& cp, std::uint64_t rate_bps = 0) {
  std::vector<tmc::PlannedStage> stages = {tmc::sim::stage("ordering.fifo", {{"mode", "drop-stale"}}),
                                           tmc::sim::stage("ordering.seq")};
  if (rate_bps != 0) {
    stages.push_back(
        tmc::sim::stage("pacing.bucket", {{"rate_bps", std::to_string(rate_bps)}, {"burst_bytes", "2000"}}));
  }
  stages.push_back(tmc::sim::stage("pacing.coalesce", {{"max_bytes", std::to_string(cp.max_bytes)},
                                                       {"delay_us", std::to_string(cp.delay_us)},
                                                       {"max_messages", std::to_string(cp.max_messages)},
                                                       {"records", cp.records}}));
  stages.push_back(tmc::sim::stage("checksum.crc32c", {{"require", "true"}}));
  return tmc::sim::make_plan(std::move(stages));
}

LinkParams faulty_link(std::uint64_t seed) {
  LinkParams l = LinkParams::clean();
  l.loss = 0.05 * static_cast<double>(seed % 5);  // 0% .. 20%
  l.duplicate = 0.1;
  l.reorder = 0.1 + 0.1 * static_cast<double>((seed / 5) % 3);
  l.reorder_delay_ns = 1'000'000;
  l.jitter_ns = 40'000;
  l.corrupt = 0.05 + 0.05 * static_cast<double>((seed / 3) % 3);
  l.corrupt_max_bits = 1 + static_cast<std::uint32_t>(seed % 3);
  return l;
}

void check_bounded(const Network& net, Check& c) {
  for (std::size_t r = 0; r < net.size(); ++r) {
    c.expect(net.held_packets(r) == 0, "member ", r, " still holds ", net.held_packets(r), " packets at idle");
    c.expect(net.pool_in_use(r) == 0, "member ", r, " still has ", net.pool_in_use(r), " buffers in use at idle");
  }
}

// The checks every scenario shares: intact, no duplicates, per-sender order, no stage saw
// a corrupted batch (the checksum below refused them all), memory released at idle.
void check_common(const Network& net, std::uint64_t seed, Check& c) {
  for (std::size_t r = 0; r < net.size(); ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    simtest::check_fifo(net, r, seed, c);
    const auto counters = net.counters(r);
    c.expect(counters.get("drops.malformed") == simtest::wire_errors(counters), "member ", r,
             ": a malformed drop the decoder did not count (coalesce split a corrupted batch?)");
    c.expect(counters.get("pacing.coalesce_records_malformed") == 0 &&
                 counters.get("pacing.coalesce_batch_malformed") == 0,
             "member ", r, " refused records of a batch that passed the checksum");
  }
  check_bounded(net, c);
}

}  // namespace

TEST_CASE("sim: pacing.coalesce under loss + duplication + reordering + corruption: intact once and in per-sender order") {
  std::uint64_t batches = 0, lone = 0, corrupted = 0, by_size = 0, by_count = 0, by_timer = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    Network net(config(seed, faulty_link(seed)));
    attach(net);
    const CoalesceParams cp = coalesce_params(seed);
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(plan(cp));
    simtest::schedule_burst(net, all(net), kMessages, 0, kIntervalNs, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    check_common(net, seed, c);
    for (std::size_t r = 0; r < net.size(); ++r) {
      const auto k = net.counters(r);
      batches += k.get("pacing.coalesce_batches_sent");
      lone += k.get("pacing.coalesce_lone_sent");
      by_size += k.get("pacing.coalesce_flush_size");
      by_count += k.get("pacing.coalesce_flush_count");
      by_timer += k.get("pacing.coalesce_flush_timer");
      corrupted += net.link_stats(r).corrupted_arrived;
      // Every message the application sent left the member, in a batch or alone.
      c.expect(k.get("pacing.coalesce_messages_batched") + k.get("pacing.coalesce_lone_sent") +
                       k.get("pacing.coalesce_oversize_passed") ==
                   kMessages,
               "member ", r, " sent ", k.get("pacing.coalesce_messages_batched"), " batched + ",
               k.get("pacing.coalesce_lone_sent"), " lone messages of ", kMessages);
    }
  });
  if (simtest::many_seeds(kSeeds)) {
    CHECK(batches > 0);
    CHECK(lone > 0);
    CHECK(corrupted > 0);
    CHECK(by_size > 0);
    CHECK(by_count > 0);
    CHECK(by_timer > 0);
  }
  MESSAGE("coalesce: " << batches << " batches, " << lone << " lone messages, " << corrupted
                       << " corrupted copies refused; flushes by size " << by_size << ", count " << by_count
                       << ", timer " << by_timer);
}

TEST_CASE("sim: pacing.coalesce in a clean network: everything delivered once and no later than delay_us + network delay") {
  std::uint64_t batched = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    // No jitter: a copy overtaking an earlier one would be dropped as stale by drop-stale
    // ordering, and this scenario checks that everything arrives.
    const LinkParams link = LinkParams::clean(100'000);
    Network net(config(seed, link));
    attach(net);
    const CoalesceParams cp = coalesce_params(seed);
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(plan(cp));
    // Senders at different paces: some share batches, some go alone.
    const std::uint64_t interval = 1'000 + (seed % 7) * 15'000;
    // Start after t=0: a timer armed for "now" at t=0 fires at 1 ns (StageIo::arm_timer
    // reserves 0 for "not armed"), which would stretch the exact bound below by 1 ns.
    simtest::schedule_burst(net, all(net), kMessages, 1'000, interval, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    check_common(net, seed, c);
    const std::uint64_t bound_ns = std::uint64_t{cp.delay_us} * 1000 + link.delay_ns + link.jitter_ns;
    for (std::size_t r = 0; r < net.size(); ++r) {
      std::vector<std::uint32_t> got(net.size(), 0);
      for (const auto& d : net.deliveries(r)) {
        const auto p = simtest::parse_payload(d.payload, seed);
        if (!p.ok || p.member >= net.size() || p.k >= net.sent(p.member).size()) continue;
        ++got[p.member];
        const std::uint64_t sent_ns = net.sent(p.member)[p.k].time_ns;
        c.expect(d.time_ns >= sent_ns && d.time_ns - sent_ns <= bound_ns, "member ", r, " got message ", p.k,
                 " of member ", p.member, " ", d.time_ns - sent_ns, " ns after its send (bound ", bound_ns, ")");
      }
      for (std::size_t s = 0; s < net.size(); ++s) {
        if (s == r) continue;
        c.expect(got[s] == kMessages, "member ", r, " got ", got[s], " of ", kMessages, " messages of member ", s);
      }
      batched += net.counters(r).get("pacing.coalesce_messages_batched");
    }
  });
  if (simtest::many_seeds(kSeeds)) CHECK(batched > 0);
  MESSAGE("coalesce clean: " << batched << " messages travelled in batches");
}

TEST_CASE("sim: pacing.bucket above pacing.coalesce: no message leaves before the rate allows and order holds") {
  std::uint64_t delayed = 0;
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    LinkParams link = faulty_link(seed);
    link.reorder = 0.0;  // keep the rate check about the sender, not about late copies
    Network net(config(seed, link));
    attach(net);
    const CoalesceParams cp = coalesce_params(seed);
    // 4..12 Mbit/s: well below what a 20 us send interval asks for, so packets queue.
    const std::uint64_t rate_bps = 4'000'000 + (seed % 3) * 4'000'000;
    constexpr std::uint64_t kBurstBytes = 2000;
    for (std::size_t i = 0; i < 3 + seed % 2; ++i) net.add_member(plan(cp, rate_bps));
    simtest::schedule_burst(net, all(net), kMessages, 0, kIntervalNs, seed);
    c.expect(net.run_until_idle(10'000'000'000), "the run did not go idle");
    check_common(net, seed, c);
    // The bucket charges each message its datagram bytes as it sees them: header (24),
    // the seq extension (2 + 8) and the payload. Message k of a sender cannot reach a
    // receiver before the bucket let out messages 0..k and the link's base delay passed.
    for (std::size_t s = 0; s < net.size(); ++s) {
      std::vector<std::uint64_t> cumulative;
      std::uint64_t sum = 0;
      for (const auto& m : net.sent(s)) {
        sum += 24 + 10 + m.payload.size();
        cumulative.push_back(sum);
      }
      for (std::size_t r = 0; r < net.size(); ++r) {
        for (const auto& d : net.deliveries(r)) {
          const auto p = simtest::parse_payload(d.payload, seed);
          if (!p.ok || p.member != s || p.k >= cumulative.size()) continue;
          const std::uint64_t left_by_ns = d.time_ns - link.delay_ns;  // it left at or before this
          // bytes <= burst + rate * t  <=>  (bytes - burst) * 8e9 <= rate * t_ns
          const std::uint64_t bytes = cumulative[p.k];
          c.expect(bytes <= kBurstBytes || (bytes - kBurstBytes) * 8'000'000'000 <= rate_bps * left_by_ns, "member ",
                   r, " got message ", p.k, " of member ", s, " at ", d.time_ns, " ns: ", bytes,
                   " bytes would have left faster than ", rate_bps, " bit/s");
        }
      }
      delayed += net.counters(s).get("pacing.bucket_delayed");
    }
  });
  if (simtest::many_seeds(kSeeds)) CHECK(delayed > 0);
  MESSAGE("bucket: " << delayed << " packets waited for tokens");
}
