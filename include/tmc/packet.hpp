// Packets: pooled buffers with headroom, plus the decoded base header.
//
// Ownership: a Packet* is owned by exactly one party at a time — the shell, one stage, or
// the pool. Passing it down/up or dropping it gives it away. Stages that hold packets
// (reorder buffers, retransmit queues) keep the pointer and must release it eventually.
//
// Send path: the application's bytes are copied once into a pool buffer at offset
// kHeadroom. Stages prepend their extensions into the headroom (push_ext), and the
// pipeline's bottom seals the packet (writes the base header in front). A stage that must
// see the final bytes (checksum) seals early. Receive path: the transport receives into a
// buffer at offset 0 and tmc::wire::decode() validates it and fills the fields below.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tmc/wire.hpp"

namespace tmc {

class PacketPool;

/// Room before the payload for the base header and extensions written on the send path.
inline constexpr std::uint32_t kHeadroom = 256;
/// Buffer size of PacketPool::alloc_small(): a received message small enough to fit (no
/// headroom: it is never sent on) takes this instead of a whole datagram buffer.
inline constexpr std::uint32_t kSmallPacketBytes = 256;

struct Packet {
  // --- buffer -------------------------------------------------------------------------
  std::uint8_t* buf = nullptr;  ///< start of the pool buffer
  std::uint32_t cap = 0;        ///< buffer size in bytes
  std::uint32_t off = 0;        ///< first valid byte
  std::uint32_t len = 0;        ///< valid bytes from `off`

  // --- header fields (decoded on receive; written by seal() on send) ----------------
  wire::Kind kind = wire::Kind::data;
  std::uint16_t flags = 0;
  std::uint32_t channel = 0;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint32_t payload_off = 0;  ///< absolute offset in buf
  std::uint32_t payload_len = 0;
  bool sealed = false;  ///< the base header is written; no more extensions may be pushed

  // --- extension index (receive path: filled by decode; send path: by push_ext) -------
  std::uint8_t n_ext = 0;
  std::uint8_t ext_type[wire::kMaxExtensions] = {};
  std::uint8_t ext_len[wire::kMaxExtensions] = {};
  std::uint16_t ext_body[wire::kMaxExtensions] = {};  ///< absolute offset of the body in buf

  // --- metadata that never goes on the wire ------------------------------------------
  std::uint64_t seq = 0;      ///< per-sender sequence (set by ordering.seq on both paths)
  std::uint64_t rx_ns = 0;    ///< when the shell received it
  std::uint32_t src_ip = 0;   ///< IPv4 source (host order), 0 if unknown
  std::uint16_t src_port = 0;
  std::uint32_t dst_ip = 0;   ///< unicast destination (host order); 0 = the channel's group
  std::uint16_t dst_port = 0;
  /// The shell's id for the application message (send path); reliability reports it back
  /// in delivery_met / delivery_failed events. Copied by clone().
  std::uint64_t token = 0;
  /// A datagram carrying several application messages (pacing.coalesce's batch): the
  /// first one's token, `token` being the last one's; 0 = the datagram carries `token`
  /// alone. Reliability acknowledges the batch when the application acknowledges any of
  /// them (a reply to one shows the member received the datagram, so all of them).
  std::uint64_t token_first = 0;
  bool large = false;         ///< buffer from PacketPool::alloc_large (freed, not pooled)
  /// The application waits on this message's outcome (a future or a sync send): stages
  /// that merge messages (pacing.coalesce) send it as itself, so reliability's outcome
  /// event carries its token. Copied by clone().
  bool wants_outcome = false;
  /// Send path: this message's own lifetime (a per-message manifest), 0 = the channel's.
  /// Pipeline::send turns it (or the channel's lifetime) into expires_ns.
  std::uint64_t lifetime_ns = 0;
  /// When the message stops being worth anything, on the shell's clock; 0 = never. Send
  /// path: set when the pipeline takes the message; receive path: by lifetime.deadline
  /// from the remaining lifetime the datagram carries. Copied by clone().
  std::uint64_t expires_ns = 0;
  /// Receive path: just before this packet, the stage below passed over numbers of its
  /// sender that the sender settled without this member (forgot, let expire or gave up
  /// on): an EventCause. Ordering above may then skip to this packet at once.
  std::uint8_t gap_cause = 0;
  /// Receive path: the reliable number of the datagram this came in (reliability.arq), 0 =
  /// none. On a settled-edge marker (Kind::control, gap_cause set, no payload), reliability's
  /// cumulative point for the sender: every packet of it at or below that number has gone up
  /// already or was settled, so ordering may skip the gaps below such packets it holds.
  std::uint64_t rseq = 0;
  Packet* next = nullptr;     ///< intrusive link for queues; owner's to use
  PacketPool* pool = nullptr;

  // --- accessors ----------------------------------------------------------------------
  [[nodiscard]] std::uint8_t* data() noexcept { return buf + off; }
  [[nodiscard]] const std::uint8_t* data() const noexcept { return buf + off; }
  [[nodiscard]] std::uint8_t* payload() noexcept { return buf + payload_off; }
  [[nodiscard]] const std::uint8_t* payload() const noexcept { return buf + payload_off; }

  /// Body of extension `type`, or nullptr; `*len_out` receives its length.
  [[nodiscard]] const std::uint8_t* ext(wire::Ext type, std::uint8_t* len_out = nullptr) const noexcept {
    for (std::uint8_t i = 0; i < n_ext; ++i) {
      if (ext_type[i] == static_cast<std::uint8_t>(type)) {
        if (len_out != nullptr) *len_out = ext_len[i];
        return buf + ext_body[i];
      }
    }
    return nullptr;
  }

  /// Send path: prepend an extension; returns its body to fill, or nullptr when there is
  /// no headroom, too many extensions, or the packet is already sealed.
  std::uint8_t* push_ext(wire::Ext type, std::uint8_t body_len) noexcept;

  /// Send path: write the base header in front of the extensions. Idempotent.
  void seal() noexcept;

  /// Reset to an empty send-path packet with `payload_len` bytes of payload room at
  /// offset kHeadroom. Header fields are zeroed.
  void reset_for_send(std::uint32_t payload_bytes) noexcept;

  /// Undo seal(): the packet is again open for extensions (its header bytes in front are
  /// left as they are and rewritten by the next seal()). For a stage that needs the sealed
  /// bytes of a packet it then sends on (pacing.coalesce copying a record).
  void unseal() noexcept;

  /// Reset to an empty receive-path buffer (offset 0, len 0).
  void reset_for_receive() noexcept;

  /// Hand the packet back to its pool.
  void release() noexcept;
};

/// A fixed-size-buffer pool, single-threaded (owned by one loop or simulator), except
/// alloc_large() and the release of large packets, which any thread may call.
/// Buffers are allocated in chunks when the pool runs dry, never per message; a hard cap
/// bounds memory, and alloc() returns nullptr past it.
class PacketPool {
 public:
  /// `buffer_bytes` is the size of every buffer (headroom included).
  PacketPool(std::uint32_t buffer_bytes, std::uint32_t initial, std::uint32_t max_packets);
  ~PacketPool();
  PacketPool(const PacketPool&) = delete;
  PacketPool& operator=(const PacketPool&) = delete;

  [[nodiscard]] Packet* alloc() noexcept;
  /// A packet whose buffer is kSmallPacketBytes, for a received message that fits (a
  /// record split out of a coalesced batch): thousands of them held at once (ordering
  /// behind a gap) then touch a tenth of the memory that full buffers would. Same pool,
  /// same ceiling; falls back to alloc() when buffer_bytes() is not larger. Never for a
  /// packet that will be sent (it has no headroom); clone() copies into a full buffer.
  [[nodiscard]] Packet* alloc_small() noexcept;
  /// A packet with its own heap buffer of kHeadroom + `payload_bytes` (+ trailer room), for
  /// messages larger than buffer_bytes() (fragmentation, reassembly). Cold: allocates once
  /// per large message. nullptr when it would take the large bytes in use past
  /// large_budget_bytes, or on allocation failure. release() frees it.
  [[nodiscard]] Packet* alloc_large(std::uint32_t payload_bytes) noexcept;
  void free(Packet* p) noexcept;
  /// A copy of `p` (bytes and fields), or nullptr when the pool is exhausted.
  [[nodiscard]] Packet* clone(const Packet& p) noexcept;

  [[nodiscard]] std::uint32_t buffer_bytes() const noexcept { return buffer_bytes_; }
  [[nodiscard]] std::uint32_t in_use() const noexcept { return in_use_; }
  [[nodiscard]] std::uint32_t capacity() const noexcept { return total_; }
  /// The most buffers this pool may ever grow to (it grows lazily, geometrically).
  [[nodiscard]] std::uint32_t max_packets() const noexcept { return max_packets_; }
  /// Raises the ceiling to at least `n` (never lowers it: packets of a retired pipeline may
  /// still be out). Cold: call when a pipeline is built.
  void raise_max_packets(std::uint32_t n) noexcept {
    if (n > max_packets_) max_packets_ = n;
  }
  /// Bytes held in large packets now, and the most allowed (default 256 MiB).
  [[nodiscard]] std::uint64_t large_bytes() const noexcept { return large_bytes_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t large_budget_bytes() const noexcept { return large_budget_; }
  void set_large_budget_bytes(std::uint64_t b) noexcept { large_budget_ = b; }
  /// What alloc_large(payload_bytes) takes from the budget.
  [[nodiscard]] static constexpr std::uint64_t large_cost(std::uint64_t payload_bytes) noexcept {
    return std::uint64_t{kHeadroom} + payload_bytes + wire::kTrailerBytes;
  }

 private:
  bool grow(std::uint32_t n) noexcept;
  bool grow_small(std::uint32_t n) noexcept;
  bool grow_list(std::uint32_t n, std::uint32_t bytes, Packet*& list) noexcept;

  std::uint32_t buffer_bytes_;
  std::uint32_t max_packets_;
  std::uint32_t total_ = 0;
  std::uint32_t in_use_ = 0;
  Packet* free_ = nullptr;
  Packet* free_small_ = nullptr;
  std::uint32_t small_total_ = 0;  ///< of total_, small buffers
  /// Large packets are the one part of a pool any thread may use: an application thread
  /// allocates one for a large message it sends, and the loop frees it.
  std::atomic<std::uint64_t> large_bytes_{0};
  std::uint64_t large_budget_ = 256ull << 20;
  std::vector<std::unique_ptr<Packet[]>> packet_chunks_;
  std::vector<std::unique_ptr<std::uint8_t[]>> byte_chunks_;
};

/// A FIFO of packets linked through Packet::next, for stages that hold packets back
/// (pacing, flow and congestion windows). Costs no allocation; the owner releases what is
/// left (release_all()).
class PacketFifo {
 public:
  void push(Packet* p) noexcept {
    p->next = nullptr;
    if (tail_ == nullptr) {
      head_ = p;
    } else {
      tail_->next = p;
    }
    tail_ = p;
    ++size_;
  }
  /// Put `p` back at the head, before every packet waiting (one just popped that could
  /// not be sent yet keeps its place).
  void push_front(Packet* p) noexcept {
    p->next = head_;
    head_ = p;
    if (tail_ == nullptr) tail_ = p;
    ++size_;
  }
  /// The oldest packet, taken out; nullptr when empty.
  Packet* pop() noexcept {
    Packet* p = head_;
    if (p == nullptr) return nullptr;
    head_ = p->next;
    if (head_ == nullptr) tail_ = nullptr;
    p->next = nullptr;
    --size_;
    return p;
  }
  void release_all() noexcept {
    while (Packet* p = pop()) p->release();
  }
  [[nodiscard]] Packet* front() const noexcept { return head_; }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  Packet* head_ = nullptr;
  Packet* tail_ = nullptr;
  std::size_t size_ = 0;
};

namespace wire {

/// Why decode() refused a datagram (each is a counter in the pipeline).
enum class DecodeError : std::uint8_t {
  none = 0,
  too_short,        ///< shorter than the base header
  bad_magic,
  bad_version,
  bad_kind,
  bad_flags,        ///< unknown flag bits set
  bad_length,       ///< lengths in the header disagree with the datagram's length
  bad_extension,    ///< an extension overruns ext_len, or too many extensions
  duplicate_extension,
};

/// Human-readable reason, e.g. "bad version".
const char* decode_error_name(DecodeError e) noexcept;

/// Validate the bytes [p.off, p.off + p.len) as a libTMC datagram and fill the header
/// fields and the extension index of `p`. Never reads outside those bytes. On error the
/// packet's fields are unspecified (but the buffer is untouched).
DecodeError decode(Packet& p) noexcept;

}  // namespace wire
}  // namespace tmc
