// Stage microbenchmarks: ns per 64-byte message for each stage's on_send and on_receive,
// CRC32C hardware vs software, a whole send -> receive pipeline against an empty one, and
// reliability.arq between two members with its acks flowing back.
// Budget: each stage under 50 ns per 64-byte message. Results: docs/benchmarks.md.
//
//   build/bench/tmc_micro_stages --benchmark_min_time=0.05
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "primitives/checksum/crc32c_impl.hpp"
#include "runtime/pipeline.hpp"
#include "stage_bench.hpp"

using namespace tmc;

namespace {

constexpr std::uint32_t kPayload = 64;

using bench::BenchIo;

std::unique_ptr<Stage> make_stage(const char* kind, const std::map<std::string, std::string, std::less<>>& given = {}) {
  const Registry& reg = Registry::builtin();
  const StageInfo* info = reg.find(kind);
  Params params;
  std::vector<std::string> errors;
  if (info == nullptr || !reg.resolve_params(*info, given, params, errors)) std::abort();
  std::unique_ptr<Stage> s = info->factory();
  StageEnv env{.channel = 77, .sender = 2, .epoch = 9, .seed = 1, .max_payload_bytes = 1400};
  if (!s->configure(params, env, errors)) std::abort();
  return s;
}

void fresh_message(Packet& p) {
  p.reset_for_send(kPayload);
  p.channel = 77;
  p.sender = 1;
  p.epoch = 5;
}

// A decoded 64-byte data packet from sender 1 carrying seq extension `seq` (and a CRC
// trailer when `crc`).
void received_packet(PacketPool& pool, Packet& out, std::uint64_t seq, bool crc) {
  Packet* s = pool.alloc();
  fresh_message(*s);
  std::memset(s->payload(), 0x5A, kPayload);
  wire::put_u64(s->push_ext(wire::Ext::seq, 8), seq);
  if (crc) s->flags = wire::kFlagCrc;
  s->seal();
  if (crc) {
    wire::put_u32(s->data() + s->len, detail::crc32c(s->data(), s->len));
    s->len += 4;
  }
  out.reset_for_receive();
  std::memcpy(out.buf, s->data(), s->len);
  out.len = s->len;
  s->release();
  if (wire::decode(out) != wire::DecodeError::none) std::abort();
  out.seq = seq;
}

// --- per stage ------------------------------------------------------------------------

void BM_seq_send(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("ordering.seq");
  BenchIo io;
  Packet* p = pool.alloc();
  for (auto _ : state) {
    fresh_message(*p);
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
BENCHMARK(BM_seq_send);

void BM_seq_receive(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("ordering.seq");
  BenchIo io;
  Packet* p = pool.alloc();
  received_packet(pool, *p, 12345, false);
  for (auto _ : state) {
    stage->on_receive(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
BENCHMARK(BM_seq_receive);

void fifo_in_order(benchmark::State& state, const char* mode) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("ordering.fifo", {{"mode", mode}});
  BenchIo io;
  Packet* p = pool.alloc();
  received_packet(pool, *p, 1, false);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    p->seq = ++seq;
    stage->on_receive(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
void BM_fifo_drop_stale_receive(benchmark::State& state) { fifo_in_order(state, "drop-stale"); }
void BM_fifo_strict_receive(benchmark::State& state) { fifo_in_order(state, "strict"); }
BENCHMARK(BM_fifo_drop_stale_receive);
BENCHMARK(BM_fifo_strict_receive);

// Every pair arrives swapped: one packet is held, then the gap fills and both go up.
void BM_fifo_strict_receive_swapped_pairs(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("ordering.fifo", {{"mode", "strict"}});
  BenchIo io;
  Packet* a = pool.alloc();
  Packet* b = pool.alloc();
  received_packet(pool, *a, 1, false);
  received_packet(pool, *b, 1, false);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    a->seq = seq + 2;
    b->seq = seq + 1;
    seq += 2;
    stage->on_receive(a, io);
    stage->on_receive(b, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(2 * state.iterations());
  a->release();
  b->release();
}
BENCHMARK(BM_fifo_strict_receive_swapped_pairs);

void BM_fifo_send(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("ordering.fifo", {{"mode", "strict"}});
  BenchIo io;
  Packet* p = pool.alloc();
  fresh_message(*p);
  for (auto _ : state) {
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
BENCHMARK(BM_fifo_send);

void BM_crc32c_send(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("checksum.crc32c");
  BenchIo io;
  Packet* p = pool.alloc();
  for (auto _ : state) {
    fresh_message(*p);  // the stage seals and appends: start from an unsealed message
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
BENCHMARK(BM_crc32c_send);

void BM_crc32c_receive(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("checksum.crc32c", {{"require", "true"}});
  BenchIo io;
  Packet* p = pool.alloc();
  received_packet(pool, *p, 1, true);
  for (auto _ : state) {
    stage->on_receive(p, io);
    p->len += 4;  // put the stripped trailer back for the next round
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  if (io.drops != 0) state.SkipWithError("CRC mismatch in benchmark setup");
  p->release();
}
BENCHMARK(BM_crc32c_receive);

// security.aead: one datagram sealed by a sender stage and opened by a receiver stage
// (copied between them as a transport would), at state.range(0) bytes of payload;
// state.range(1): 1 = encrypt, 0 = authenticate.
std::string aead_key_file() {
  static const std::string path = [] {
    const std::string p = "/tmp/tmc-micro-stages-" + std::to_string(::getpid()) + ".keys";
    std::ofstream(p) << "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    std::atexit([] { std::remove(("/tmp/tmc-micro-stages-" + std::to_string(::getpid()) + ".keys").c_str()); });
    return p;
  }();
  return path;
}

void BM_aead_round_trip(benchmark::State& state) {
  const auto bytes = static_cast<std::uint32_t>(state.range(0));
  const char* mode = state.range(1) != 0 ? "encrypt" : "authenticate";
  PacketPool pool(4096, 4, 16);
  auto tx = make_stage("security.aead", {{"mode", mode}, {"key_file", aead_key_file()}});
  auto rx = make_stage("security.aead", {{"mode", mode}, {"key_file", aead_key_file()}});
  BenchIo io;
  Packet* s = pool.alloc();
  Packet* r = pool.alloc();
  for (auto _ : state) {
    s->reset_for_send(bytes);
    s->channel = 77;
    s->sender = 2;  // the stage's own identity (make_stage's StageEnv), as Pipeline::send sets it
    s->epoch = 9;
    tx->on_send(s, io);
    r->reset_for_receive();
    std::memcpy(r->buf, s->data(), s->len);
    r->len = s->len;
    if (wire::decode(*r) != wire::DecodeError::none) std::abort();
    rx->on_receive(r, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  if (io.drops != 0) state.SkipWithError("a datagram failed to open");
  s->release();
  r->release();
}
BENCHMARK(BM_aead_round_trip)->Args({64, 0})->Args({64, 1})->Args({1024, 0})->Args({1024, 1});

void faults_send(benchmark::State& state, const std::map<std::string, std::string, std::less<>>& params) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("faults.inject", params);
  BenchIo io;
  Packet* p = pool.alloc();
  for (auto _ : state) {
    fresh_message(*p);
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
void BM_faults_send_idle(benchmark::State& state) { faults_send(state, {}); }
void BM_faults_send_loss_corrupt(benchmark::State& state) {
  faults_send(state, {{"loss", "0.01"}, {"corrupt", "0.01"}});
}
BENCHMARK(BM_faults_send_idle);
BENCHMARK(BM_faults_send_loss_corrupt);

void BM_faults_receive_idle(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  auto stage = make_stage("faults.inject", {{"direction", "receive"}, {"loss", "0.01"}});
  BenchIo io;
  Packet* p = pool.alloc();
  received_packet(pool, *p, 1, false);
  for (auto _ : state) {
    stage->on_receive(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  p->release();
}
BENCHMARK(BM_faults_receive_idle);

// --- pacing -------------------------------------------------------------------------------

void BM_bucket_send(benchmark::State& state) {
  PacketPool pool(2048, 4, 16);
  // A rate far above what the loop reaches: the cost of the bucket's bookkeeping on the
  // path where a packet finds tokens (the common case of a well-provisioned rate).
  auto stage = make_stage("pacing.bucket", {{"rate_bps", "1000000000000"}});
  BenchIo io;
  Packet* p = pool.alloc();
  for (auto _ : state) {
    io.now_ += 1'000;
    fresh_message(*p);
    stage->on_send(p, io);
    benchmark::DoNotOptimize(io.last);
  }
  state.SetItemsProcessed(state.iterations());
  if (stage->held_packets() != 0) state.SkipWithError("bucket held packets in benchmark");
  p->release();
}
BENCHMARK(BM_bucket_send);

// Like BenchIo, but with a real pool behind alloc() (coalesce takes its batch buffer and
// the receiver's inner packets from it) and releasing whatever it is handed.
class PoolIo final : public StageIo {
 public:
  explicit PoolIo(PacketPool& pool) : StageIo(&now_), pool_(pool) {}
  void down(Packet* p) noexcept override {
    ++passed;
    p->release();
  }
  void up(Packet* p) noexcept override {
    ++passed;
    p->release();
  }
  void drop(Packet* p, DropReason r) noexcept override {
    (void)r;
    ++drops;
    p->release();
  }
  void arm_timer(std::uint64_t deadline_ns) noexcept override { (void)deadline_ns; }
  void cancel_timer() noexcept override {}
  void count(std::size_t index, std::uint64_t n) noexcept override { counters[index % 32] += n; }
  void notify(const Event& e) noexcept override { (void)e; }
  Packet* alloc() noexcept override { return pool_.alloc(); }
  Packet* clone(const Packet& p) noexcept override { return pool_.clone(p); }
  Packet* alloc_large(std::uint32_t payload_bytes) noexcept override { return pool_.alloc_large(payload_bytes); }
  Group& group() noexcept override { return group_; }

  std::uint64_t now_ = 0;
  std::uint64_t passed = 0;
  std::uint64_t drops = 0;
  std::uint64_t counters[32] = {};

 private:
  PacketPool& pool_;
  Group group_;
};

// ns per 64-byte message batched: seal, copy into the batch buffer, and (every ~16
// messages, when 1400 bytes are full) push the batch down.
void BM_coalesce_send(benchmark::State& state) {
  PacketPool pool(2048, 8, 64);
  auto stage = make_stage("pacing.coalesce");
  PoolIo io(pool);
  for (auto _ : state) {
    Packet* p = pool.alloc();
    fresh_message(*p);
    stage->on_send(p, io);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["datagrams"] = static_cast<double>(io.passed);
}
BENCHMARK(BM_coalesce_send);

// ns per 64-byte message split out of a batch of 12: the batch is copied into a receive
// buffer each round (as a transport would) and every record decoded into its own packet.
void BM_coalesce_receive(benchmark::State& state) {
  constexpr std::uint32_t kPerBatch = 12;  // 12 records of 100 bytes fit in 1400
  PacketPool pool(2048, 32, 64);
  auto tx = make_stage("pacing.coalesce", {{"max_messages", std::to_string(kPerBatch)}});
  auto rx = make_stage("pacing.coalesce");
  // Capture one batch from the sending side.
  class CaptureIo final : public StageIo {
   public:
    explicit CaptureIo(PacketPool& pool) : StageIo(&now_), pool_(pool) {}
    void down(Packet* p) noexcept override { last = p; }
    void up(Packet* p) noexcept override { p->release(); }
    void drop(Packet* p, DropReason r) noexcept override {
      (void)r;
      p->release();
    }
    void arm_timer(std::uint64_t deadline_ns) noexcept override { (void)deadline_ns; }
    void cancel_timer() noexcept override {}
    void count(std::size_t index, std::uint64_t n) noexcept override {
      (void)index;
      (void)n;
    }
    void notify(const Event& e) noexcept override { (void)e; }
    Packet* alloc() noexcept override { return pool_.alloc(); }
    Packet* clone(const Packet& p) noexcept override { return pool_.clone(p); }
    Packet* alloc_large(std::uint32_t payload_bytes) noexcept override { return pool_.alloc_large(payload_bytes); }
    Group& group() noexcept override { return group_; }
    std::uint64_t now_ = 0;
    Packet* last = nullptr;

   private:
    PacketPool& pool_;
    Group group_;
  } cap(pool);
  for (std::uint32_t i = 0; i < kPerBatch; ++i) {
    Packet* p = pool.alloc();
    fresh_message(*p);
    std::memset(p->payload(), 0x5A, kPayload);
    wire::put_u64(p->push_ext(wire::Ext::seq, 8), i + 1);
    tx->on_send(p, cap);
  }
  if (cap.last == nullptr) {
    state.SkipWithError("no batch was flushed");
    return;
  }
  cap.last->seal();
  std::vector<std::uint8_t> bytes(cap.last->data(), cap.last->data() + cap.last->len);
  cap.last->release();
  PoolIo io(pool);
  for (auto _ : state) {
    Packet* r = pool.alloc();
    r->reset_for_receive();
    std::memcpy(r->buf, bytes.data(), bytes.size());
    r->len = static_cast<std::uint32_t>(bytes.size());
    if (wire::decode(*r) != wire::DecodeError::none) std::abort();
    rx->on_receive(r, io);
  }
  state.SetItemsProcessed(state.iterations() * kPerBatch);
  if (io.drops != 0 || io.passed != static_cast<std::uint64_t>(state.iterations()) * kPerBatch) {
    state.SkipWithError("records lost in benchmark");
  }
}
BENCHMARK(BM_coalesce_receive);

// --- CRC32C itself ----------------------------------------------------------------------

void crc_bench(benchmark::State& state, bool hw) {
  if (hw && !detail::crc32c_hw_available()) {
    state.SkipWithError("no SSE4.2 on this CPU");
    return;
  }
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(state.range(0)), 0xA5);
  for (auto _ : state) {
    std::uint32_t c = hw ? detail::crc32c_hw(buf.data(), buf.size()) : detail::crc32c_sw(buf.data(), buf.size());
    benchmark::DoNotOptimize(c);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
void BM_crc32c_hw(benchmark::State& state) { crc_bench(state, true); }
void BM_crc32c_sw(benchmark::State& state) { crc_bench(state, false); }
BENCHMARK(BM_crc32c_hw)->Arg(64)->Arg(1024);
BENCHMARK(BM_crc32c_sw)->Arg(64)->Arg(1024);

// --- whole pipelines ---------------------------------------------------------------------

void pipeline_round_trip(benchmark::State& state, const std::vector<std::pair<const char*, const char*>>& stages) {
  Plan plan;
  for (const auto& [kind, mode] : stages) {
    PlannedStage s;
    s.kind = kind;
    if (mode != nullptr) s.params["mode"] = mode;
    plan.stages.push_back(std::move(s));
  }
  bench::pipeline_round_trip(state, plan, Registry::builtin(), kPayload);
}
void BM_pipeline_empty(benchmark::State& state) { pipeline_round_trip(state, {}); }
void BM_pipeline_seq_fifo_crc32c(benchmark::State& state) {
  pipeline_round_trip(state, {{"ordering.fifo", "drop-stale"}, {"ordering.seq", nullptr}, {"checksum.crc32c", nullptr}});
}
void BM_pipeline_seq_fifo_strict_crc32c(benchmark::State& state) {
  pipeline_round_trip(state, {{"ordering.fifo", "strict"}, {"ordering.seq", nullptr}, {"checksum.crc32c", nullptr}});
}
BENCHMARK(BM_pipeline_empty);
BENCHMARK(BM_pipeline_seq_fifo_crc32c);
BENCHMARK(BM_pipeline_seq_fifo_strict_crc32c);

// reliability.arq between two members, acks and all: the sender stamps and keeps a copy of
// every message, the receiver tracks, delivers and acks it (every ack_every packets), and
// the acks flow back and settle the copies. Acks are held in a queue and handed back after
// each send, as a transport would, never from inside the pipeline that sent them. The clock
// moves 1 us per message, so the ack delay's timer runs too.
class QueueSink final : public PipelineSink {
 public:
  void transmit(Packet* p) noexcept override { queue.push_back(p); }
  void deliver(Packet* p) noexcept override {
    ++delivered;
    p->release();
  }
  void on_event(const Event& e) noexcept override { ++events[e.type == EventType::delivery_met ? 0 : 1]; }
  std::vector<Packet*> queue;
  std::uint64_t delivered = 0;
  std::uint64_t events[2] = {};
};

void arq_round_trip(benchmark::State& state, const char* deliver) {
  PacketPool pool(2048, 64, 1 << 14);
  QueueSink tx_sink, rx_sink;
  Plan tx_plan, rx_plan;
  PlannedStage arq;
  arq.kind = "reliability.arq";
  arq.params["deliver"] = deliver;
  tx_plan.stages.push_back(arq);
  rx_plan.stages.push_back(arq);
  tx_plan.member = "a";
  rx_plan.member = "b";
  std::unique_ptr<Pipeline> tx, rx;
  StageEnv tx_env{.channel = 77, .sender = 1, .epoch = 5, .seed = 1, .max_payload_bytes = 1400};
  StageEnv rx_env{.channel = 77, .sender = 2, .epoch = 6, .seed = 2, .max_payload_bytes = 1400};
  if (!Pipeline::build(tx_plan, Registry::builtin(), tx_env, pool, tx_sink, tx).is_ok() ||
      !Pipeline::build(rx_plan, Registry::builtin(), rx_env, pool, rx_sink, rx).is_ok()) {
    state.SkipWithError("pipeline build failed");
    return;
  }
  tx->group().heard("b", 2, 6, true, 0);
  rx->group().heard("a", 1, 5, true, 0);
  tx->start(0);
  rx->start(0);
  // Every datagram in `from`'s transmit queue into `to`, copied as a transport would.
  auto carry = [&](QueueSink& from, Pipeline& to, std::uint64_t now) {
    for (Packet* p : from.queue) {
      Packet* r = pool.alloc();
      r->reset_for_receive();
      std::memcpy(r->buf, p->data(), p->len);
      r->len = p->len;
      p->release();
      to.receive(r, now);
    }
    from.queue.clear();
  };
  tx_sink.queue.reserve(64);
  rx_sink.queue.reserve(64);
  std::uint64_t now = 0;
  for (auto _ : state) {
    now += 1000;
    Packet* p = pool.alloc();
    p->reset_for_send(kPayload);
    std::memset(p->payload(), 0x42, kPayload);
    tx->send(p, now);
    if (tx->next_deadline_ns() != 0 && tx->next_deadline_ns() <= now) tx->tick(now);
    if (rx->next_deadline_ns() != 0 && rx->next_deadline_ns() <= now) rx->tick(now);
    carry(tx_sink, *rx, now);
    carry(rx_sink, *tx, now);
  }
  state.SetItemsProcessed(state.iterations());
  if (rx_sink.delivered != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("messages lost");
  if (tx_sink.events[1] != 0) state.SkipWithError("messages failed");
  tx->stop(now);
  rx->stop(now);
  carry(tx_sink, *rx, now);
  carry(rx_sink, *tx, now);
}
void BM_pipeline_arq(benchmark::State& state) { arq_round_trip(state, "arrival"); }
void BM_pipeline_arq_in_order(benchmark::State& state) { arq_round_trip(state, "in_order"); }
BENCHMARK(BM_pipeline_arq);
BENCHMARK(BM_pipeline_arq_in_order);

}  // namespace

BENCHMARK_MAIN();
