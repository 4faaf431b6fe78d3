// reliability.arq: one position per member (MemberAcks) against the set of rseqs its acks
// reported, and the minimum over members (MinTree) against a linear scan.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "primitives/reliability/ack_positions.hpp"

using tmc::arq::MemberAcks;
using tmc::arq::MinTree;
using tmc::detail::AckBody;

namespace {

AckBody ack_of(const std::set<std::uint64_t>& got) {
  AckBody a;
  while (got.contains(a.cumulative + 1)) ++a.cumulative;
  for (std::uint64_t i = 0; i < 64; ++i) {
    if (got.contains(a.cumulative + 2 + i)) a.sack |= std::uint64_t{1} << i;
  }
  return a;
}

}  // namespace

TEST_CASE("MemberAcks: the union of a member's acks, up to the newest sent") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 30; ++round) {
    std::set<std::uint64_t> received;  // what the receiver has
    std::set<std::uint64_t> known;     // what the sender learned from its acks (up to top)
    MemberAcks m;
    std::uint64_t top = 0;
    for (int step = 0; step < 200; ++step) {
      top += rng() % 4;
      // The receiver gets most of what was sent, out of order; the sender hears acks,
      // some of them late (an older ack arriving after a newer one).
      for (std::uint64_t r = 1; r <= top + 3; ++r) {
        if (rng() % 100 < 70) received.insert(r);
      }
      const AckBody ack = ack_of(received);
      std::set<std::uint64_t> stale = received;
      if (rng() % 4 == 0 && !received.empty()) stale.erase(std::prev(stale.end()));
      const AckBody late = ack_of(stale);
      for (const AckBody& a : {ack, late}) {
        m = m.merged(a, top);
        for (std::uint64_t r = 1; r <= top; ++r) {
          if (a.covers(r)) known.insert(r);
        }
      }
      for (std::uint64_t r = 1; r <= top + 70; ++r) REQUIRE(m.has(r) == known.contains(r));
      CHECK_FALSE(m.has(m.base + 1));
      if (!known.empty()) CHECK(m.high() == *known.rbegin());
    }
  }
}

TEST_CASE("MemberAcks: an ack beyond the newest sent counts up to it only") {
  AckBody a;
  a.cumulative = 50;
  a.sack = 0b101;  // 52 and 54
  const MemberAcks m = MemberAcks{}.merged(a, 40);
  CHECK(m.base == 40);
  CHECK(m.sack == 0);
  AckBody b;
  b.cumulative = 10;
  b.sack = 0b101;  // 12 and 14
  const MemberAcks n = MemberAcks{}.merged(b, 13);
  CHECK(n.base == 10);
  CHECK(n.has(12));
  CHECK_FALSE(n.has(14));
}

TEST_CASE("MinTree: minimum, a slot holding it, and the slots below a bound") {
  std::mt19937_64 rng(11);
  for (const std::size_t n : {1U, 2U, 3U, 64U, 1000U}) {
    MinTree t;
    t.reset(n);
    std::vector<std::uint64_t> v(n, MinTree::kNone);
    CHECK(t.min() == MinTree::kNone);
    for (int step = 0; step < 500; ++step) {
      const std::size_t s = rng() % n;
      v[s] = rng() % 8 == 0 ? MinTree::kNone : rng() % 500;
      t.set(s, v[s]);
      const std::uint64_t m = *std::min_element(v.begin(), v.end());
      REQUIRE(t.min() == m);
      if (m != MinTree::kNone) CHECK(v[t.argmin()] == m);
      const std::uint64_t bound = rng() % 500;
      std::size_t below = 0;
      CHECK(t.all_below(bound, [&](std::size_t slot) {
        CHECK(v[slot] < bound);
        ++below;
        return true;
      }));
      CHECK(below == static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [&](std::uint64_t x) { return x < bound; })));
      // The first slot that fails stops the search.
      const bool any = below > 0;
      CHECK(t.all_below(bound, [](std::size_t) { return false; }) == !any);
    }
  }
}
