// IndexList and IndexTable (src/primitives/common/): against std::list and std::map models
// under random operations, and the corner cases of each.
#include <doctest/doctest.h>

#include <algorithm>
#include <list>
#include <map>
#include <vector>

#include "primitives/common/index_list.hpp"
#include "primitives/common/index_table.hpp"
#include "tmc/rng.hpp"

using namespace tmc::detail;

namespace {

struct Node {
  int payload = 0;
  IndexLinks a;  // two lists through the same nodes
  IndexLinks b;
};
using ListA = IndexList<Node, &Node::a>;
using ListB = IndexList<Node, &Node::b>;

template <class L>
std::vector<std::uint32_t> walk(const L& l, const std::vector<Node>& nodes) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t i = l.front(); i != kNoIndex; i = L::next(nodes.data(), i)) out.push_back(i);
  return out;
}

std::vector<std::uint32_t> walk_back(const ListA& l, const std::vector<Node>& nodes) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t i = l.back(); i != kNoIndex; i = nodes[i].a.prev) out.push_back(i);
  return out;
}

}  // namespace

TEST_CASE("index list: push, move, remove at either end and in the middle") {
  std::vector<Node> n(5);
  ListA l;
  CHECK(l.empty());
  CHECK(l.front() == kNoIndex);
  CHECK(l.back() == kNoIndex);
  l.push_back(n.data(), 0);
  l.push_back(n.data(), 1);
  l.push_front(n.data(), 2);
  CHECK(walk(l, n) == std::vector<std::uint32_t>{2, 0, 1});
  l.move_to_front(n.data(), 1);
  CHECK(walk(l, n) == std::vector<std::uint32_t>{1, 2, 0});
  l.move_to_back(n.data(), 1);
  CHECK(walk(l, n) == std::vector<std::uint32_t>{2, 0, 1});
  l.remove(n.data(), 0);  // middle
  CHECK(n[0].a.prev == kNoIndex);
  CHECK(n[0].a.next == kNoIndex);
  CHECK(walk(l, n) == std::vector<std::uint32_t>{2, 1});
  l.remove(n.data(), 2);  // head
  CHECK(l.front() == 1);
  l.remove(n.data(), 1);  // the last one
  CHECK(l.empty());
  CHECK(l.back() == kNoIndex);
  l.push_front(n.data(), 4);
  CHECK(l.front() == 4);
  CHECK(l.back() == 4);
}

TEST_CASE("index list: two lists through the same nodes follow std::list under random use") {
  constexpr std::uint32_t kN = 64;
  std::vector<Node> n(kN);
  ListA la;
  ListB lb;
  std::list<std::uint32_t> ma;
  std::list<std::uint32_t> mb;
  tmc::Rng rng(7);
  for (int step = 0; step < 20000; ++step) {
    const auto i = static_cast<std::uint32_t>(rng.between(0, kN - 1));
    const bool in_a = std::find(ma.begin(), ma.end(), i) != ma.end();
    const bool in_b = std::find(mb.begin(), mb.end(), i) != mb.end();
    switch (rng.between(0, 5)) {
      case 0:
        if (!in_a) {
          la.push_front(n.data(), i);
          ma.push_front(i);
        }
        break;
      case 1:
        if (!in_a) {
          la.push_back(n.data(), i);
          ma.push_back(i);
        }
        break;
      case 2:
        if (in_a) {
          la.remove(n.data(), i);
          ma.remove(i);
        }
        break;
      case 3:
        if (in_a) {
          la.move_to_front(n.data(), i);
          ma.remove(i);
          ma.push_front(i);
        }
        break;
      case 4:
        if (in_a) {
          la.move_to_back(n.data(), i);
          ma.remove(i);
          ma.push_back(i);
        }
        break;
      default:
        if (in_b) {
          lb.remove(n.data(), i);
          mb.remove(i);
        } else {
          lb.push_front(n.data(), i);
          mb.push_front(i);
        }
        break;
    }
    if (step % 97 == 0) {
      REQUIRE(walk(la, n) == std::vector<std::uint32_t>(ma.begin(), ma.end()));
      REQUIRE(walk_back(la, n) == std::vector<std::uint32_t>(ma.rbegin(), ma.rend()));
      REQUIRE(walk(lb, n) == std::vector<std::uint32_t>(mb.begin(), mb.end()));
    }
  }
  CHECK(walk(la, n) == std::vector<std::uint32_t>(ma.begin(), ma.end()));
  CHECK(walk(lb, n) == std::vector<std::uint32_t>(mb.begin(), mb.end()));
}

TEST_CASE("index table: exact tags follow std::map under random inserts and erases, colliding hashes too") {
  constexpr std::uint32_t kSlots = 256;
  for (const std::uint32_t spread : {0xFFFFFFFFu, 7u, 0u}) {  // well spread, clustered, all in one slot
    CAPTURE(spread);
    IndexTable t;
    t.reset(kSlots);
    CHECK(t.slots() == kSlots);
    auto hash = [&](std::uint32_t key) { return (key * 0x9E3779B1u) & spread; };
    std::map<std::uint32_t, std::uint32_t> model;  // key -> index
    std::vector<std::uint32_t> free_idx;
    for (std::uint32_t i = 0; i < kSlots / 2; ++i) free_idx.push_back(i);
    tmc::Rng rng(spread);
    for (int step = 0; step < 20000; ++step) {
      const auto key = static_cast<std::uint32_t>(rng.between(0, 300));
      const auto it = model.find(key);
      if (it == model.end()) {
        CHECK(t.find(hash(key), key) == kNoIndex);
        if (!free_idx.empty()) {
          const std::uint32_t idx = free_idx.back();
          free_idx.pop_back();
          t.insert(hash(key), key, idx);
          model[key] = idx;
        }
      } else {
        REQUIRE(t.find(hash(key), key) == it->second);
        if (rng.between(0, 1) == 0) {
          t.erase(hash(key), it->second, [&](std::uint32_t tag, std::uint32_t) { return hash(tag); });
          free_idx.push_back(it->second);
          model.erase(it);
          CHECK(t.find(hash(key), key) == kNoIndex);
        }
      }
    }
    for (const auto& [key, idx] : model) CHECK(t.find(hash(key), key) == idx);
  }
}

TEST_CASE("index table: partial tags are confirmed by the caller's match") {
  struct Key {
    std::uint64_t a;
    std::uint32_t b;
  };
  const std::vector<Key> keys{{1, 1}, {1, 2}, {0x100000001, 1}};  // all share the low 32 bits of a
  IndexTable t;
  t.reset(16);
  auto tag = [](const Key& k) { return static_cast<std::uint32_t>(k.a); };
  for (std::uint32_t i = 0; i < keys.size(); ++i) t.insert(5, tag(keys[i]), i);  // one hash for all
  auto find = [&](const Key& k) {
    return t.find(5, tag(k), [&](std::uint32_t i) { return keys[i].a == k.a && keys[i].b == k.b; });
  };
  CHECK(find(keys[0]) == 0);
  CHECK(find(keys[1]) == 1);
  CHECK(find(keys[2]) == 2);
  CHECK(find(Key{1, 3}) == kNoIndex);
  t.erase(5, 0, [](std::uint32_t, std::uint32_t) { return 5u; });
  CHECK(find(keys[0]) == kNoIndex);
  CHECK(find(keys[1]) == 1);
  CHECK(find(keys[2]) == 2);
}
