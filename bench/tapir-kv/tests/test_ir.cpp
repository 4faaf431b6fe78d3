// IR replica and client: idempotence per opid, duplicated, reordered and early-finalize
// messages, fast and slow paths, view mismatch, and the wire format.
#include <doctest/doctest.h>

#include <vector>

#include "client.hpp"
#include "keys.hpp"
#include "replica.hpp"

using namespace tapir;

namespace {

struct Captured {
  std::uint32_t to;
  IrMessage m;
};

struct CaptureReplicaNet final : ReplicaNet {
  std::vector<Captured> out;
  void send_to_client(std::uint32_t c, Bytes msg, MsgType) override {
    IrMessage m;
    REQUIRE(decode(msg, m));
    out.push_back({c, m});
  }
};

struct CaptureClientNet final : ClientNet {
  std::vector<Captured> out;  // to = replica, or 99 for "all"
  void send_to_replicas(Bytes msg, MsgType) override {
    IrMessage m;
    REQUIRE(decode(msg, m));
    out.push_back({99, m});
  }
  void send_to_replica(std::uint32_t r, Bytes msg, MsgType) override {
    IrMessage m;
    REQUIRE(decode(msg, m));
    out.push_back({r, m});
  }
};

IrMessage commit_propose(OpId opid, std::uint64_t txnid, Timestamp ts, const std::string& key) {
  IrMessage m;
  m.type = MsgType::propose_inconsistent;
  m.opid = opid;
  m.request.op = OpCode::commit;
  m.request.txnid = txnid;
  m.request.has_ts = true;
  m.request.ts = ts;
  m.request.txn.writes.push_back({key, "v"});
  return m;
}

}  // namespace

TEST_CASE("wire: every message type round-trips; truncated records are refused") {
  IrMessage m;
  m.type = MsgType::reply_consensus;
  m.view = 3;
  m.replica = 2;
  m.opid = {11, 12};
  m.finalized = true;
  m.result = Reply{Status::retry, "val", Timestamp{5, 6}};
  std::vector<std::uint8_t> buf;
  encode(m, buf);
  IrMessage d;
  REQUIRE(decode(buf, d));
  CHECK(d.type == m.type);
  CHECK(d.view == 3);
  CHECK(d.replica == 2);
  CHECK(d.opid == m.opid);
  CHECK(d.finalized);
  CHECK(d.result == m.result);
  IrMessage p = commit_propose({1, 2}, 77, {9, 1}, "k");
  p.request.txn.reads.push_back({"r", {3, 4}});
  encode(p, buf);
  REQUIRE(decode(buf, d));
  CHECK(d.request.txn.writes.size() == 1);
  CHECK(d.request.txn.reads.at(0).version == Timestamp{3, 4});
  for (std::size_t cut = 0; cut < buf.size(); ++cut) CHECK_FALSE(decode(Bytes(buf.data(), cut), d));
}

TEST_CASE("replica: duplicated ProposeInconsistent is recorded once; Finalize executes once and re-confirms") {
  CaptureReplicaNet net;
  Replica r(1, net);
  r.store().load("k", "k0");
  IrMessage p = commit_propose({5, 1}, 100, {10, 5}, "k");
  r.handle(0, p);
  r.handle(0, p);
  REQUIRE(net.out.size() == 2);
  CHECK(net.out[0].m.type == MsgType::reply_inconsistent);
  CHECK_FALSE(net.out[1].m.finalized);
  CHECK(r.stats().duplicates == 1);
  CHECK(r.store().get("k").value == "k0");  // not executed before Finalize
  IrMessage f;
  f.type = MsgType::finalize_inconsistent;
  f.opid = p.opid;
  r.handle(0, f);
  CHECK(r.store().get("k").value == "v");
  r.handle(0, f);  // again: Confirm again, no second execution
  REQUIRE(net.out.size() == 4);
  CHECK(net.out[2].m.type == MsgType::confirm);
  CHECK(net.out[3].m.type == MsgType::confirm);
  CHECK(r.store().get("k").ts == Timestamp{10, 5});
  r.handle(0, p);  // a late duplicate Propose reports it finalized
  CHECK(net.out.back().m.finalized);
}

TEST_CASE("replica: FinalizeInconsistent before its Propose is harmless") {
  CaptureReplicaNet net;
  Replica r(0, net);
  r.store().load("k", "k0");
  IrMessage p = commit_propose({5, 1}, 100, {10, 5}, "k");
  IrMessage f;
  f.type = MsgType::finalize_inconsistent;
  f.opid = p.opid;
  r.handle(0, f);  // unknown: silent, nothing executed
  CHECK(net.out.empty());
  CHECK(r.stats().early_finalizes == 1);
  CHECK(r.store().get("k").value == "k0");
  r.handle(0, p);  // the Propose finalizes it at once: reply, then Confirm
  REQUIRE(net.out.size() == 2);
  CHECK(net.out[0].m.type == MsgType::reply_inconsistent);
  CHECK(net.out[1].m.type == MsgType::confirm);
  CHECK(r.store().get("k").value == "v");
  r.handle(0, f);  // the client's resend: Confirm again, executed once
  CHECK(net.out.back().m.type == MsgType::confirm);
  r.handle(0, p);  // a duplicate Propose: finalized, not re-executed
  CHECK(net.out.back().m.finalized);
  CHECK(r.stats().duplicates == 1);
}

TEST_CASE("replica: an early FinalizeInconsistent of an ABORT is applied when its Propose comes") {
  CaptureReplicaNet net;
  Replica r(0, net);
  r.store().load("k", "k0");
  IrMessage prep;
  prep.type = MsgType::propose_consensus;
  prep.opid = {5, 1};
  prep.request.op = OpCode::prepare;
  prep.request.txnid = 100;
  prep.request.has_ts = true;
  prep.request.ts = {10, 5};
  prep.request.txn.writes.push_back({"k", "x"});
  r.handle(0, prep);
  REQUIRE(r.store().prepared_count() == 1);
  IrMessage ab;
  ab.type = MsgType::propose_inconsistent;
  ab.opid = {5, 2};
  ab.request.op = OpCode::abort;
  ab.request.txnid = 100;
  IrMessage f;
  f.type = MsgType::finalize_inconsistent;
  f.opid = ab.opid;
  r.handle(0, f);
  CHECK(r.store().prepared_count() == 1);
  r.handle(0, ab);
  CHECK(r.store().prepared_count() == 0);
}

TEST_CASE("replica: ProposeConsensus executes PREPARE once; FinalizeConsensus stores the decision, also before the Propose") {
  CaptureReplicaNet net;
  Replica r(2, net);
  r.store().load("k", "k0");
  IrMessage p;
  p.type = MsgType::propose_consensus;
  p.opid = {7, 3};
  p.request.op = OpCode::prepare;
  p.request.txnid = 55;
  p.request.has_ts = true;
  p.request.ts = {20, 7};
  p.request.txn.writes.push_back({"k", "x"});
  r.handle(0, p);
  r.handle(0, p);
  REQUIRE(net.out.size() == 2);
  CHECK(net.out[0].m.result.status == Status::ok);
  CHECK(net.out[1].m.result.status == Status::ok);
  CHECK(r.stats().prepare_checks[static_cast<int>(PrepareCheck::ok)] == 1);  // executed once
  IrMessage f;
  f.type = MsgType::finalize_consensus;
  f.opid = p.opid;
  f.result = Reply{Status::fail, {}, {}};
  r.handle(0, f);
  CHECK(net.out.back().m.type == MsgType::confirm);
  r.handle(0, p);
  CHECK(net.out.back().m.finalized);
  CHECK(net.out.back().m.result.status == Status::fail);  // the decided result, not the local one
  // Early FinalizeConsensus for another op: recorded finalized, PREPARE never executed.
  IrMessage p2 = p;
  p2.opid = {7, 4};
  p2.request.txnid = 56;
  f.opid = p2.opid;
  f.result = Reply{Status::ok, {}, {}};
  r.handle(0, f);
  r.handle(0, p2);
  CHECK(net.out.back().m.finalized);
  CHECK(net.out.back().m.result.status == Status::ok);
  CHECK(r.store().prepared_count() == 1);  // only txn 55
}

namespace {
struct ClientFixture {
  std::vector<std::string> keys = make_keys(4);
  CaptureClientNet net;
  Client client;
  explicit ClientFixture(double put = 1.0)
      : client(make_cfg(put), net) {}
  Client::Config make_cfg(double put) {
    Client::Config c;
    c.index = 0;
    c.clientid = 9;
    c.n = 3;
    c.workload.keys = &keys;
    c.workload.put_fraction = put;
    c.log_commits = true;
    return c;
  }
  const IrMessage& last(MsgType t) {
    for (auto it = net.out.rbegin(); it != net.out.rend(); ++it)
      if (it->m.type == t) return it->m;
    FAIL("no message of that type");
    static IrMessage none;
    return none;
  }
  void reply(std::uint32_t replica, const IrMessage& propose, Status s, std::uint64_t view = 0, Nanos now = 0) {
    IrMessage m;
    m.type = propose.type == MsgType::propose_consensus ? MsgType::reply_consensus : MsgType::reply_inconsistent;
    m.view = view;
    m.replica = replica;
    m.opid = propose.opid;
    m.result.status = s;
    std::vector<std::uint8_t> b;
    encode(m, b);
    client.on_message(replica, b, now);
  }
  void confirm(std::uint32_t replica, OpId opid, Nanos now = 0) {
    IrMessage m;
    m.type = MsgType::confirm;
    m.replica = replica;
    m.opid = opid;
    std::vector<std::uint8_t> b;
    encode(m, b);
    client.on_message(replica, b, now);
  }
};
}  // namespace

TEST_CASE("client: three identical replies take the fast path; duplicates count once") {
  ClientFixture fx;  // all PUTs: straight to PREPARE
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  fx.reply(0, prep, Status::ok);
  fx.reply(0, prep, Status::ok);  // duplicate
  fx.reply(1, prep, Status::ok);
  CHECK(fx.client.stats().committed == 0);  // 2 distinct replies: not yet
  fx.reply(2, prep, Status::ok);
  CHECK(fx.client.stats().fast_path == 1);
  CHECK(fx.client.stats().committed == 1);
  CHECK(fx.last(MsgType::propose_inconsistent).request.op == OpCode::commit);
  CHECK(fx.last(MsgType::propose_inconsistent).request.txn.writes.size() >= 1);  // COMMIT carries the txn
  CHECK(fx.last(MsgType::finalize_consensus).opid == prep.opid);
}

TEST_CASE("client: a mismatch takes the slow path: FinalizeConsensus, decided after f+1 Confirms") {
  ClientFixture fx;
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  fx.reply(0, prep, Status::ok);
  fx.reply(1, prep, Status::abstain);
  CHECK(fx.client.stats().slow_path == 1);
  const IrMessage& fin = fx.last(MsgType::finalize_consensus);
  CHECK(fin.result.status == Status::abstain);  // decide: 1 OK of f+1 needed, no RETRY -> not OK
  fx.confirm(0, prep.opid);
  CHECK(fx.client.stats().retries == 0);
  fx.confirm(1, prep.opid);
  CHECK(fx.client.stats().retries == 1);  // decided not-OK: a new PREPARE attempt
  CHECK(fx.last(MsgType::propose_consensus).opid != prep.opid);
}

TEST_CASE("client: replies from different views do not make a fast quorum") {
  ClientFixture fx;
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  fx.reply(0, prep, Status::ok, 0);
  fx.reply(1, prep, Status::ok, 1);
  fx.reply(2, prep, Status::ok, 0);
  CHECK(fx.client.stats().fast_path == 0);
  CHECK(fx.client.stats().slow_path == 1);
  CHECK(fx.last(MsgType::finalize_consensus).result.status == Status::ok);  // view 0: 2 OKs
}

TEST_CASE("client: the slow-path timer decides on f+1 replies; a FAIL aborts") {
  ClientFixture fx;
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  fx.reply(0, prep, Status::ok);
  fx.reply(2, prep, Status::fail);
  // a mismatch with f+1 in: slow path at once, decided FAIL
  CHECK(fx.last(MsgType::finalize_consensus).result.status == Status::fail);
  fx.confirm(0, prep.opid);
  fx.confirm(2, prep.opid);
  CHECK(fx.client.stats().aborted_fail == 1);
  CHECK(fx.last(MsgType::propose_inconsistent).request.op == OpCode::abort);

  ClientFixture fy;
  fy.client.start(1000);
  IrMessage p2 = fy.last(MsgType::propose_consensus);
  fy.reply(0, p2, Status::ok);
  fy.reply(1, p2, Status::ok);
  CHECK(fy.client.stats().slow_path == 0);  // waiting for the third
  const Nanos t = fy.client.next_deadline();
  fy.client.on_timer(t);
  CHECK(fy.client.stats().slow_path_timer == 1);
  CHECK(fy.last(MsgType::finalize_consensus).result.status == Status::ok);
}

TEST_CASE("client: a lost reply resends the Propose on the IR timer; late replies of an old op are ignored") {
  ClientFixture fx;
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  fx.reply(0, prep, Status::ok);
  const Nanos t = fx.client.next_deadline();
  CHECK(t == 1000 + 500 * kMillisecond);
  fx.client.on_timer(t);  // slow-path timer and resend fall together; 1 reply: resend only
  CHECK(fx.client.stats().resent[static_cast<int>(MsgType::propose_consensus)] == 1);
  fx.reply(1, prep, Status::ok, 0, t + 1);
  CHECK(fx.client.stats().slow_path == 1);  // timer already fired: f+1 suffice now
  fx.confirm(0, prep.opid, t + 2);
  fx.confirm(1, prep.opid, t + 2);
  CHECK(fx.client.stats().committed == 1);
  const auto stale_before = fx.client.stats().stale_replies;
  fx.reply(2, prep, Status::ok, 0, t + 3);  // the old op's last reply: ignored
  CHECK(fx.client.stats().stale_replies == stale_before + 1);
}

TEST_CASE("client: the next txn begins only after the COMMIT has f+1 replies; Finalize until f+1 Confirms") {
  ClientFixture fx;
  fx.client.start(1000);
  IrMessage prep = fx.last(MsgType::propose_consensus);
  for (std::uint32_t r = 0; r < 3; ++r) fx.reply(r, prep, Status::ok);
  IrMessage commit = fx.last(MsgType::propose_inconsistent);
  const auto proposes = fx.client.stats().prepare_attempts;
  fx.reply(0, commit, Status::ok);
  CHECK(fx.client.stats().prepare_attempts == proposes);  // still waiting at Begin
  fx.reply(1, commit, Status::ok);
  CHECK(fx.client.stats().prepare_attempts == proposes + 1);  // the next txn's PREPARE
  CHECK(fx.last(MsgType::finalize_inconsistent).opid == commit.opid);
  CHECK_FALSE(fx.client.quiescent());
}
