// Whole runs on the deterministic in-memory network: the invariants of the spec's §11 over
// the committed-transaction log and the replicas' state, with and without faults.
#include <doctest/doctest.h>

#include <algorithm>

#include "checker.hpp"
#include "keys.hpp"
#include "simnet.hpp"

using namespace tapir;

namespace {

struct Run {
  std::vector<std::string> keys;
  SimNet net;
  Run(SimOptions o, std::size_t nkeys, std::uint32_t clients, StoreOptions so = {}, IrTimers timers = {})
      : keys(make_keys(nkeys)), net(o, 3, so) {
    for (std::uint32_t r = 0; r < 3; ++r)
      for (const auto& k : keys) net.replica(r).store().load(k, "null");
    for (std::uint32_t c = 0; c < clients; ++c) {
      Client::Config cfg;
      cfg.clientid = 1000 + c * 7919;
      cfg.seed = o.seed * 100 + c;
      cfg.timers = timers;
      cfg.workload.keys = &keys;
      cfg.log_commits = true;
      net.add_client(cfg);
    }
  }
  void run(Nanos seconds, Nanos drain_limit = 20'000 * kMillisecond) {
    for (std::size_t c = 0; c < net.clients(); ++c) net.client(static_cast<std::uint32_t>(c)).start(net.now());
    net.run_until(net.now() + seconds);
    drained = net.drain(drain_limit);
  }
  std::vector<CommitRecord> commits() {
    std::vector<CommitRecord> all;
    for (std::size_t c = 0; c < net.clients(); ++c) {
      const auto& v = net.client(static_cast<std::uint32_t>(c)).commits();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  }
  std::vector<const Replica*> replicas() { return {&net.replica(0), &net.replica(1), &net.replica(2)}; }
  ClientStats total() {
    ClientStats t;
    for (std::size_t c = 0; c < net.clients(); ++c) {
      const ClientStats& s = net.client(static_cast<std::uint32_t>(c)).stats();
      t.committed += s.committed;
      t.started += s.started;
      t.aborted_fail += s.aborted_fail;
      t.aborted_retries += s.aborted_retries;
      t.fast_path += s.fast_path;
      t.slow_path += s.slow_path;
      for (int i = 0; i < kMsgTypes; ++i) t.resent[i] += s.resent[i];
    }
    return t;
  }
  Nanos max_latency() {
    Nanos m = 0;
    for (std::size_t c = 0; c < net.clients(); ++c)
      for (const auto& t : net.client(static_cast<std::uint32_t>(c)).txns()) m = std::max(m, t.latency);
    return m;
  }
  bool drained = false;
};

std::uint64_t sum(const std::array<std::uint64_t, kMsgTypes>& a) {
  std::uint64_t s = 0;
  for (auto v : a) s += v;
  return s;
}

constexpr Nanos kSecond = 1000 * kMillisecond;

}  // namespace

TEST_CASE("run at 0% loss: serializable, every replica holds every write, quiescent, no resends, no aborts from loss") {
  Run r(SimOptions{}, 100000, 4);
  r.run(2 * kSecond);
  REQUIRE(r.drained);
  ClientStats t = r.total();
  CHECK(t.committed > 1000);
  CheckReport ser = check_serializable(r.commits());
  CHECK_MESSAGE(ser.ok(), ser.summary());
  CheckReport rep = check_replicas(r.commits(), r.replicas(), 3);
  CHECK_MESSAGE(rep.ok(), rep.summary());
  CHECK(sum(t.resent) == 0);
  CHECK(t.slow_path == 0);
  CHECK(static_cast<double>(t.aborted_fail + t.aborted_retries) < 0.001 * static_cast<double>(t.started));
  for (std::uint32_t i = 0; i < 3; ++i) CHECK(r.net.replica(i).store().prepared_count() == 0);
}

TEST_CASE("run at 1% loss: serializable, no lost writes on f+1 replicas, every txn within 5 s") {
  SimOptions o;
  o.loss = 0.01;
  o.seed = 7;
  Run r(o, 100000, 4);
  r.run(2 * kSecond);
  REQUIRE(r.drained);
  ClientStats t = r.total();
  CHECK(t.committed > 100);
  CHECK(sum(t.resent) > 0);  // the loss was felt
  CheckReport ser = check_serializable(r.commits());
  CHECK_MESSAGE(ser.ok(), ser.summary());
  CheckReport rep = check_replicas(r.commits(), r.replicas(), 2);
  CHECK_MESSAGE(rep.ok(), rep.summary());
  CHECK(r.max_latency() < 5 * kSecond);  // liveness bound (virtual time)
}

TEST_CASE("contention: a correct store stays serializable, a store without the read check does not") {
  SimOptions o;
  o.seed = 3;
  o.jitter = 200'000;  // wide delays: more interleaving
  Run good(o, 4, 4);
  good.run(1 * kSecond);
  CheckReport ok = check_serializable(good.commits());
  CHECK_MESSAGE(ok.ok(), ok.summary());
  CHECK(good.total().aborted_fail > 0);  // the read check did fire

  Run bad(o, 4, 4, StoreOptions{PrepareRules::repo, true});
  bad.run(1 * kSecond);
  CheckReport broken = check_serializable(bad.commits());
  CHECK_FALSE(broken.ok());
  MESSAGE("wrong store: " << broken.summary(3));
}

TEST_CASE("contention with the paper's prepare rules stays serializable") {
  SimOptions o;
  o.seed = 5;
  o.jitter = 200'000;
  Run r(o, 4, 4, StoreOptions{PrepareRules::paper, false});
  r.run(1 * kSecond);
  CheckReport ok = check_serializable(r.commits());
  CHECK_MESSAGE(ok.ok(), ok.summary());
}

TEST_CASE("faults on one message class at a time (drop, duplicate, reorder): invariants hold") {
  for (int type = 1; type < kMsgTypes; ++type) {
    CAPTURE(msg_type_name(static_cast<MsgType>(type)));
    SimOptions o;
    o.loss = 0.05;
    o.duplicate = 0.05;
    o.reorder = 0.1;
    o.fault_types = 1U << type;
    o.seed = 11 + static_cast<std::uint64_t>(type);
    IrTimers fast;
    fast.propose_resend = fast.slow_path = fast.finalize_resend = 20 * kMillisecond;
    fast.get_timeout = 10 * kMillisecond;
    Run r(o, 50, 3, {}, fast);
    r.run(kSecond / 2);
    REQUIRE(r.drained);
    CheckReport ser = check_serializable(r.commits());
    CHECK_MESSAGE(ser.ok(), ser.summary());
    CheckReport rep = check_replicas(r.commits(), r.replicas(), 2);
    CHECK_MESSAGE(rep.ok(), rep.summary());
    CHECK(r.total().committed > 50);
  }
}
