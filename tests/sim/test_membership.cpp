// membership.heartbeat in the simulator: views converge under loss, duplication and
// reordering; crashes are detected within timeout + interval; restarts are seen with the
// new epoch and never the old one again; goodbyes are seen as left; partitions heal.
// Everything is asserted on each member's Group (Pipeline::group()) and its events, in
// virtual time only.
#include <doctest/doctest.h>

#include <string>

#include "sim_util.hpp"

namespace {

using simtest::Check;
using tmc::EventType;
using tmc::MemberState;
using tmc::sim::LinkParams;
using tmc::sim::Network;

constexpr std::uint64_t kSeeds = 1000;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kIntervalNs = 100 * kMs;
constexpr std::uint64_t kTimeoutNs = 1000 * kMs;
// Under up to 20% loss a member is heard at least once in ten heartbeats but for odds of
// about 1e-7 per pair; so views converge within one timeout of the last change.
constexpr std::uint64_t kConvergeNs = kTimeoutNs;

tmc::Plan plan() {
  tmc::Plan p = tmc::sim::make_plan({tmc::sim::stage(
      "membership.heartbeat", {{"interval_us", std::to_string(kIntervalNs / 1000)},
                               {"timeout_us", std::to_string(kTimeoutNs / 1000)}})});
  p.member.clear();  // the network names its members m0, m1, ...
  return p;
}

std::string name_of(std::size_t i) { return "m" + std::to_string(i); }

// A link with loss up to 20%, duplication and reordering, drawn from the seed.
LinkParams lossy_link(std::uint64_t seed) {
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull;
  auto unit = [&s] { return static_cast<double>(tmc::sim::splitmix64(s) % 10001) / 10000.0; };
  LinkParams l = LinkParams::clean();
  l.loss = 0.2 * unit();
  l.duplicate = 0.1 * unit();
  l.reorder = 0.2 * unit();
  l.reorder_delay_ns = 2 * kMs;
  l.jitter_ns = 200'000;
  return l;
}

std::uint64_t draw(std::uint64_t seed, std::uint64_t salt, std::uint64_t bound) {
  std::uint64_t s = seed ^ (salt * 0xD1B54A32D192ED03ull);
  return tmc::sim::splitmix64(s) % bound;
}

// Member i's view of member j matches j's real state: up members are alive with their
// current sender id and epoch; members that are down are not alive.
bool sees_correctly(Network& net, std::size_t i, std::size_t j, std::string& why) {
  const tmc::Group& g = net.pipeline(i)->group();
  const int slot = g.slot_of_name(name_of(j));
  if (net.is_up(j)) {
    if (slot <= 0) {
      why = "does not know " + name_of(j);
      return false;
    }
    const tmc::MemberInfo& m = g.member(slot);
    if (m.state != MemberState::alive) {
      why = "sees " + name_of(j) + " as " + std::string(tmc::member_state_name(m.state));
      return false;
    }
    if (m.epoch != net.epoch(j) || m.sender != net.sender_id(j)) {
      why = "sees " + name_of(j) + " with epoch " + std::to_string(m.epoch) + ", not " + std::to_string(net.epoch(j));
      return false;
    }
    return true;
  }
  if (slot > 0 && g.member(slot).state == MemberState::alive) {
    why = "still sees " + name_of(j) + " (down) as alive";
    return false;
  }
  return true;
}

// Every up member's view holds exactly the other up members, alive, with current epochs.
bool converged(Network& net, std::string& why) {
  for (std::size_t i = 0; i < net.size(); ++i) {
    if (!net.is_up(i)) continue;
    std::size_t others_up = 0;
    for (std::size_t j = 0; j < net.size(); ++j) {
      if (j == i) continue;
      if (net.is_up(j)) ++others_up;
      if (!sees_correctly(net, i, j, why)) {
        why = name_of(i) + " " + why;
        return false;
      }
    }
    const int alive = net.pipeline(i)->group().alive().count();
    if (static_cast<std::size_t>(alive) != others_up) {
      why = name_of(i) + " has " + std::to_string(alive) + " alive members, expected " + std::to_string(others_up);
      return false;
    }
  }
  return true;
}

// Run until every view is correct, at most until `deadline_ns`; returns when it happened
// (0 = never). Checked every millisecond of virtual time.
std::uint64_t run_until_converged(Network& net, std::uint64_t deadline_ns, std::string& why) {
  for (std::uint64_t t = net.now_ns(); t <= deadline_ns; t += kMs) {
    net.run_until(t);
    if (converged(net, why)) return t == 0 ? 1 : t;
  }
  return 0;
}

// The first membership event of `type` that member i recorded about member j's
// incarnation `epoch` at or after `from_ns` (nullptr: none).
const tmc::sim::RecordedEvent* find_event(const Network& net, std::size_t i, EventType type, std::size_t j,
                                          std::uint32_t epoch, std::uint64_t from_ns) {
  for (const auto& e : net.events(i)) {
    if (e.type == type && e.sender == net.sender_id(j) && e.epoch == epoch && e.time_ns >= from_ns) return &e;
  }
  return nullptr;
}

// N = 3..5 members joining at staggered times; views converge, then stay converged.
std::size_t start_group(Network& net, std::uint64_t seed, Check& c, std::uint64_t& t_ready) {
  const std::size_t n = 3 + seed % 3;
  const tmc::Plan p = plan();
  net.add_member(p);
  std::uint64_t last_join = 0;
  for (std::size_t i = 1; i < n; ++i) {
    const std::uint64_t t = draw(seed, i, 300 * kMs);
    last_join = std::max(last_join, t);
    net.schedule(t, [&net, p] { net.add_member(p); });
  }
  net.run_until(last_join);
  c.expect(net.size() == n, "only ", net.size(), " of ", n, " members joined");
  std::string why;
  t_ready = run_until_converged(net, last_join + kConvergeNs, why);
  c.expect(t_ready != 0, "views did not converge within ", kConvergeNs / kMs, " ms of the last join: ", why);
  return n;
}

}  // namespace

TEST_CASE("sim: membership views converge in one round trip on clean links") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed));
    attach(net);
    const std::size_t n = 3 + seed % 3;
    const tmc::Plan p = plan();
    std::string why;
    for (std::size_t i = 0; i < n; ++i) {
      // Joins spread over several intervals; after each, the newcomer hears every member's
      // early answer (at most interval/4 after that member's last heartbeat) and everyone
      // hears the newcomer's first heartbeat: one round trip plus the rate limit.
      const std::uint64_t t = i * 250 * kMs + draw(seed, i, 200 * kMs);
      net.run_until(t);
      net.add_member(p);
      const std::uint64_t done = run_until_converged(net, t + kIntervalNs / 4 + 2 * kMs, why);
      if (!c.expect(done != 0, "join of ", name_of(i), " at ", t, " ns not converged within interval/4: ", why)) return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      c.expect(net.events(i).size() == n - 1, name_of(i), " raised ", net.events(i).size(), " events, expected ",
               n - 1, " joins");
      c.expect(net.counters(i).get("membership.failures") == 0, name_of(i), " reported a failure on clean links");
    }
  });
}

TEST_CASE("sim: membership views converge under loss and a crashed member is failed within timeout plus interval") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, lossy_link(seed)));
    attach(net);
    std::uint64_t t_ready = 0;
    const std::size_t n = start_group(net, seed, c, t_ready);
    if (!c.ok()) return;
    const std::size_t victim = draw(seed, 100, n);
    const std::uint32_t epoch = net.epoch(victim);
    const std::uint64_t t_crash = t_ready + draw(seed, 101, kIntervalNs);
    net.run_until(t_crash);
    net.leave(victim);  // a crash: no goodbye
    const std::uint64_t bound = t_crash + kTimeoutNs + kIntervalNs;
    net.run_until(bound);
    for (std::size_t i = 0; i < n; ++i) {
      if (i == victim) continue;
      const auto* e = find_event(net, i, EventType::member_failed, victim, epoch, t_crash);
      c.expect(e != nullptr, name_of(i), " did not report ", name_of(victim), " failed within timeout + interval");
      const tmc::Group& g = net.pipeline(i)->group();
      const int slot = g.slot_of_name(name_of(victim));
      c.expect(slot > 0 && g.member(slot).state == MemberState::failed, name_of(i), " does not see ",
               name_of(victim), " as failed");
      c.expect(slot > 0 && !g.receivers().contains(slot), name_of(i), " still waits for acks from ",
               name_of(victim));
    }
    // The survivors agree on who is left.
    std::string why;
    c.expect(run_until_converged(net, bound + kConvergeNs, why) != 0, "survivors' views disagree: ", why);
  });
}

TEST_CASE("sim: membership sees a restarted member with its new epoch and never its old one again") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, lossy_link(seed)));
    attach(net);
    std::uint64_t t_ready = 0;
    const std::size_t n = start_group(net, seed, c, t_ready);
    if (!c.ok()) return;
    const std::size_t victim = draw(seed, 200, n);
    const std::uint32_t old_epoch = net.epoch(victim);
    // Restart right after one of its heartbeats (while copies are still in flight and may
    // be reordered behind the new incarnation's) or anywhere in an interval.
    const std::uint64_t t_restart = t_ready + draw(seed, 201, kIntervalNs);
    net.run_until(t_restart);
    net.restart(victim);
    const std::uint32_t new_epoch = net.epoch(victim);
    c.expect(new_epoch != old_epoch, "the restart kept the epoch");
    std::string why;
    const std::uint64_t done = run_until_converged(net, t_restart + kConvergeNs, why);
    c.expect(done != 0, "views did not converge within ", kConvergeNs / kMs, " ms of the restart: ", why);
    // Keep running: the old epoch must never come back.
    const std::uint64_t t_end = net.now_ns() + 3 * kTimeoutNs;
    for (std::uint64_t t = net.now_ns(); t <= t_end; t += 50 * kMs) {
      net.run_until(t);
      for (std::size_t i = 0; i < n; ++i) {
        if (i == victim) continue;
        const tmc::Group& g = net.pipeline(i)->group();
        const int slot = g.slot_of_name(name_of(victim));
        c.expect(slot > 0 && g.member(slot).epoch == new_epoch, name_of(i), " sees ", name_of(victim),
                 " with epoch ", slot > 0 ? g.member(slot).epoch : 0, " at t=", t, ", not the new ", new_epoch);
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (i == victim) continue;
      // It saw the new incarnation (as a restart, or as a join if it had already declared
      // the old one failed), and after that no event names the old epoch.
      const auto* restarted = find_event(net, i, EventType::member_restarted, victim, new_epoch, t_restart);
      const auto* joined = find_event(net, i, EventType::member_joined, victim, new_epoch, t_restart);
      c.expect(restarted != nullptr || joined != nullptr, name_of(i), " raised no event for the new epoch");
      const std::uint64_t t_new = restarted != nullptr ? restarted->time_ns : joined != nullptr ? joined->time_ns : 0;
      for (const auto& e : net.events(i)) {
        c.expect(!(e.sender == net.sender_id(victim) && e.epoch == old_epoch && e.time_ns >= t_new),
                 name_of(i), " raised ", tmc::event_type_name(e.type), " for the old epoch at t=", e.time_ns);
      }
      c.expect(find_event(net, i, EventType::member_failed, victim, new_epoch, 0) == nullptr,
               name_of(i), " declared the new incarnation failed");
    }
    std::string why2;
    c.expect(converged(net, why2), "views disagree at the end: ", why2);
  });
}

namespace {

// A graceful leave; `clean_goodbye` makes the leaver's links lossless from the moment it
// leaves, so that its goodbyes must arrive.
void graceful_leave_scenario(bool clean_goodbye, std::uint64_t& left_seen, std::uint64_t& receivers_total) {
  simtest::for_each_seed(kSeeds, [&](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, lossy_link(seed)));
    attach(net);
    std::uint64_t t_ready = 0;
    const std::size_t n = start_group(net, seed, c, t_ready);
    if (!c.ok()) return;
    const std::size_t victim = draw(seed, 300, n);
    const std::uint32_t epoch = net.epoch(victim);
    const std::uint64_t t_leave = t_ready + draw(seed, 301, kIntervalNs);
    net.run_until(t_leave);
    if (clean_goodbye) net.set_link_from(victim, LinkParams::clean());
    net.leave(victim, true);
    net.run_until(t_leave + kTimeoutNs + kIntervalNs);
    for (std::size_t i = 0; i < n; ++i) {
      if (i == victim) continue;
      ++receivers_total;
      const tmc::Group& g = net.pipeline(i)->group();
      const int slot = g.slot_of_name(name_of(victim));
      const MemberState st = slot > 0 ? g.member(slot).state : MemberState::expected;
      const bool left = st == MemberState::left && find_event(net, i, EventType::member_left, victim, epoch, t_leave);
      if (left) ++left_seen;
      if (clean_goodbye) {
        c.expect(left, name_of(i), " sees ", name_of(victim), " as ", tmc::member_state_name(st),
                 " after its goodbye, not left");
        c.expect(find_event(net, i, EventType::member_failed, victim, epoch, t_leave) == nullptr, name_of(i),
                 " reported ", name_of(victim), " failed after it said goodbye");
      } else {
        // Every goodbye may be lost: then the member is failed instead, never still alive.
        c.expect(st == MemberState::left || st == MemberState::failed, name_of(i), " sees ", name_of(victim), " as ",
                 tmc::member_state_name(st), " after it left");
      }
    }
    std::string why;
    c.expect(run_until_converged(net, net.now_ns() + kConvergeNs, why) != 0, "survivors' views disagree: ", why);
  });
}

}  // namespace

TEST_CASE("sim: membership sees a graceful leave as left") {
  std::uint64_t left = 0;
  std::uint64_t total = 0;
  graceful_leave_scenario(true, left, total);
  CHECK(left == total);
}

TEST_CASE("sim: membership goodbyes over lossy links are mostly seen and otherwise end in failure") {
  std::uint64_t left = 0;
  std::uint64_t total = 0;
  graceful_leave_scenario(false, left, total);
  // Three goodbyes over links losing at most 20%: all three lost in under 1% of cases.
  if (simtest::many_seeds(kSeeds)) CHECK(static_cast<double>(left) >= 0.97 * static_cast<double>(total));
}

TEST_CASE("sim: membership views split during a partition and re-converge when it heals") {
  simtest::for_each_seed(kSeeds, [](std::uint64_t seed, Check& c, auto& attach) {
    Network net(simtest::config(seed, lossy_link(seed)));
    attach(net);
    std::uint64_t t_ready = 0;
    const std::size_t n = start_group(net, seed, c, t_ready);
    if (!c.ok()) return;
    // A random split into two non-empty sides.
    std::vector<std::size_t> side_a;
    std::vector<std::size_t> side_b;
    const std::uint64_t bits = 1 + draw(seed, 400, (std::uint64_t{1} << n) - 2);
    for (std::size_t i = 0; i < n; ++i) ((bits >> i) & 1u ? side_a : side_b).push_back(i);
    const std::uint64_t t_split = t_ready + draw(seed, 401, kIntervalNs);
    const std::uint64_t t_heal = t_split + 2 * kTimeoutNs;
    net.partition({side_a, side_b}, t_split, t_heal);
    net.run_until(t_split + kTimeoutNs + kIntervalNs);
    // Each side sees the other failed and its own side alive.
    for (std::size_t i = 0; i < n; ++i) {
      const tmc::Group& g = net.pipeline(i)->group();
      const bool in_a = (bits >> i) & 1u;
      for (std::size_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const int slot = g.slot_of_name(name_of(j));
        const bool same_side = (((bits >> j) & 1u) != 0) == in_a;
        const MemberState st = slot > 0 ? g.member(slot).state : MemberState::expected;
        if (same_side) {
          c.expect(st == MemberState::alive, name_of(i), " sees ", name_of(j), " (same side) as ",
                   tmc::member_state_name(st), " during the partition");
        } else {
          c.expect(st == MemberState::failed, name_of(i), " sees ", name_of(j), " (other side) as ",
                   tmc::member_state_name(st), " during the partition");
        }
      }
    }
    net.run_until(t_heal);
    std::string why;
    c.expect(run_until_converged(net, t_heal + kConvergeNs, why) != 0, "views did not re-converge within ",
             kConvergeNs / kMs, " ms of the heal: ", why);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        if (j == i || (((bits >> j) & 1u) != 0) == (((bits >> i) & 1u) != 0)) continue;
        c.expect(find_event(net, i, EventType::member_joined, j, net.epoch(j), t_heal) != nullptr, name_of(i),
                 " raised no member_joined for ", name_of(j), " after the heal");
      }
    }
  });
}
