// fec.xor — forward error correction: XOR parity over blocks of k data datagrams.
//
// Send path
//   Every data datagram for the group gets a tag (extension 200, body u32 block, u8 index)
//   and its *region* — the tag, the extensions stages above pushed, and the payload, i.e.
//   the datagram after the base header as this stage sees it — is XORed into the block's
//   accumulator, together with its flags (CRC bit masked off: a checksum stage below sets
//   it), extension bytes and payload length. After k datagrams, or `flush_us` after the
//   first datagram of a partial block, one parity datagram goes out: kind control,
//   extension 200 with body u32 block, u8 count, u16 flags xor, u16 extension-bytes xor,
//   u32 payload-length xor, and as payload the accumulator (as long as the longest region).
//   Unicast datagrams (reliability's repairs to one receiver) and datagrams sealed above
//   this stage pass down untagged.
//
// Receive path
//   Per (sender, epoch), the receiver keeps the last `blocks` blocks, each one accumulator
//   (its region bytes, flags and lengths XORed in, a bitmap of indexes received, whether
//   the parity was seen). A received tag XORs the datagram's region in and passes the
//   datagram up unchanged; the parity is XORed in the same way and consumed. When the
//   parity and all but one of its `count` datagrams are in, the accumulator *is* the
//   missing region: the stage writes a base header in front (sender, epoch and channel of
//   the parity), decodes it like a received datagram and passes it up as if received.
//   Stages below this one only prepend extensions, so the region of a received datagram
//   starts at the header of this stage's tag and ends with the payload.
//
// Bounds
//   Memory is fixed by the parameters: `max_senders` x `blocks` accumulators of
//   max_payload_bytes + kHeadroom bytes, allocated the first time a sender slot is used and
//   reused after eviction (least recently active sender). A tag or parity whose block is
//   older than the kept window, or that jumps more than kMaxJump blocks ahead, is ignored
//   for repair (the datagram still passes up); a region longer than an accumulator marks
//   the block unrepairable. A forged datagram can spoil repair of one block, never grow
//   memory; a rebuilt datagram that fails decoding is dropped (drops.malformed).
#include "fec/fec.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

namespace tmc::modules {
namespace {

constexpr std::string_view kKind = "fec.xor";
constexpr auto kExt = static_cast<wire::Ext>(kFecExt);
constexpr std::uint32_t kTagWire = wire::kExtHeaderBytes + kFecTagBody;
constexpr std::uint32_t kParityWire = wire::kExtHeaderBytes + kFecParityBody;
/// Largest forward jump of block numbers a receiver follows (a forged tag far ahead would
/// otherwise make every genuine block look stale).
constexpr std::uint32_t kMaxJump = 1u << 16;
constexpr std::uint16_t kFlagMask = static_cast<std::uint16_t>(~wire::kFlagCrc);

#define TMC_FEC_COUNTERS(X, P)                                                                            \
  X(P, protected_sent, "data datagrams tagged and XORed into a block on send")                            \
  X(P, unprotected_sent, "data datagrams passed down untagged (unicast, sealed, no room)")                \
  X(P, parity_sent, "parity datagrams sent")                                                              \
  X(P, parity_flushed, "of those, parity of a partial block sent after flush_us")                         \
  X(P, parity_no_buffer, "parity datagrams not sent: no packet buffer (or one too small)")                \
  X(P, tagged_received, "tagged data datagrams received")                                                 \
  X(P, parity_received, "parity datagrams received")                                                      \
  X(P, rebuilt, "lost datagrams rebuilt from parity and passed up")                                       \
  X(P, blocks_complete, "blocks whose datagrams all arrived (parity not needed)")                         \
  X(P, blocks_unrecoverable, "blocks retired with two or more datagrams missing")                         \
  X(P, duplicates_dropped, "tagged datagrams dropped: same block and index already passed up or rebuilt") \
  X(P, stale, "tags or parity of a block outside the receiver's window (not used)")                       \
  X(P, malformed, "tags or parity with a malformed body, or a rebuilt datagram that failed decoding")     \
  X(P, senders_evicted, "sender states evicted for a new sender (max_senders)")
TMC_STAGE_COUNTERS("fec.", TMC_FEC_COUNTERS);

/// XOR `n` bytes of `src` into `dst`.
inline void xor_into(std::uint8_t* dst, const std::uint8_t* src, std::uint32_t n) noexcept {
  std::uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t a;
    std::uint64_t b;
    std::memcpy(&a, dst + i, 8);
    std::memcpy(&b, src + i, 8);
    a ^= b;
    std::memcpy(dst + i, &a, 8);
  }
  for (; i < n; ++i) dst[i] ^= src[i];
}

/// One block's accumulator: the XOR of every region received so far.
struct Block {
  std::uint8_t* acc = nullptr;  ///< `cap` bytes, zero beyond `len`
  std::uint32_t len = 0;        ///< longest region XORed in
  std::uint32_t block = 0;
  std::uint64_t mask = 0;       ///< indexes received (or rebuilt)
  std::uint32_t payload_x = 0;
  std::uint16_t flags_x = 0;
  std::uint16_t ext_x = 0;
  std::uint8_t count = 0;       ///< datagrams the parity covers (0: parity not seen)
  bool used = false;
  bool done = false;            ///< complete, rebuilt, or spoiled: ignore further input
  bool spoiled = false;         ///< a region did not fit: no repair

  void clear() noexcept {
    if (acc != nullptr) std::memset(acc, 0, len);
    len = 0;
    mask = 0;
    payload_x = 0;
    flags_x = 0;
    ext_x = 0;
    count = 0;
    used = false;
    done = false;
    spoiled = false;
  }
};

struct Sender {
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  std::uint32_t prev_epoch = 0;
  std::uint32_t newest = 0;      ///< newest block number seen
  bool any = false;              ///< a block number was seen in this epoch
  bool in_use = false;
  std::uint64_t last_ns = 0;     ///< last activity, for eviction
  std::unique_ptr<std::uint8_t[]> memory;  ///< blocks x cap accumulator bytes
};

class FecStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)errors;
    env_ = env;
    k_ = static_cast<std::uint32_t>(params.integer("k"));
    flush_ns_ = static_cast<std::uint64_t>(params.integer("flush_us")) * 1000;
    window_ = static_cast<std::uint32_t>(params.integer("blocks"));
    max_senders_ = static_cast<std::uint32_t>(params.integer("max_senders"));
    cap_ = env.max_payload_bytes + kHeadroom;
    tx_acc_.assign(cap_, 0);
    senders_.resize(max_senders_);
    blocks_.resize(std::size_t{max_senders_} * window_);
    return true;
  }

  // --- send ---------------------------------------------------------------------------

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data) {
      io.down(p);
      return;
    }
    std::uint8_t* body = nullptr;
    if (!p->sealed && p->dst_ip == 0 && p->len + kTagWire <= cap_) body = p->push_ext(kExt, kFecTagBody);
    if (body == nullptr) {
      io.count(unprotected_sent);
      io.down(p);
      return;
    }
    wire::put_u32(body, tx_block_);
    body[4] = static_cast<std::uint8_t>(tx_n_);
    xor_into(tx_acc_.data(), p->data(), p->len);
    tx_len_ = std::max(tx_len_, p->len);
    tx_flags_x_ ^= static_cast<std::uint16_t>(p->flags & kFlagMask);
    tx_ext_x_ ^= static_cast<std::uint16_t>(p->len - p->payload_len);
    tx_payload_x_ ^= p->payload_len;
    if (tx_n_++ == 0) {
      tx_first_ns_ = io.now_ns();
      io.arm_timer(tx_first_ns_ + flush_ns_);
    }
    io.count(protected_sent);
    io.down(p);
    if (tx_n_ == k_) send_parity(io);
  }

  void on_tick(StageIo& io) noexcept override {
    if (tx_n_ > 0 && io.now_ns() >= tx_first_ns_ + flush_ns_) {
      io.count(parity_flushed);
      send_parity(io);
    } else if (tx_n_ > 0) {
      io.arm_timer(tx_first_ns_ + flush_ns_);
    }
  }

  // --- receive ------------------------------------------------------------------------

  void on_receive(Packet* p, StageIo& io) noexcept override {
    std::uint8_t n = 0;
    const std::uint8_t* body = p->ext(kExt, &n);
    if (body == nullptr) {
      io.up(p);
      return;
    }
    if (p->kind == wire::Kind::data) {
      if (receive_tagged(p, body, n, io)) {
        io.up(p);
      } else {
        io.drop(p, DropReason::duplicate);
      }
      return;
    }
    if (p->kind == wire::Kind::control) {
      receive_parity(p, body, n, io);
      p->release();
      return;
    }
    io.up(p);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return 0; }

 private:
  void send_parity(StageIo& io) noexcept {
    Packet* q = io.alloc();
    // Room for the parity: its payload, this extension, the base header, and headroom for
    // the extensions of the stages below.
    if (q != nullptr &&
        std::uint64_t{tx_len_} + kParityWire + wire::kBaseHeaderBytes + 64 + wire::kTrailerBytes > q->cap) {
      q->release();
      q = nullptr;
    }
    if (q == nullptr) {
      io.count(parity_no_buffer);
    } else {
      // The payload goes as high in the buffer as the trailer allows, so that a region
      // longer than max_payload_bytes (it holds extensions too) still fits.
      q->reset_for_send(0);
      const std::uint32_t top = q->cap - static_cast<std::uint32_t>(wire::kTrailerBytes);
      const std::uint32_t at = std::min<std::uint32_t>(kHeadroom, top - tx_len_);
      q->off = q->payload_off = at;
      q->len = q->payload_len = tx_len_;
      std::memcpy(q->payload(), tx_acc_.data(), tx_len_);
      q->kind = wire::Kind::control;
      q->channel = env_.channel;
      q->sender = env_.sender;
      q->epoch = env_.epoch;
      std::uint8_t* b = q->push_ext(kExt, kFecParityBody);
      if (b == nullptr) {
        io.count(parity_no_buffer);
        q->release();
      } else {
        wire::put_u32(b, tx_block_);
        b[4] = static_cast<std::uint8_t>(tx_n_);
        wire::put_u16(b + 5, tx_flags_x_);
        wire::put_u16(b + 7, tx_ext_x_);
        wire::put_u32(b + 9, tx_payload_x_);
        io.count(parity_sent);
        io.down(q);
      }
    }
    std::memset(tx_acc_.data(), 0, tx_len_);
    tx_len_ = 0;
    tx_n_ = 0;
    tx_flags_x_ = 0;
    tx_ext_x_ = 0;
    tx_payload_x_ = 0;
    ++tx_block_;
    io.cancel_timer();
  }

  // Returns false when the datagram is a duplicate of one this stage passed up already.
  bool receive_tagged(const Packet* p, const std::uint8_t* body, std::uint8_t n, StageIo& io) noexcept {
    io.count(tagged_received);
    const std::uint32_t index = n == kFecTagBody ? body[4] : 64;
    if (index >= 64) {
      io.count(malformed);
      return true;
    }
    Block* b = block_for(*p, wire::get_u32(body), io);
    if (b == nullptr) return true;
    if (((b->mask >> index) & 1u) != 0) {
      // The same transmission again: a copy the network duplicated, or the original of a
      // datagram already rebuilt that arrives late. Either way, delivered once already.
      io.count(duplicates_dropped);
      return false;
    }
    if (b->done) return true;
    // The region: from this stage's tag header to the end of the payload.
    const std::uint32_t start = static_cast<std::uint32_t>(body - p->buf) - wire::kExtHeaderBytes;
    const std::uint32_t end = p->payload_off + p->payload_len;
    const std::uint32_t len = end - start;
    b->mask |= std::uint64_t{1} << index;
    if (len > cap_) {
      b->spoiled = true;
      b->done = true;
      return true;
    }
    absorb(*b, p->buf + start, len, p->flags, static_cast<std::uint16_t>(p->payload_off - start), p->payload_len);
    try_finish(*b, *p, io);
    return true;
  }

  void receive_parity(const Packet* p, const std::uint8_t* body, std::uint8_t n, StageIo& io) noexcept {
    io.count(parity_received);
    if (n != kFecParityBody || body[4] == 0 || body[4] > 64 || p->payload_len > cap_) {
      io.count(malformed);
      return;
    }
    Block* b = block_for(*p, wire::get_u32(body), io);
    if (b == nullptr || b->done || b->count != 0) return;
    b->count = body[4];
    absorb(*b, p->payload(), p->payload_len, wire::get_u16(body + 5), wire::get_u16(body + 7), wire::get_u32(body + 9));
    try_finish(*b, *p, io);
  }

  static void absorb(Block& b, const std::uint8_t* region, std::uint32_t len, std::uint16_t flags, std::uint16_t ext,
                     std::uint32_t payload) noexcept {
    xor_into(b.acc, region, len);
    b.len = std::max(b.len, len);
    b.flags_x ^= static_cast<std::uint16_t>(flags & kFlagMask);
    b.ext_x ^= ext;
    b.payload_x ^= payload;
  }

  // With the parity in: nothing missing -> complete; one missing -> rebuild it.
  void try_finish(Block& b, const Packet& from, StageIo& io) noexcept {
    if (b.count == 0) return;
    const std::uint64_t covered = b.count == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << b.count) - 1;
    if ((b.mask & ~covered) != 0) {  // an index the parity does not cover: someone lies
      io.count(malformed);
      b.spoiled = true;
      b.done = true;
      return;
    }
    const int missing = b.count - std::popcount(b.mask);
    if (missing == 0) {
      io.count(blocks_complete);
      b.done = true;
    } else if (missing == 1) {
      const auto index = static_cast<std::uint32_t>(std::countr_zero(~b.mask & covered));
      b.mask |= std::uint64_t{1} << index;
      b.done = true;
      rebuild(b, index, from, io);
    }
  }

  void rebuild(const Block& b, std::uint32_t index, const Packet& from, StageIo& io) noexcept {
    const std::uint32_t len = std::uint32_t{b.ext_x} + b.payload_x;
    const std::uint8_t* r = b.acc;
    // The region must start with this stage's tag naming this block and index.
    if (len > b.len || b.ext_x < kTagWire || r[0] != kFecExt || r[1] != kFecTagBody ||
        wire::get_u32(r + 2) != b.block || r[6] != index) {
      io.count(malformed);
      return;
    }
    Packet* q = io.alloc();
    if (q == nullptr) return;  // reliability repairs it
    q->reset_for_receive();
    if (wire::kBaseHeaderBytes + len > q->cap) {
      io.count(malformed);
      q->release();
      return;
    }
    std::uint8_t* h = q->buf;
    wire::put_u16(h + 0, wire::kMagic);
    h[2] = wire::kVersion;
    h[3] = static_cast<std::uint8_t>(wire::Kind::data);
    wire::put_u16(h + 4, b.flags_x);
    wire::put_u16(h + 6, b.ext_x);
    wire::put_u32(h + 8, from.channel);
    wire::put_u32(h + 12, from.sender);
    wire::put_u32(h + 16, from.epoch);
    wire::put_u32(h + 20, b.payload_x);
    std::memcpy(h + wire::kBaseHeaderBytes, r, len);
    q->len = static_cast<std::uint32_t>(wire::kBaseHeaderBytes) + len;
    if (wire::decode(*q) != wire::DecodeError::none || q->kind != wire::Kind::data) {
      io.count(malformed);
      io.drop(q, DropReason::malformed);
      return;
    }
    q->rx_ns = io.now_ns();
    q->src_ip = from.src_ip;
    q->src_port = from.src_port;
    io.count(rebuilt);
    io.up(q);
  }

  // --- per-sender state ---------------------------------------------------------------

  // The accumulator of `block` of the packet's sender, or nullptr when it lies outside
  // the window kept (or the packet is from the sender's previous epoch).
  Block* block_for(const Packet& p, std::uint32_t block, StageIo& io) noexcept {
    const std::uint32_t idx = sender_index(p, io);
    if (idx == kNone) return nullptr;
    Sender& s = senders_[idx];
    if (!s.any) {
      s.any = true;
      s.newest = block;
    } else {
      const std::uint32_t ahead = block - s.newest;  // serial arithmetic on u32
      if (ahead != 0 && ahead <= kMaxJump) {
        s.newest = block;
      } else if (ahead != 0 && s.newest - block >= window_) {
        io.count(stale);
        return nullptr;
      }
    }
    Block& b = blocks_[std::size_t{idx} * window_ + block % window_];
    if (!b.used || b.block != block) {
      retire(b, io);
      b.used = true;
      b.block = block;
    }
    return &b;
  }

  void retire(Block& b, StageIo& io) noexcept {
    if (b.used && !b.done && b.count != 0 && b.count - std::popcount(b.mask) >= 2) io.count(blocks_unrecoverable);
    b.clear();
  }

  std::uint32_t sender_index(const Packet& p, StageIo& io) noexcept {
    const std::uint64_t now = io.now_ns();
    std::uint32_t free = kNone;
    std::uint32_t oldest = kNone;
    for (std::uint32_t i = 0; i < max_senders_; ++i) {
      Sender& s = senders_[i];
      if (!s.in_use) {
        if (free == kNone) free = i;
        continue;
      }
      if (s.id == p.sender) {
        if (s.epoch != p.epoch) {
          if (p.epoch == s.prev_epoch) return kNone;  // a straggler of the last incarnation
          s.prev_epoch = s.epoch;
          s.epoch = p.epoch;
          reset_blocks(i, io);
        }
        s.last_ns = now;
        return i;
      }
      if (oldest == kNone || s.last_ns < senders_[oldest].last_ns) oldest = i;
    }
    std::uint32_t i = free;
    if (i == kNone) {
      i = oldest;
      io.count(senders_evicted);
      reset_blocks(i, io);
    }
    Sender& s = senders_[i];
    if (!s.memory) {
      s.memory.reset(new (std::nothrow) std::uint8_t[std::size_t{cap_} * window_]());
      if (!s.memory) return kNone;
      for (std::uint32_t j = 0; j < window_; ++j) {
        blocks_[std::size_t{i} * window_ + j].acc = s.memory.get() + std::size_t{j} * cap_;
      }
    }
    s.id = p.sender;
    s.epoch = p.epoch;
    s.prev_epoch = 0;
    s.in_use = true;
    s.last_ns = now;
    s.any = false;
    return i;
  }

  void reset_blocks(std::uint32_t idx, StageIo& io) noexcept {
    senders_[idx].any = false;
    for (std::uint32_t j = 0; j < window_; ++j) retire(blocks_[std::size_t{idx} * window_ + j], io);
  }

  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;

  StageEnv env_;
  std::uint32_t k_ = 8;
  std::uint64_t flush_ns_ = 0;
  std::uint32_t window_ = 4;
  std::uint32_t max_senders_ = 64;
  std::uint32_t cap_ = 0;
  // Send side: the open block.
  std::vector<std::uint8_t> tx_acc_;
  std::uint32_t tx_len_ = 0;
  std::uint32_t tx_block_ = 0;
  std::uint32_t tx_n_ = 0;
  std::uint16_t tx_flags_x_ = 0;
  std::uint16_t tx_ext_x_ = 0;
  std::uint32_t tx_payload_x_ = 0;
  std::uint64_t tx_first_ns_ = 0;
  // Receive side.
  std::vector<Sender> senders_;
  std::vector<Block> blocks_;  ///< max_senders x blocks, sender-major
};

}  // namespace

StageInfo fec_xor_info() {
  return StageInfo{
      .kind = kKind,
      .synopsis = "Forward error correction: an XOR parity datagram every k data datagrams rebuilds one lost "
                  "datagram per block at every receiver without a round trip.",
      .notes =
          "Sits below reliability (and above checksum and the transport-facing stages): every data datagram to the "
          "group carries a 7-byte tag (extension 200: u32 block, u8 index) and after `k` of them, or `flush_us` "
          "after the first datagram of a partial block, one parity datagram (kind control, extension 200 with the "
          "block, the count covered and the XOR of the flags and lengths; payload: the XOR of the datagrams after "
          "their base header) follows. A receiver that has the parity and all but one datagram of a block rebuilds "
          "the missing one and passes it up as if received (`fec.rebuilt`); two or more lost in one block are left "
          "to reliability (`fec.blocks_unrecoverable`). Per sender the receiver keeps `blocks` accumulators of one "
          "datagram each, for at most `max_senders` senders (the least recently active is evicted): memory is fixed "
          "by the parameters, and a forged tag can spoil the repair of one block, never grow it. Unicast datagrams "
          "(repairs to one receiver) pass untagged. The parity datagram is 15 bytes longer than the longest datagram "
          "of its block, so the stage reserves 22 bytes per datagram (tag and parity extension). Bandwidth overhead: "
          "one parity per k datagrams.",
      .params = {{.name = "k",
                  .type = ParamType::integer,
                  .default_value = "8",
                  .doc = "Data datagrams per block, each block followed by one parity datagram.",
                  .min = 2,
                  .max = 64},
                 {.name = "flush_us",
                  .type = ParamType::integer,
                  .default_value = "2000",
                  .doc = "Longest a partial block waits for its parity, in microseconds (protects the tail).",
                  .min = 1,
                  .max = 10'000'000},
                 {.name = "blocks",
                  .type = ParamType::integer,
                  .default_value = "4",
                  .doc = "Blocks per sender a receiver keeps open for repair (reordering tolerance).",
                  .min = 1,
                  .max = 64},
                 {.name = "max_senders",
                  .type = ParamType::integer,
                  .default_value = "64",
                  .doc = "Senders a receiver keeps accumulators for; beyond it the least recently active is evicted.",
                  .min = 1,
                  .max = 1024}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<FecStage>(); },
      .wire_bytes_per_datagram = kTagWire + kParityWire,
      .extensions = {WireExtension{.type = kFecExt,
                                   .name = "fec",
                                   .body_bytes = kFecParityBody,
                                   .carried_on = "data; kind control (parity)",
                                   .body = "data: u32 block, u8 index (5 B); parity: u32 block, u8 count, u16 flags "
                                           "xor, u16 extension bytes xor, u32 payload length xor (13 B)"}},
      .layer = StageLayer::repair,
  };
}

}  // namespace tmc::modules
