// ordering.seq — per-sender sequencing (paper §3.2).
//
// Synopsis
//   Stamps every outgoing data packet with this endpoint's next sequence number and
//   reads it back on receive into Packet::seq, for the ordering and reliability stages.
// Params
//   (none)
// Counters
//   ordering.seq_stamped     data packets stamped on send
//   ordering.seq_no_room     data packets dropped on send: no headroom for the extension
//   ordering.seq_malformed   received data packets dropped: sequence extension missing,
//                            of the wrong length, or zero (drops.malformed)
// Wire
//   Extension wire::Ext::seq, 8 bytes: the u64 sequence number, big-endian. Numbers start
//   at 1 for each endpoint incarnation; the incarnation's random epoch already travels in
//   the base header, so (sender, epoch, seq) names a message uniquely.
// Notes
//   Only data packets are numbered; control kinds (acks, heartbeats) belong to the stages
//   that define them. Packets sent with kFlagUnordered are numbered too, because
//   reliability may still need to name them. A u64 at one message per nanosecond wraps
//   after 584 years, so wrap-around is not handled.
#include <vector>

#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_SEQ_COUNTERS(X, P)                                                                                      \
  X(P, stamped, "data packets stamped on send")                                                                     \
  X(P, no_room, "data packets dropped on send: no headroom for the extension")                                      \
  X(P, malformed, "received data packets dropped: sequence extension missing, wrong length, or zero")
TMC_STAGE_COUNTERS("ordering.seq_", TMC_SEQ_COUNTERS);

inline constexpr std::uint8_t kSeqBytes = 8;

class SeqStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)params;
    (void)env;
    (void)errors;
    return true;
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data) {
      io.down(p);
      return;
    }
    std::uint8_t* body = p->push_ext(wire::Ext::seq, kSeqBytes);
    if (body == nullptr) {
      io.count(no_room);
      io.drop(p, DropReason::buffer_full);
      return;
    }
    // Consume a number only once the packet carries it, so the stream stays gap-free.
    p->seq = next_seq_++;
    wire::put_u64(body, p->seq);
    io.count(stamped);
    io.down(p);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data) {
      io.up(p);
      return;
    }
    std::uint8_t len = 0;
    const std::uint8_t* body = p->ext(wire::Ext::seq, &len);
    const std::uint64_t seq = (body != nullptr && len == kSeqBytes) ? wire::get_u64(body) : 0;
    if (seq == 0) {
      io.count(malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    p->seq = seq;
    io.up(p);
  }

 private:
  std::uint64_t next_seq_ = 1;
};

}  // namespace

void register_ordering_seq(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "ordering.seq",
      .synopsis = "Per-sender sequencing: stamps each data packet with a u64 sequence number, starting at 1.",
      .notes = "Wire: extension `seq` (type 1), 8 bytes, the big-endian sequence number. The endpoint's random "
               "epoch (chosen on join) travels in the base header, so (sender, epoch, seq) names a message. "
               "Only data packets are numbered, including those sent unordered. On receive the number is "
               "copied into the packet's metadata for the stages above; a data packet without a valid "
               "extension is dropped as malformed.",
      .params = {},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<SeqStage>(); },
      .wire_bytes_per_datagram = wire::kExtHeaderBytes + kSeqBytes,
      .serves = "point_to_point_ordering",
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::seq),
                      .name = "seq",
                      .body_bytes = kSeqBytes,
                      .carried_on = "data",
                      .body = "u64 per-sender sequence number, from 1 per incarnation (8 bytes)"}},
  });
}

}  // namespace tmc
