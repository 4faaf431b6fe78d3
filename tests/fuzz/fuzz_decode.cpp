// libFuzzer target: the wire decoder and the receive pipeline behind it.
//
// Every input is a datagram from a hostile network. It is copied into a pool packet,
// decoded on its own (checking the decoder's promises: bounds, extension index), and
// then fed through a receive pipeline with ordering.seq, ordering.fifo (strict) and
// checksum.crc32c, whose state persists across inputs so that sequences of packets are
// explored too. Nothing may crash, read out of bounds, or leak a packet.
//
//   scripts/run-fuzz.sh            (builds with clang + ASan/UBSan and runs it, bounded)
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "runtime/pipeline.hpp"

using namespace tmc;

namespace {

// Seeds in tests/fuzz/seeds/decode/ use this channel, so that the fuzzer starts past the
// channel filter.
constexpr std::uint32_t kChannel = wire::channel_hash("fuzz", 4);

class ReleasingSink final : public PipelineSink {
 public:
  void transmit(Packet* p) noexcept override { p->release(); }
  void deliver(Packet* p) noexcept override {
    // The pipeline promises the payload lies within the datagram it received.
    if (p->payload_off < p->off || p->payload_off + p->payload_len > p->off + p->len) std::abort();
    p->release();
  }
  void on_event(const Event& e) noexcept override { (void)e; }
};

struct Harness {
  PacketPool pool{65536, 64, 4096};
  ReleasingSink sink;
  std::unique_ptr<Pipeline> pipeline;
  std::uint64_t now_ns = 1;

  Harness() {
    Plan plan;
    PlannedStage fifo;
    fifo.kind = "ordering.fifo";
    fifo.params = {{"mode", "strict"}, {"window", "16"}, {"hold_us", "1000"}, {"max_senders", "8"}};
    PlannedStage seq;
    seq.kind = "ordering.seq";
    PlannedStage crc;
    crc.kind = "checksum.crc32c";
    plan.stages = {fifo, seq, crc};
    const StageEnv env{.channel = kChannel, .sender = 1, .epoch = 1, .seed = 1, .max_payload_bytes = 65000};
    if (!Pipeline::build(plan, Registry::builtin(), env, pool, sink, pipeline).is_ok()) std::abort();
  }
};

void check_decoded(const Packet& p) {
  const std::uint64_t end = std::uint64_t{p.off} + p.len;
  if (p.payload_off < p.off + wire::kBaseHeaderBytes || std::uint64_t{p.payload_off} + p.payload_len > end) std::abort();
  if (p.n_ext > wire::kMaxExtensions) std::abort();
  for (std::uint8_t i = 0; i < p.n_ext; ++i) {
    if (p.ext_body[i] < p.off + wire::kBaseHeaderBytes || std::uint64_t{p.ext_body[i]} + p.ext_len[i] > p.payload_off) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Harness h;
  if (size > wire::kMaxDatagramBytes) return 0;

  // 1. The decoder alone.
  Packet* p = h.pool.alloc();
  if (p == nullptr) std::abort();  // would mean a leak: every packet is released below
  p->reset_for_receive();
  if (size > 0) std::memcpy(p->buf, data, size);
  p->len = static_cast<std::uint32_t>(size);
  if (wire::decode(*p) == wire::DecodeError::none) check_decoded(*p);

  // 2. The receive pipeline (it decodes again from the raw bytes).
  p->reset_for_receive();
  if (size > 0) std::memcpy(p->buf, data, size);
  p->len = static_cast<std::uint32_t>(size);
  h.now_ns += 100'000;
  h.pipeline->receive(p, h.now_ns);
  if (h.pipeline->next_deadline_ns() != 0 && h.pipeline->next_deadline_ns() <= h.now_ns) h.pipeline->tick(h.now_ns);

  // Every packet is either back in the pool or held by a stage: nothing leaks.
  if (h.pool.in_use() != h.pipeline->held_packets()) std::abort();
  // Strict ordering holds at most window packets for each of max_senders senders.
  if (h.pipeline->held_packets() > 16 * 8) std::abort();
  return 0;
}
