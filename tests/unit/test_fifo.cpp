// ordering.fifo: drop-stale (the paper's rule) and strict (bounded reorder buffer) modes.
#include <doctest/doctest.h>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

using Seqs = std::vector<std::uint64_t>;
constexpr std::uint64_t kMs = 1'000'000;

// A receiver with ordering.fifo above ordering.seq, fed forged datagrams.
struct Rx {
  PacketPool pool{2048, 64, 1 << 16};
  Endpoint ep;
  explicit Rx(std::initializer_list<std::pair<const std::string, std::string>> fifo_params = {})
      : ep(pool, make_plan({stage("ordering.fifo", fifo_params), stage("ordering.seq")}), make_env(100)) {}

  void in(std::uint64_t seq, std::uint64_t now_ns = 0, std::uint32_t sender = 7, std::uint32_t epoch = 1,
          std::uint16_t flags = 0) {
    ep->receive(datagram(pool, sender, epoch, seq, "m", flags), now_ns);
  }
  void in_all(std::initializer_list<std::uint64_t> seqs) {
    for (std::uint64_t s : seqs) in(s);
  }
  Seqs got() const { return ep.sink.seqs(); }
  std::uint64_t c(const char* name) const { return ep.pipeline->counters().get(name); }
  std::size_t held() const { return ep.pipeline->held_packets(); }
};

}  // namespace

TEST_CASE("ordering.fifo drop-stale: delivers newer numbers, drops older ones as stale or duplicate") {
  Rx rx;
  rx.in_all({1, 2, 4, 3, 4, 5, 2});
  CHECK(rx.got() == Seqs{1, 2, 4, 5});
  CHECK(rx.ep->drops(DropReason::stale) == 1);      // 3 was never delivered
  CHECK(rx.ep->drops(DropReason::duplicate) == 2);  // 4 and 2 were
  CHECK(rx.c("ordering.stale_dropped") == 1);
  CHECK(rx.c("ordering.duplicates_dropped") == 2);
  CHECK(rx.held() == 0);
  // Senders are independent.
  rx.in(1, 0, 8);
  CHECK(rx.got() == Seqs{1, 2, 4, 5, 1});
}

TEST_CASE("ordering.fifo drop-stale: the first packet of a sender is delivered whatever its number") {
  Rx rx;
  rx.in_all({500, 499, 501});
  CHECK(rx.got() == Seqs{500, 501});
  CHECK(rx.c("ordering.stale_dropped") == 1);
}

TEST_CASE("ordering.fifo: packets flagged unordered bypass ordering and leave its state alone") {
  for (const char* mode : {"drop-stale", "strict"}) {
    CAPTURE(mode);
    Rx rx({{"mode", mode}});
    rx.in(1);
    rx.in(10, 0, 7, 1, wire::kFlagUnordered);
    rx.in(3, 0, 7, 1, wire::kFlagUnordered);
    rx.in(2);
    CHECK(rx.got() == Seqs{1, 10, 3, 2});
    CHECK(rx.c("ordering.unordered") == 2);
    CHECK(rx.held() == 0);
  }
}

TEST_CASE("ordering.fifo: without ordering.seq below there is nothing to order by") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("ordering.fifo")}), make_env(100));
  ep->receive(datagram(pool, 7, 1, 3), 0);  // Packet::seq stays 0: the seq stage is absent
  CHECK(ep.sink.delivered.empty());
  CHECK(ep->counters().get("ordering.no_seq") == 1);
  CHECK(ep->drops(DropReason::malformed) == 1);
}

TEST_CASE("ordering.fifo strict: early packets wait for the gap and are released in order") {
  Rx rx({{"mode", "strict"}});
  rx.in(1);
  rx.in(3);
  CHECK(rx.held() == 1);
  rx.in(5);
  CHECK(rx.held() == 2);
  CHECK(rx.got() == Seqs{1});
  rx.in(2);
  CHECK(rx.got() == Seqs{1, 2, 3});
  CHECK(rx.held() == 1);
  rx.in(4);
  CHECK(rx.got() == Seqs{1, 2, 3, 4, 5});
  CHECK(rx.held() == 0);
  CHECK(rx.c("ordering.held") == 2);
  CHECK(rx.c("ordering.released") == 2);
  CHECK(rx.c("ordering.gaps_skipped") == 0);
  CHECK(rx.ep.sink.events.empty());
}

TEST_CASE("ordering.fifo strict: duplicates of delivered or held packets are dropped") {
  Rx rx({{"mode", "strict"}});
  rx.in_all({1, 1, 3, 3});
  CHECK(rx.got() == Seqs{1});
  CHECK(rx.held() == 1);
  CHECK(rx.ep->drops(DropReason::duplicate) == 2);
  CHECK(rx.c("ordering.duplicates_dropped") == 2);
  rx.in(2);
  rx.in(2);
  CHECK(rx.got() == Seqs{1, 2, 3});
  CHECK(rx.ep->drops(DropReason::duplicate) == 3);
}

TEST_CASE("ordering.fifo strict: a packet beyond the window skips the first gap") {
  Rx rx({{"mode", "strict"}, {"window", "4"}});
  rx.in_all({1, 3, 4, 5, 6});  // window covers (2, 6]: all four held
  CHECK(rx.held() == 4);
  rx.in(7);                    // beyond the window: give up on 2
  CHECK(rx.got() == Seqs{1, 3, 4, 5, 6, 7});
  CHECK(rx.held() == 0);
  CHECK(rx.c("ordering.gaps_skipped") == 1);
  CHECK(rx.c("ordering.seqs_skipped") == 1);
  CHECK(rx.c("ordering.window_skips") == 1);
  REQUIRE(rx.ep.sink.events.size() == 1);
  const Event& e = rx.ep.sink.events[0];
  CHECK(e.type == EventType::gap_skipped);
  CHECK(e.sender == 7);
  CHECK(e.epoch == 1);
  CHECK(e.seq == 2);
  CHECK(e.count == 1);
  CHECK(e.stage == "ordering.fifo");
  // The skipped packet arriving late is stale, not a duplicate.
  rx.in(2);
  CHECK(rx.ep->drops(DropReason::stale) == 1);
  CHECK(rx.ep->drops(DropReason::duplicate) == 0);
}

TEST_CASE("ordering.fifo strict: a far jump with nothing held waits at the window's far end") {
  Rx rx({{"mode", "strict"}, {"window", "4"}});
  rx.in(1);
  rx.in(100);  // 2..95 given up on at once; 96..99 may still come
  CHECK(rx.got() == Seqs{1});
  CHECK(rx.held() == 1);
  REQUIRE(rx.ep.sink.events.size() == 1);
  CHECK(rx.ep.sink.events[0].seq == 2);
  CHECK(rx.ep.sink.events[0].count == 94);
  rx.in_all({97, 96, 99, 98});
  CHECK(rx.got() == Seqs{1, 96, 97, 98, 99, 100});
  CHECK(rx.c("ordering.seqs_skipped") == 94);
}

TEST_CASE("ordering.fifo strict: a held packet that waited hold_us skips the gap on the timer") {
  Rx rx({{"mode", "strict"}, {"hold_us", "50000"}});
  rx.in(1, 0);
  rx.in(3, 0);
  rx.in(5, 10 * kMs);
  CHECK(rx.ep->next_deadline_ns() == 50 * kMs);
  rx.ep->tick(49 * kMs);
  CHECK(rx.got() == Seqs{1});
  rx.ep->tick(50 * kMs);  // 3 waited 50 ms: skip 2, deliver 3; 5 has waited only 40 ms
  CHECK(rx.got() == Seqs{1, 3});
  CHECK(rx.held() == 1);
  CHECK(rx.ep->next_deadline_ns() == 60 * kMs);
  rx.ep->tick(60 * kMs);
  CHECK(rx.got() == Seqs{1, 3, 5});
  CHECK(rx.held() == 0);
  CHECK(rx.c("ordering.timeout_skips") == 2);
  CHECK(rx.c("ordering.gaps_skipped") == 2);
  CHECK(rx.c("ordering.seqs_skipped") == 2);
  CHECK(rx.ep.sink.count_events(EventType::gap_skipped) == 2);
  CHECK(rx.ep->next_deadline_ns() == 0);
}

TEST_CASE("ordering.fifo strict: the gap filling before the deadline cancels the skip") {
  Rx rx({{"mode", "strict"}});
  rx.in(1, 0);
  rx.in(3, 0);
  rx.in(2, 1 * kMs);
  rx.ep->tick(rx.ep->next_deadline_ns());
  CHECK(rx.got() == Seqs{1, 2, 3});
  CHECK(rx.c("ordering.gaps_skipped") == 0);
}

TEST_CASE("ordering.fifo strict: first sight of a sender") {
  SUBCASE("a small number: we saw its start, so wait for 1") {
    Rx rx({{"mode", "strict"}});
    rx.in(2);
    CHECK(rx.held() == 1);
    rx.in(1);
    CHECK(rx.got() == Seqs{1, 2});
  }
  SUBCASE("a large number: we joined late, start there and report what came before") {
    Rx rx({{"mode", "strict"}});
    rx.in(1000);
    rx.in(1002);
    rx.in(1001);
    CHECK(rx.got() == Seqs{1000, 1001, 1002});
    REQUIRE(rx.ep.sink.events.size() == 1);
    const Event& e = rx.ep.sink.events[0];
    CHECK(e.type == EventType::gap_skipped);
    CHECK(e.sender == 7);
    CHECK(e.epoch == 1);
    CHECK(e.seq == 1);
    CHECK(e.count == 999);
    CHECK(rx.c("ordering.join_skipped") == 1);
    CHECK(rx.c("ordering.join_seqs_skipped") == 999);
    // A join is not in-stream loss.
    CHECK(rx.c("ordering.gaps_skipped") == 0);
    CHECK(rx.c("ordering.seqs_skipped") == 0);
    rx.in(999);  // a straggler from before the join: inside the reported gap, so stale
    CHECK(rx.ep->drops(DropReason::stale) == 1);
    CHECK(rx.got() == Seqs{1000, 1001, 1002});
  }
  SUBCASE("exactly window + 1 still waits for 1") {
    Rx rx({{"mode", "strict"}, {"window", "4"}});
    rx.in(5);
    CHECK(rx.held() == 1);
    CHECK(rx.ep.sink.events.empty());
    rx.in_all({1, 2, 3, 4});
    CHECK(rx.got() == Seqs{1, 2, 3, 4, 5});
    CHECK(rx.ep.sink.events.empty());
  }
}

TEST_CASE("ordering.fifo strict: a receiver that lost a sender's first window + 1 messages reports them") {
  // The simulator's finding: with window 4, messages 1..5 lost. Every number must be
  // delivered or inside a reported gap (exactly-once accounting).
  Rx rx({{"mode", "strict"}, {"window", "4"}});
  rx.in_all({6, 8, 7, 9});
  CHECK(rx.got() == Seqs{6, 7, 8, 9});
  REQUIRE(rx.ep.sink.events.size() == 1);
  CHECK(rx.ep.sink.events[0].type == EventType::gap_skipped);
  CHECK(rx.ep.sink.events[0].seq == 1);
  CHECK(rx.ep.sink.events[0].count == 5);
  CHECK(rx.c("ordering.join_skipped") == 1);
  CHECK(rx.held() == 0);
}

TEST_CASE("ordering.fifo strict: a lost start within the window is skipped and reported like any gap") {
  Rx rx({{"mode", "strict"}, {"window", "4"}, {"hold_us", "1000"}});
  rx.in(3, 0);
  rx.in(4, 0);
  CHECK(rx.got().empty());
  rx.ep->tick(rx.ep->next_deadline_ns());
  CHECK(rx.got() == Seqs{3, 4});
  REQUIRE(rx.ep.sink.events.size() == 1);
  CHECK(rx.ep.sink.events[0].seq == 1);
  CHECK(rx.ep.sink.events[0].count == 2);
  CHECK(rx.c("ordering.gaps_skipped") == 1);
  CHECK(rx.c("ordering.join_skipped") == 0);
}

TEST_CASE("ordering.fifo strict: a restarted sender first seen far into its new epoch reports the start") {
  Rx rx({{"mode", "strict"}, {"window", "4"}});
  rx.in(1, 0, 7, 111);
  rx.in(50, 0, 7, 222);
  CHECK(rx.got() == Seqs{1, 50});
  CHECK(rx.ep.sink.count_events(EventType::epoch_changed) == 1);
  REQUIRE(rx.ep.sink.count_events(EventType::gap_skipped) == 1);
  for (const Event& e : rx.ep.sink.events) {
    if (e.type != EventType::gap_skipped) continue;
    CHECK(e.epoch == 222);
    CHECK(e.seq == 1);
    CHECK(e.count == 49);
  }
}

TEST_CASE("ordering.fifo drop-stale: a first number far from 1 is delivered without any gap event") {
  Rx rx;
  rx.in(1000);
  CHECK(rx.got() == Seqs{1000});
  CHECK(rx.ep.sink.events.empty());
  CHECK(rx.c("ordering.join_skipped") == 0);
}

TEST_CASE("ordering.fifo: a new epoch resets the sender; packets of the old one are stale_epoch") {
  for (const char* mode : {"drop-stale", "strict"}) {
    CAPTURE(mode);
    Rx rx({{"mode", mode}});
    rx.in(1, 0, 7, 111);
    rx.in(2, 0, 7, 111);
    rx.in(4, 0, 7, 111);  // strict: held
    rx.in(1, 0, 7, 222);  // restarted: strict delivers 4 first (skipping 3)
    if (std::string(mode) == "strict") {
      CHECK(rx.got() == Seqs{1, 2, 4, 1});
      CHECK(rx.ep.sink.count_events(EventType::gap_skipped) == 1);
    } else {
      CHECK(rx.got() == Seqs{1, 2, 4, 1});
    }
    CHECK(rx.held() == 0);
    CHECK(rx.ep.sink.count_events(EventType::epoch_changed) == 1);
    for (const Event& e : rx.ep.sink.events) {
      if (e.type == EventType::epoch_changed) {
        CHECK(e.sender == 7);
        CHECK(e.epoch == 222);
      }
    }
    CHECK(rx.c("ordering.epoch_changes") == 1);
    rx.in(3, 0, 7, 111);  // a straggler from the old incarnation
    CHECK(rx.ep->drops(DropReason::stale_epoch) == 1);
    CHECK(rx.c("ordering.stale_epoch_dropped") == 1);
    rx.in(2, 0, 7, 222);
    CHECK(rx.got() == Seqs{1, 2, 4, 1, 2});
  }
}

TEST_CASE("ordering.fifo: only the last few retired epochs are remembered") {
  Rx rx;
  for (std::uint32_t epoch = 1; epoch <= 6; ++epoch) rx.in(1, 0, 7, epoch);
  CHECK(rx.c("ordering.epoch_changes") == 5);
  rx.in(5, 0, 7, 5);  // retired recently: refused
  CHECK(rx.ep->drops(DropReason::stale_epoch) == 1);
  rx.in(5, 0, 7, 1);  // retired long ago: taken as yet another restart
  CHECK(rx.c("ordering.epoch_changes") == 6);
}

TEST_CASE("ordering.fifo: beyond max_senders the least recently active sender is evicted") {
  Rx rx({{"max_senders", "2"}});
  rx.in(1, 0, 1);
  rx.in(1, 0, 2);
  rx.in(2, 0, 1);  // sender 1 is now the most recent
  rx.in(1, 0, 3);  // evicts sender 2
  CHECK(rx.c("ordering.senders_evicted") == 1);
  rx.in(2, 0, 1);  // sender 1 still remembered: duplicate
  CHECK(rx.ep->drops(DropReason::duplicate) == 1);
  rx.in(1, 0, 2);  // sender 2 was forgotten: its old number is new again (evicts sender 3)
  CHECK(rx.got() == Seqs{1, 1, 2, 1, 1});
  CHECK(rx.c("ordering.senders_evicted") == 2);
}

TEST_CASE("ordering.fifo: a flood of unknown sender ids never evicts a member of the view") {
  Rx rx({{"max_senders", "4"}});
  rx.ep->group().heard("member", 1, 1, true, 0);
  rx.in(1, 0, 1);
  rx.in(2, 0, 1);
  for (std::uint32_t id = 1000; id < 1100; ++id) rx.in(1, 0, id);  // far more than max_senders
  CHECK(rx.c("ordering.senders_evicted") == 100 - 3);
  // The member's state survived: its old numbers are duplicates, the next one is delivered.
  rx.in(1, 0, 1);
  rx.in(2, 0, 1);
  CHECK(rx.ep->drops(DropReason::duplicate) == 2);
  rx.in(3, 0, 1);
  CHECK(rx.got().back() == 3);
}

TEST_CASE("ordering.fifo strict: evicting a sender delivers what it held") {
  Rx rx({{"mode", "strict"}, {"max_senders", "1"}});
  rx.in(1, 0, 1);
  rx.in(3, 0, 1);
  CHECK(rx.held() == 1);
  rx.in(1, 0, 2);
  CHECK(rx.got() == Seqs{1, 3, 1});
  CHECK(rx.held() == 0);
  CHECK(rx.ep.sink.count_events(EventType::gap_skipped) == 1);
}

TEST_CASE("ordering.fifo strict: memory stays bounded under a flood of sender ids") {
  Rx rx({{"mode", "strict"}, {"max_senders", "64"}, {"window", "8"}});
  std::size_t max_held = 0;
  for (std::uint32_t id = 1; id <= 20000; ++id) {
    rx.in(2, 0, id * 2654435761u);  // each new sender holds one packet, waiting for seq 1
    max_held = std::max(max_held, rx.held());
    if (rx.ep.sink.delivered.size() > 1000) rx.ep.sink.clear();
  }
  CHECK(max_held == 64);
  CHECK(rx.held() == 64);
  CHECK(rx.c("ordering.senders_evicted") == 20000 - 64);
  CHECK(rx.c("ordering.held") == 20000);
  CHECK(rx.pool.in_use() == rx.held() + rx.ep.sink.delivered.size());
  // Lookups still work after all that churn: the most recent senders are known.
  rx.in(1, 0, 20000u * 2654435761u);
  CHECK(rx.held() == 63);
}

TEST_CASE("ordering.fifo strict: held_packets() is exact and the destructor releases held packets") {
  PacketPool pool(2048, 64, 4096);
  {
    Endpoint ep(pool, make_plan({stage("ordering.fifo", {{"mode", "strict"}}), stage("ordering.seq")}),
                make_env(100));
    ep->receive(datagram(pool, 7, 1, 1), 0);
    for (std::uint64_t s = 3; s < 40; s += 2) ep->receive(datagram(pool, 7, 1, s), 0);
    for (std::uint64_t s = 3; s < 10; ++s) ep->receive(datagram(pool, 8, 1, s), 0);
    CHECK(ep->held_packets() == 19 + 7);
    ep.sink.clear();
    CHECK(pool.in_use() == 26);
  }
  CHECK(pool.in_use() == 0);
}

TEST_CASE("ordering.fifo strict: random reordering within the window comes out in order") {
  Rx rx({{"mode", "strict"}, {"window", "16"}});
  std::vector<std::uint64_t> order;
  for (std::uint64_t base = 1; base <= 2000; base += 8) {
    // Reverse each block of 8: every packet arrives out of order but within the window.
    for (std::uint64_t k = 8; k > 0; --k) order.push_back(base + k - 1);
  }
  for (std::uint64_t s : order) rx.in(s);
  Seqs want;
  for (std::uint64_t s = 1; s <= 2000; ++s) want.push_back(s);
  CHECK(rx.got() == want);
  CHECK(rx.c("ordering.gaps_skipped") == 0);
  CHECK(rx.held() == 0);
}

TEST_CASE("ordering.fifo: bad parameters are refused with the parameter's name") {
  PacketPool pool(2048, 8, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(
      make_plan({stage("ordering.fifo", {{"mode", "sideways"}, {"window", "0"}, {"max_senders", "0"}})}),
      Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  CHECK(st.message().find("'mode'") != std::string::npos);
  CHECK(st.message().find("'window'") != std::string::npos);
  CHECK(st.message().find("'max_senders'") != std::string::npos);
  CHECK(st.message().find("ordering.fifo") != std::string::npos);
}
