// Zero heap allocations per message: a counting global operator new/delete, pipelines
// warmed up, then 100k send -> receive round trips between two endpoints must not
// allocate once. Its own executable (tmc_alloc_tests), because replacing the global
// allocator affects every test in the process.
#include <doctest/doctest.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "runtime/pipeline.hpp"

#include "../support/key_files.hpp"

namespace {

// Plain counters: the tests are single-threaded, and an atomic would not change the proof.
std::size_t g_allocations = 0;
bool g_counting = false;

void* counted_alloc(std::size_t n) {
  if (g_counting) ++g_allocations;
  if (n == 0) n = 1;
  return std::malloc(n);
}

void* counted_aligned_alloc(std::size_t n, std::align_val_t al) {
  if (g_counting) ++g_allocations;
  const auto a = static_cast<std::size_t>(al);
  const std::size_t rounded = (n + a - 1) / a * a;
  return std::aligned_alloc(a, rounded == 0 ? a : rounded);
}

// Out of line so that GCC does not pair an inlined malloc/free with the operator
// new/delete it replaces (its -Wmismatched-new-delete would fire on every delete below).
[[gnu::noinline]] void counted_free(void* p) noexcept { std::free(p); }

}  // namespace

// Every replaceable form of the global allocator ([new.delete]).
void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t al) {
  if (void* p = counted_aligned_alloc(n, al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t al) {
  if (void* p = counted_aligned_alloc(n, al)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }

using namespace tmc;

namespace {

// A sink that never allocates: a fixed array of packets waiting to be carried.
class FixedSink final : public PipelineSink {
 public:
  ~FixedSink() { drain(); }
  void transmit(Packet* p) noexcept override {
    if (n_ < out_.size()) {
      out_[n_++] = p;
    } else {
      p->release();
      ++overflow;
    }
  }
  void deliver(Packet* p) noexcept override {
    ++delivered;
    p->release();
  }
  void on_event(const Event& e) noexcept override {
    (void)e;
    ++events;
  }
  /// Hand every transmitted datagram to `to` as a freshly received one.
  void carry(Pipeline& to, PacketPool& pool, std::uint64_t now_ns) noexcept {
    for (std::size_t i = 0; i < n_; ++i) {
      Packet* s = out_[i];
      Packet* r = pool.alloc();
      if (r != nullptr) {
        r->reset_for_receive();
        std::memcpy(r->buf, s->data(), s->len);
        r->len = s->len;
        to.receive(r, now_ns);
      }
      s->release();
    }
    n_ = 0;
  }
  void drain() noexcept {
    for (std::size_t i = 0; i < n_; ++i) out_[i]->release();
    n_ = 0;
  }

  std::size_t delivered = 0;
  std::size_t events = 0;
  std::size_t overflow = 0;

 private:
  std::array<Packet*, 8192> out_{};
  std::size_t n_ = 0;
};

PlannedStage st(std::string kind, std::map<std::string, std::string, std::less<>> params = {}) {
  PlannedStage s;
  s.kind = std::move(kind);
  s.params = std::move(params);
  return s;
}

struct Result {
  std::size_t allocations = 0;
  std::size_t delivered = 0;
  std::uint64_t held = 0;      ///< receiver's ordering.held: the reorder path was exercised
  std::uint64_t skipped = 0;   ///< receiver's ordering.gaps_skipped: so was the gap timer
};

// Build sender and receiver pipelines, run `warmup` round trips, then count allocations
// over `measured` more.
Result round_trips(const std::vector<PlannedStage>& tx_stages, const std::vector<PlannedStage>& rx_stages,
                   int warmup, int measured) {
  PacketPool pool(2048, 1024, 1 << 16);
  FixedSink tx_sink, rx_sink;
  Plan tx_plan, rx_plan;
  tx_plan.stages = tx_stages;
  rx_plan.stages = rx_stages;
  StageEnv tx_env{.channel = 77, .sender = 1, .epoch = 111, .seed = 5, .max_payload_bytes = 1400};
  StageEnv rx_env{.channel = 77, .sender = 2, .epoch = 222, .seed = 6, .max_payload_bytes = 1400};
  std::unique_ptr<Pipeline> tx, rx;
  REQUIRE(Pipeline::build(tx_plan, Registry::builtin(), tx_env, pool, tx_sink, tx).is_ok());
  REQUIRE(Pipeline::build(rx_plan, Registry::builtin(), rx_env, pool, rx_sink, rx).is_ok());

  std::uint64_t now_ns = 1;
  auto one = [&] {
    Packet* p = pool.alloc();
    if (p == nullptr) return;
    p->reset_for_send(64);
    std::memset(p->payload(), 0xAB, 64);
    tx->send(p, now_ns);
    if (tx->next_deadline_ns() != 0 && tx->next_deadline_ns() <= now_ns) tx->tick(now_ns);
    tx_sink.carry(*rx, pool, now_ns);
    if (rx->next_deadline_ns() != 0 && rx->next_deadline_ns() <= now_ns) rx->tick(now_ns);
    now_ns += 10'000;  // 10 us per message: timers (1 ms reorder, 5 ms hold) fire regularly
  };
  for (int i = 0; i < warmup; ++i) one();
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < measured; ++i) one();
  g_counting = false;
  Result r{g_allocations, rx_sink.delivered, 0, 0};
  const CounterSnapshot c = rx->counters();
  r.held = c.get("ordering.held");
  r.skipped = c.get("ordering.gaps_skipped");
  rx.reset();  // before the sinks and the pool
  tx.reset();
  return r;
}

constexpr int kWarmup = 20000;
constexpr int kMeasured = 100000;

}  // namespace

TEST_CASE("zero allocations: the counting allocator sees allocations at all") {
  g_allocations = 0;
  g_counting = true;
  auto* v = new std::vector<int>(100);
  g_counting = false;
  delete v;
  CHECK(g_allocations >= 2);
  // Allocations inside libtmc.so reach the replacement too (symbol interposition), so a
  // zero below is a real zero.
  PacketPool pool(2048, 4, 64);
  FixedSink sink;
  std::unique_ptr<Pipeline> pl;
  Plan plan;
  plan.stages = {st("ordering.seq")};
  REQUIRE(Pipeline::build(plan, Registry::builtin(), StageEnv{}, pool, sink, pl).is_ok());
  g_allocations = 0;
  g_counting = true;
  const CounterSnapshot c = pl->counters();
  g_counting = false;
  CHECK(g_allocations > 0);
}

TEST_CASE("zero allocations per message: seq + fifo(strict) + crc32c, both ends") {
  const std::vector<PlannedStage> stages = {st("ordering.fifo", {{"mode", "strict"}, {"hold_us", "5000"}}),
                                            st("ordering.seq"), st("checksum.crc32c", {{"require", "true"}})};
  const Result r = round_trips(stages, stages, kWarmup, kMeasured);
  CHECK(r.allocations == 0);
  CHECK(r.delivered == std::size_t(kWarmup + kMeasured));
}

TEST_CASE("zero allocations per message: with faults reordering, dropping, duplicating and delaying") {
  // The receiver's strict ordering holds, releases and skips gaps on its timer.
  const std::vector<PlannedStage> tx = {
      st("ordering.fifo"), st("ordering.seq"), st("checksum.crc32c"),
      st("faults.inject", {{"loss", "0.01"}, {"duplicate", "0.02"}, {"reorder", "0.1"}, {"corrupt", "0.01"},
                           {"delay_us", "50"}})};
  const std::vector<PlannedStage> rx = {st("ordering.fifo", {{"mode", "strict"}, {"hold_us", "5000"}}),
                                        st("ordering.seq"), st("checksum.crc32c", {{"require", "true"}})};
  const Result r = round_trips(tx, rx, kWarmup, kMeasured);
  CHECK(r.allocations == 0);
  CHECK(r.delivered > std::size_t(kWarmup + kMeasured) * 95 / 100);
  CHECK(r.held > 1000);
  CHECK(r.skipped > 100);
}

TEST_CASE("zero allocations per message: each stage alone") {
  const std::vector<std::vector<PlannedStage>> cases = {
      {},
      {st("ordering.seq")},
      {st("ordering.fifo"), st("ordering.seq")},
      {st("ordering.fifo", {{"mode", "strict"}}), st("ordering.seq")},
      {st("checksum.crc32c")},
      {st("faults.inject", {{"loss", "0.05"}, {"duplicate", "0.05"}, {"reorder", "0.05"}, {"corrupt", "0.05"},
                            {"delay_us", "20"}, {"direction", "both"}})},
  };
  for (const auto& stages : cases) {
    CAPTURE(stages.size());
    CAPTURE(stages.empty() ? std::string("(empty)") : stages.front().kind);
    const Result r = round_trips(stages, stages, kWarmup / 4, kMeasured);
    CHECK(r.allocations == 0);
    CHECK(r.delivered > 0);
  }
}

TEST_CASE("zero allocations per message: security.aead (encrypt and authenticate) with ordering, both ends") {
  testkeys::KeyDir dir;
  const std::string keys = dir.write("g.keys", {{1, 7}, {2, 8}});
  for (const char* mode : {"encrypt", "authenticate"}) {
    CAPTURE(mode);
    const std::vector<PlannedStage> stages = {st("ordering.fifo", {{"mode", "strict"}, {"hold_us", "5000"}}),
                                              st("ordering.seq"),
                                              st("security.aead", {{"mode", mode}, {"key_file", keys}})};
    const Result r = round_trips(stages, stages, kWarmup / 4, kMeasured);
    CHECK(r.allocations == 0);
    CHECK(r.delivered == std::size_t(kWarmup / 4 + kMeasured));
  }
}

namespace {

// A sink for the large-group test: one per member, its outbox reserved before counting.
class GroupSink final : public PipelineSink {
 public:
  GroupSink() { out.reserve(4096); }
  ~GroupSink() {
    for (Packet* p : out) p->release();
  }
  void transmit(Packet* p) noexcept override {
    if (out.size() < out.capacity()) {
      out.push_back(p);
    } else {
      p->release();
    }
  }
  void deliver(Packet* p) noexcept override {
    ++delivered;
    p->release();
  }
  void on_event(const Event& e) noexcept override {
    if (e.type == EventType::delivery_met) ++met;
  }
  std::vector<Packet*> out;
  std::size_t delivered = 0;
  std::size_t met = 0;
};

}  // namespace

TEST_CASE("zero allocations per message: reliable delivery acked by all of a 1,000-member group") {
  // One sender with the 1,000 members named in its view (slots beyond the inline word of a
  // MemberSet), 999 receivers that ack it. Acks from all, flow control's credits from all
  // (its policy set is kept per view, not rebuilt per send), membership heartbeats, the
  // sender's per-member tables: none of it may allocate per message once the view is full.
  constexpr int kMembers = 1000;
  constexpr int kWarm = 1500;
  constexpr int kCounted = 1500;
  PacketPool pool(2048, 4096, 1 << 18);
  std::vector<std::string> names;
  for (int i = 0; i < kMembers; ++i) names.push_back("m" + std::to_string(i));
  const std::vector<PlannedStage> stages = {
      st("reliability.arq"), st("flow.credit"),
      st("membership.heartbeat", {{"interval_us", "100000"}, {"timeout_us", "10000000"}, {"receives", "true"}})};
  std::vector<std::unique_ptr<GroupSink>> sinks;
  std::vector<std::unique_ptr<Pipeline>> pls;
  for (int i = 0; i < kMembers; ++i) {
    Plan plan;
    plan.stages = stages;
    plan.member = names[static_cast<std::size_t>(i)];
    plan.members = i == 0 ? names : std::vector<std::string>{names[0], plan.member};
    StageEnv env{.channel = 77,
                 .sender = static_cast<std::uint32_t>(i + 1),
                 .epoch = static_cast<std::uint32_t>(1000 + i),
                 .seed = static_cast<std::uint64_t>(i + 5),
                 .max_payload_bytes = 1400};
    sinks.push_back(std::make_unique<GroupSink>());
    std::unique_ptr<Pipeline> pl;
    REQUIRE(Pipeline::build(plan, Registry::builtin(), env, pool, *sinks.back(), pl).is_ok());
    pls.push_back(std::move(pl));
  }
  std::uint64_t now_ns = 1;
  for (auto& pl : pls) pl->start(now_ns);
  auto carry = [&](GroupSink& from, std::size_t first, std::size_t last) {
    for (Packet* s : from.out) {
      for (std::size_t j = first; j < last; ++j) {
        Packet* r = pool.alloc();
        if (r == nullptr) continue;
        r->reset_for_receive();
        std::memcpy(r->buf, s->data(), s->len);
        r->len = s->len;
        pls[j]->receive(r, now_ns);
      }
      s->release();
    }
    from.out.clear();
  };
  auto step = [&](bool send) {
    if (send) {
      Packet* p = pool.alloc();
      if (p != nullptr) {
        p->reset_for_send(64);
        std::memset(p->payload(), 0xAB, 64);
        pls[0]->send(p, now_ns);
      }
    }
    for (std::size_t i = 0; i < pls.size(); ++i) {
      if (pls[i]->next_deadline_ns() != 0 && pls[i]->next_deadline_ns() <= now_ns) pls[i]->tick(now_ns);
    }
    carry(*sinks[0], 1, pls.size());
    for (std::size_t i = 1; i < pls.size(); ++i) carry(*sinks[i], 0, 1);
    now_ns += 10'000;
  };
  for (int i = 0; i < kWarm; ++i) step(true);
  REQUIRE(pls[0]->group().receivers().count() == kMembers - 1);
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < kCounted; ++i) step(true);
  g_counting = false;
  CHECK(g_allocations == 0);
  for (int i = 0; i < 2000; ++i) step(false);  // let the last acks in
  CHECK(sinks[0]->met == std::size_t(kWarm + kCounted));
  for (std::size_t i = 1; i < sinks.size(); ++i) REQUIRE(sinks[i]->delivered == std::size_t(kWarm + kCounted));
  pls.clear();  // before the sinks and the pool
  sinks.clear();
}
