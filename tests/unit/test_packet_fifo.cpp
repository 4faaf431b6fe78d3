// PacketFifo (tmc/packet.hpp): order, push_front, size, and release of what is left.
#include <doctest/doctest.h>

#include <vector>

#include "tmc/packet.hpp"

using namespace tmc;

TEST_CASE("packet fifo: oldest first, push_front goes before everything, size follows") {
  PacketPool pool(2048, 8, 16);
  Packet* a = pool.alloc();
  Packet* b = pool.alloc();
  Packet* c = pool.alloc();
  Packet* d = pool.alloc();
  PacketFifo q;
  CHECK(q.empty());
  CHECK(q.pop() == nullptr);
  CHECK(q.front() == nullptr);

  q.push_front(a);  // into an empty queue: head and tail
  CHECK(q.size() == 1);
  q.push(b);
  CHECK(q.front() == a);
  Packet* first = q.pop();
  CHECK(first == a);
  CHECK(a->next == nullptr);  // popped packets are unlinked
  q.push_front(first);        // back where it was
  q.push(c);
  q.push_front(d);
  CHECK(q.size() == 4);
  CHECK(q.pop() == d);
  CHECK(q.pop() == a);
  CHECK(q.pop() == b);
  CHECK(q.pop() == c);
  CHECK(q.empty());
  CHECK(q.size() == 0);
  CHECK(q.pop() == nullptr);

  // Emptied by pops, the tail is gone too: a push starts afresh.
  q.push(c);
  q.push_front(b);
  CHECK(q.pop() == b);
  CHECK(q.pop() == c);

  for (Packet* p : {a, b, c, d}) p->release();
}

TEST_CASE("packet fifo: release_all returns every packet to the pool") {
  PacketPool pool(2048, 4, 4);
  PacketFifo q;
  std::size_t n = 0;
  while (Packet* p = pool.alloc()) {
    if (n % 2 == 0) {
      q.push(p);
    } else {
      q.push_front(p);
    }
    ++n;
  }
  REQUIRE(n > 0);
  CHECK(q.size() == n);
  q.release_all();
  CHECK(q.empty());
  std::size_t again = 0;
  std::vector<Packet*> back;
  while (Packet* p = pool.alloc()) {
    back.push_back(p);
    ++again;
  }
  CHECK(again == n);
  for (Packet* p : back) p->release();
}
