// Every OCC check of PREPARE, GET at a version, and COMMIT carrying the transaction.
#include <doctest/doctest.h>

#include "store.hpp"

using namespace tapir;

namespace {
Timestamp T(std::uint64_t t, std::uint64_t c = 1) { return Timestamp{t, c}; }
Txn reads(std::initializer_list<ReadEntry> r) {
  Txn t;
  t.reads = r;
  return t;
}
Txn writes(std::initializer_list<WriteEntry> w) {
  Txn t;
  t.writes = w;
  return t;
}
Store loaded(StoreOptions o = {}) {
  Store s(o);
  s.load("a", "a0");
  s.load("b", "b0");
  return s;
}
}  // namespace

TEST_CASE("store: GET returns the newest version, GET at ts the one valid then, FAIL when absent") {
  Store s = loaded();
  s.commit(1, T(10), writes({{"a", "a10"}}));
  s.commit(2, T(20), writes({{"a", "a20"}}));
  CHECK(s.get("a").value == "a20");
  CHECK(s.get("a").ts == T(20));
  CHECK(s.get_at("a", T(15)).value == "a10");
  CHECK(s.get_at("a", T(10)).ts == T(10));
  CHECK(s.get_at("a", T(5)).ts == Timestamp{});
  CHECK(s.get("zz").status == Status::fail);
}

TEST_CASE("store: PREPARE of a conflict-free txn is OK, and again OK at the same ts") {
  Store s = loaded();
  PrepareCheck c{};
  CHECK(s.prepare(7, reads({{"a", {}}}), T(10), &c).status == Status::ok);
  CHECK(c == PrepareCheck::ok);
  CHECK(s.prepare(7, reads({{"a", {}}}), T(10), &c).status == Status::ok);
  CHECK(c == PrepareCheck::already_prepared);
  CHECK(s.prepared_count() == 1);
}

TEST_CASE("store: a read of an overwritten version FAILs") {
  Store s = loaded();
  s.commit(1, T(10), writes({{"a", "a10"}}));
  PrepareCheck c{};
  CHECK(s.prepare(7, reads({{"a", {}}}), T(20), &c).status == Status::fail);
  CHECK(c == PrepareCheck::read_stale);
}

TEST_CASE("store: the wrong store (read check off) lets that read through") {
  Store s = loaded(StoreOptions{PrepareRules::repo, true});
  s.commit(1, T(10), writes({{"a", "a10"}}));
  CHECK(s.prepare(7, reads({{"a", {}}}), T(20)).status == Status::ok);
}

TEST_CASE("store: a read of a version this replica never saw is skipped") {
  Store s = loaded();
  PrepareCheck c{};
  CHECK(s.prepare(7, reads({{"a", T(99)}}), T(120), &c).status == Status::ok);
  CHECK(c == PrepareCheck::ok);
}

TEST_CASE("store: a read of a key with a prepared write ABSTAINs") {
  Store s = loaded();
  REQUIRE(s.prepare(1, writes({{"a", "x"}}), T(10)).status == Status::ok);
  PrepareCheck c{};
  CHECK(s.prepare(2, reads({{"a", {}}}), T(20), &c).status == Status::abstain);
  CHECK(c == PrepareCheck::read_pending_write);
}

TEST_CASE("store: a write older than the newest committed version RETRYs at that version") {
  Store s = loaded();
  s.commit(1, T(50), writes({{"a", "a50"}}));
  PrepareCheck c{};
  Reply r = s.prepare(2, writes({{"a", "x"}}), T(20), &c);
  CHECK(r.status == Status::retry);
  CHECK(r.ts == T(50));
  CHECK(c == PrepareCheck::write_old);
}

TEST_CASE("store: a write under a later committed read RETRYs at that read's ts") {
  Store s = loaded();
  s.commit(1, T(50), reads({{"a", {}}}));  // read a@(0,0), committed at 50
  PrepareCheck c{};
  Reply r = s.prepare(2, writes({{"a", "x"}}), T(20), &c);
  CHECK(r.status == Status::retry);
  CHECK(r.ts == T(50));
  CHECK(c == PrepareCheck::write_read_later);
}

TEST_CASE("store: a write under a later prepared write RETRYs") {
  Store s = loaded();
  REQUIRE(s.prepare(1, writes({{"a", "y"}}), T(50)).status == Status::ok);
  PrepareCheck c{};
  Reply r = s.prepare(2, writes({{"a", "x"}}), T(20), &c);
  CHECK(r.status == Status::retry);
  CHECK(r.ts == T(50));
  CHECK(c == PrepareCheck::write_pending_write);
}

TEST_CASE("store: a write under a later prepared read ABSTAINs (repo) or RETRYs (paper)") {
  for (PrepareRules rules : {PrepareRules::repo, PrepareRules::paper}) {
    Store s = loaded(StoreOptions{rules, false});
    REQUIRE(s.prepare(1, reads({{"a", {}}}), T(50)).status == Status::ok);
    PrepareCheck c{};
    Reply r = s.prepare(2, writes({{"a", "x"}}), T(20), &c);
    CHECK(c == PrepareCheck::write_pending_read);
    CHECK(r.status == (rules == PrepareRules::repo ? Status::abstain : Status::retry));
  }
}

TEST_CASE("store: PREPARE at a new ts replaces the old prepared entry and checks again") {
  Store s = loaded();
  REQUIRE(s.prepare(1, writes({{"a", "y"}}), T(50)).status == Status::ok);
  // Re-prepared at 60: its own old entry at 50 must not make it RETRY.
  CHECK(s.prepare(1, writes({{"a", "y"}}), T(60)).status == Status::ok);
  CHECK(s.prepared_count() == 1);
  PrepareCheck c{};
  CHECK(s.prepare(2, writes({{"a", "x"}}), T(55), &c).status == Status::retry);
  CHECK(c == PrepareCheck::write_pending_write);
}

TEST_CASE("store: COMMIT carries the txn (a replica that missed PREPARE applies it), ABORT forgets") {
  Store s = loaded();
  s.commit(9, T(30), writes({{"b", "b30"}}));  // never prepared here
  CHECK(s.get("b").value == "b30");
  s.commit(9, T(30), writes({{"b", "b30"}}));  // again: idempotent
  CHECK(s.get_at("b", T(29)).ts == Timestamp{});
  REQUIRE(s.prepare(4, writes({{"a", "x"}}), T(40)).status == Status::ok);
  s.abort(4);
  CHECK(s.prepared_count() == 0);
  CHECK(s.prepare(5, reads({{"a", {}}}), T(45)).status == Status::ok);  // no pending write left
  // COMMIT with an empty carried txn falls back to the prepared copy.
  REQUIRE(s.prepare(6, writes({{"a", "a70"}}), T(70)).status == Status::ok);
  s.commit(6, T(70), Txn{});
  CHECK(s.get("a").value == "a70");
}
