// libFuzzer target: whole compiled receiving pipelines fed arbitrary datagram sequences.
//
// Two pipelines, both compiled from manifests by the compiler, so every stage of a real
// channel is there: reliable, strictly ordered, fragmented, coalesced, flow-controlled with
// membership — once without security (every stage parses hostile bytes) and once with
// `security: encrypt` (only the AEAD stage should ever see them). An input is a sequence of
// records [u8 op][u16 length][bytes]: op bit 0 picks the pipeline, bits 2..6 advance the
// clock by that many milliseconds (timers fire); with bit 1 clear the bytes are one
// datagram, with it set they are a message that a real sender of the same channel (holding
// the key) sends, and its datagrams are fed on, one byte of each flipped when bit 7 is set. State
// persists across inputs, so sequences are explored. After each record the memory ceiling
// is asserted: the pool's packets in use and its large-message bytes stay under the bounds
// the shells size pools with.
//
//   scripts/run-fuzz.sh            (builds with clang + ASan/UBSan and runs it, bounded)
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "runtime/pipeline.hpp"
#include "tmc/manifest.hpp"

using namespace tmc;

namespace {

class ReleasingSink final : public PipelineSink {
 public:
  void transmit(Packet* p) noexcept override {
    if (keep != nullptr && kept < kKeep) {
      keep[kept++] = p;
      return;
    }
    p->release();
  }
  static constexpr std::size_t kKeep = 64;
  Packet** keep = nullptr;  ///< a sending endpoint keeps what it transmits, to be fed on
  std::size_t kept = 0;
  void deliver(Packet* p) noexcept override {
    if (p->payload_off < p->off || p->payload_off + p->payload_len > p->off + p->len) {
      if (!p->large) std::abort();
    }
    p->release();
  }
  void on_event(const Event& e) noexcept override { (void)e; }
};

constexpr std::uint32_t kMaxPackets = 4096;
constexpr std::uint64_t kLargeBudget = 8ull << 20;

std::string key_file() {
  static const std::string path = [] {
    const std::string p = "/tmp/tmc-fuzz-pipeline-" + std::to_string(::getpid()) + ".keys";
    std::ofstream(p) << "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    std::atexit([] { std::remove(("/tmp/tmc-fuzz-pipeline-" + std::to_string(::getpid()) + ".keys").c_str()); });
    return p;
  }();
  return path;
}

struct Endpoint {
  PacketPool pool{4096, 64, kMaxPackets};
  ReleasingSink sink;
  std::unique_ptr<Pipeline> pipeline;

  explicit Endpoint(bool secured, std::uint32_t sender = 7, const char* name = "rx") {
    pool.set_large_budget_bytes(kLargeBudget);
    std::string yaml =
        "id: fuzz\nname: " + std::string(name) + "\nreliability: true\npoint-to-point ordering: strict\nmax message bytes: 100000\n"
        "pacing: true\nflow control: true\n";
    if (secured) yaml += "security: encrypt\nkey file: " + key_file() + "\n";
    Manifest m;
    Diagnostics d;
    Plan plan;
    if (!parse_manifest(yaml, "fuzz.yaml", m, d)) std::abort();
    if (!compile(m, Capabilities::defaults(), Registry::builtin(), plan).is_ok()) std::abort();
    StageEnv env{.channel = plan.channel_hash, .sender = sender, .epoch = 9, .seed = 1, .max_payload_bytes = 1400};
    if (!Pipeline::build(plan, Registry::builtin(), env, pool, sink, pipeline).is_ok()) std::abort();
    pipeline->start(1);
  }
};

struct Harness {
  Endpoint plain{false};
  Endpoint secured{true};
  // Real senders of the same two channels (they hold the key), so that inputs reach past
  // the decoder and the AEAD stage: their datagrams, mutated or not, are fed on.
  Endpoint plain_tx{false, 8, "tx"};
  Endpoint secured_tx{true, 8, "tx"};
  std::array<Packet*, ReleasingSink::kKeep> out{};
  std::uint64_t now_ns = 1;

  Harness() {
    plain_tx.sink.keep = out.data();
    secured_tx.sink.keep = out.data();
  }
};

Harness& harness() {
  static Harness h;
  return h;
}

void feed(Endpoint& e, const std::uint8_t* data, std::size_t n, std::uint64_t now_ns) {
  Packet* p = e.pool.alloc();
  if (p == nullptr) return;
  p->reset_for_receive();
  if (n > p->cap) n = p->cap;
  std::memcpy(p->buf, data, n);
  p->len = static_cast<std::uint32_t>(n);
  e.pipeline->receive(p, now_ns);
}

void check_ceiling(const Endpoint& e) {
  // Every packet is the pool's; a stage holding more than its declared maximum (plus the
  // transient few of one input) or large buffers past the budget is a leak or a bound lost.
  if (e.pool.in_use() > e.pipeline->max_held_packets() + 64) std::abort();
  if (e.pool.large_bytes() > kLargeBudget) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Harness& h = harness();
  while (size >= 3) {
    const std::uint8_t op = data[0];
    std::size_t n = static_cast<std::size_t>(data[1]) << 8 | data[2];
    data += 3;
    size -= 3;
    if (n > size) n = size;
    Endpoint& e = (op & 1) != 0 ? h.secured : h.plain;
    Endpoint& tx = (op & 1) != 0 ? h.secured_tx : h.plain_tx;
    h.now_ns += static_cast<std::uint64_t>((op >> 2) & 0x1f) * 1'000'000;
    if (e.pipeline->next_deadline_ns() != 0 && e.pipeline->next_deadline_ns() <= h.now_ns) e.pipeline->tick(h.now_ns);
    if ((op & 2) == 0) {
      feed(e, data, n, h.now_ns);  // the bytes are a datagram
    } else {
      // The bytes are a message the real sender sends; its datagrams are fed on, each
      // with the byte at (op >> 7 ? first two bytes : nowhere) flipped.
      Packet* p = tx.pool.alloc();
      if (p != nullptr) {
        const std::uint32_t len = static_cast<std::uint32_t>(n > 3000 ? 3000 : n);
        p->reset_for_send(len);
        if (len > 0) std::memcpy(p->payload(), data, len);
        tx.sink.kept = 0;
        tx.pipeline->send(p, h.now_ns);
        if (tx.pipeline->next_deadline_ns() != 0 && tx.pipeline->next_deadline_ns() <= h.now_ns) {
          tx.pipeline->tick(h.now_ns);
        }
        const std::size_t flip = n >= 2 ? (std::size_t{data[0]} << 8 | data[1]) : 0;
        for (std::size_t i = 0; i < tx.sink.kept; ++i) {
          Packet* d = h.out[i];
          if ((op & 0x80) != 0 && d->len > 0) d->data()[flip % d->len] ^= 0x20;
          feed(e, d->data(), d->len, h.now_ns);
          d->release();
        }
        tx.sink.kept = 0;
      }
    }
    check_ceiling(e);
    data += n;
    size -= n;
  }
  return 0;
}
