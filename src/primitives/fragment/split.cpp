// fragment.split — splitting messages larger than one datagram, and reassembling them.
//
// Synopsis
//   Send: a message whose payload exceeds fragment_bytes is cut into fragments of
//   fragment_bytes (the last one shorter), each a pool packet carrying the fragment
//   extension and a copy of every extension the stages above wrote. Smaller messages
//   pass untouched (zero bytes added). Receive: fragments are reassembled per (sender,
//   epoch, message id) into one large packet, which goes up with the extensions of its
//   first fragment restored, so the stages above see the message as it was sent.
//   Control packets are split too when they are larger than a fragment (ordering.group
//   re-sends a whole message as a control packet after a view change); smaller ones, like
//   every control packet of the other stages, pass at once.
// Params
//   fragment_bytes (int, 1200)            payload bytes per fragment
//   max_message_bytes (int, 16777216)     largest message sent or reassembled
//   reassembly_timeout_us (int, 2000000)  a partial message with no new fragment for this
//                                         long is dropped whole (drops.incomplete)
//   max_reassembly_bytes (int, 67108864)  bytes held in partial messages at this receiver
//   max_partial_per_sender (int, 16)      partial messages per sender at once
//   max_senders (int, 256)                senders tracked at once (least recently active
//                                         evicted, its partial messages dropped)
//   send_queue_messages (int, 1024)       messages waiting for pool buffers on send
//   retry_us (int, 1000)                  how soon to retry when the pool ran dry
// Counters
//   see register_fragment_split below.
// Wire
//   Extension wire::Ext::fragment, 12 bytes: u32 message id (per sender incarnation,
//   increasing from 1 over fragmented messages only), u32 byte offset of this fragment,
//   u32 total message length; the base header carries kFlagFragment.
// Notes
//   Extensions of the stages above (ordering.seq's sequence number, group ordering's) are
//   pushed onto the whole message before it reaches this stage, so every fragment carries
//   a byte-for-byte copy of them and the reassembled message gets those of its first
//   fragment (offset 0) back in its headroom. Stages below (reliability, checksum) treat
//   each fragment as a packet of its own, so with reliability every fragment is repaired.
//
//   Every fragment is validated as hostile. All fragments of a message but the last have
//   the same length L (learnt from the first one that is not the last, at least 16
//   bytes), start at a multiple of L, and the last starts at (ceil(total / L) - 1) * L; so
//   fragments are disjoint by construction, and a bitmap of fragment indices tells a
//   duplicate from a new one. A fragment that disagrees (total, L, offset, bounds) is
//   dropped as malformed and does not disturb the partial message. A last fragment seen
//   before L is known is kept provisionally and checked when L is learnt.
//
//   Memory: each partial message is charged its large buffer plus a bitmap sized for the
//   smallest legal L (1/128 of the message); the sum is kept under max_reassembly_bytes
//   by evicting the partial message that made progress least recently (drops
//   .reassembly_full), and a sender with max_partial_per_sender partial messages loses its
//   own stalest one first. Each sender remembers which of its last 1024 message ids are
//   finished (delivered or dropped), so late or duplicated fragments of a finished
//   message never start a second copy of it. The timeout counts from the last new
//   fragment, so a large message still being repaired is not given up on.
//
//   On send, when the pool runs dry in the middle of a message, the rest of it (and any
//   message sent after it, to keep their order) waits in a bounded queue and resumes
//   on a timer; nothing is lost silently (fragment.pool_waits counts the stalls, and a
//   full queue drops whole messages under drops.buffer_full).
//
//   Every fragment carries the message's Packet::token, so a reliability stage below
//   reports the outcome once per fragment.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "primitives/common/index_list.hpp"
#include "primitives/common/stage_timer.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_SPLIT_COUNTERS(X, P)                                                                                    \
  X(P, messages_split, "messages split into fragments on send")                                                     \
  X(P, fragments_sent, "fragments sent")                                                                            \
  X(P, passed_whole, "data messages small enough to pass untouched")                                                \
  X(P, too_large_sent, "messages dropped on send: larger than max_message_bytes")                                   \
  X(P, no_room, "messages dropped on send: no headroom or extension slot for fragments")                            \
  X(P, pool_waits, "times the pool ran dry mid-message (the rest waits and resumes)")                               \
  X(P, queue_full, "messages dropped on send: the send queue was full")                                             \
  X(P, fragments_received, "fragments received")                                                                    \
  X(P, messages_reassembled, "messages reassembled and passed up")                                                  \
  X(P, partials_started, "partial messages started (reassembled, incomplete or evicted)")                           \
  X(P, incomplete, "partial messages dropped whole: timed out, or their sender restarted (drops.incomplete)")       \
  X(P, evicted, "partial messages dropped or refused whole for the memory limits (drops.reassembly_full)")          \
  X(P, malformed, "fragments dropped: bad extension, bounds or inconsistent geometry")                              \
  X(P, duplicates, "fragments dropped: already received")                                                           \
  X(P, late, "fragments dropped: their message was already delivered or dropped")                                   \
  X(P, too_large_received, "fragments dropped: total above max_message_bytes")                                      \
  X(P, alloc_failed, "partial messages refused: no large buffer available")                                         \
  X(P, stale_epoch, "fragments dropped: from a retired incarnation of their sender")                                \
  X(P, senders_evicted, "senders forgotten to make room (max_senders)")
TMC_STAGE_COUNTERS("fragment.", TMC_SPLIT_COUNTERS);

// Gauges, declared once likewise (read_gauges() fills them in this order).
#define TMC_SPLIT_GAUGES(X, P)                                                                   \
  X(P, reassembly_bytes, "bytes held in partial messages, as counted against max_reassembly_bytes") \
  X(P, partial_messages, "messages being reassembled, all senders")                             \
  X(P, queued_messages, "messages waiting on the send side for pool buffers")
TMC_STAGE_GAUGES("fragment.", TMC_SPLIT_GAUGES);

constexpr std::string_view kKind = "fragment.split";
constexpr std::uint8_t kFragExtBytes = 12;
constexpr std::uint32_t kMinFragmentBytes = 16;
// While messages are partial, how often at least the view is checked for senders gone.
constexpr std::uint64_t kViewCheckNs = 100'000'000;
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
constexpr std::size_t kRetiredEpochs = 4;
constexpr std::uint32_t kIdWindow = 1024;  ///< finished message ids remembered per sender
constexpr std::size_t kIdWords = kIdWindow / 64;

struct SenderState {
  bool in_use = false;
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  std::uint32_t retired[kRetiredEpochs] = {};
  std::uint8_t n_retired = 0;
  std::uint8_t retired_pos = 0;
  bool have_highest = false;
  std::uint32_t highest = 0;           ///< newest message id seen
  std::uint64_t done[kIdWords] = {};   ///< bit (id % kIdWindow): id finished, for ids in the window
  std::uint32_t n_partials = 0;
  std::uint32_t partials_head = kNone;  ///< this sender's partial messages (doubly linked)
  std::uint64_t last_ns = 0;            ///< last fragment, for eviction
};

struct Partial {
  bool in_use = false;
  std::uint32_t sender_idx = 0;
  std::uint32_t id = 0;
  std::uint32_t total = 0;
  std::uint32_t frag_len = 0;  ///< L; 0 until a fragment other than the last arrived
  std::uint32_t received = 0;  ///< payload bytes of accepted fragments
  bool have_first = false;     ///< the fragment at offset 0 arrived (metadata copied)
  bool pending_last = false;   ///< a last fragment arrived while L was unknown
  std::uint32_t last_off = 0;
  std::uint32_t last_len = 0;
  std::uint64_t charge = 0;       ///< bytes counted against max_reassembly_bytes
  std::uint64_t progress_ns = 0;  ///< last new fragment
  Packet* msg = nullptr;          ///< the large packet being filled
  std::unique_ptr<std::uint64_t[]> bits;
  std::uint32_t nbits = 0;        ///< capacity of `bits`
  detail::IndexLinks lru;             ///< in use: the progress order (oldest first)
  std::uint32_t next_free = kNone;    ///< not in use: the free list
  // The sender's list.
  std::uint32_t s_prev = kNone;
  std::uint32_t s_next = kNone;
};

std::uint64_t bitmap_bits(std::uint32_t total) noexcept { return (std::uint64_t{total} + kMinFragmentBytes - 1) / kMinFragmentBytes; }

class FragmentStage final : public Stage {
 public:
  ~FragmentStage() override {
    queue_.release_all();
    for (Partial& pa : partials_) {
      if (pa.in_use && pa.msg != nullptr) pa.msg->release();
    }
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)env;
    (void)errors;  // the registry checked every range
    frag_bytes_ = static_cast<std::uint32_t>(params.integer("fragment_bytes"));
    max_message_ = static_cast<std::uint32_t>(params.integer("max_message_bytes"));
    timeout_ns_ = static_cast<std::uint64_t>(params.integer("reassembly_timeout_us")) * 1000;
    max_bytes_ = static_cast<std::uint64_t>(params.integer("max_reassembly_bytes"));
    max_per_sender_ = static_cast<std::uint32_t>(params.integer("max_partial_per_sender"));
    max_senders_ = static_cast<std::uint32_t>(params.integer("max_senders"));
    max_queue_ = static_cast<std::uint32_t>(params.integer("send_queue_messages"));
    retry_ns_ = static_cast<std::uint64_t>(params.integer("retry_us")) * 1000;
    // Fixed tables, so the hot path never grows them: one slot per sender, and as many
    // partial messages as senders may hold (capped; past it the stalest is evicted).
    senders_.resize(max_senders_);
    const std::uint64_t n_partials = std::min<std::uint64_t>(std::uint64_t{max_senders_} * max_per_sender_, 4096);
    partials_.resize(static_cast<std::size_t>(n_partials));
    for (std::uint32_t i = 0; i < partials_.size(); ++i) {
      partials_[i].next_free = i + 1 < partials_.size() ? i + 1 : kNone;
    }
    free_head_ = 0;
    return true;
  }

  // --- send -----------------------------------------------------------------------------

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data && p->payload_len <= frag_bytes_) {
      io.down(p);  // acks, statuses, heartbeats: never queued behind data
      return;
    }
    const bool split = p->payload_len > frag_bytes_;
    if (!split && queue_.empty()) {
      io.count(passed_whole);
      io.down(p);
      return;
    }
    if (split) {
      if (p->payload_len > max_message_) {
        io.count(too_large_sent);
        io.drop(p, DropReason::too_large);
        return;
      }
      // Every fragment needs the extensions above, ours and the base header in front of
      // the payload; check once, before any fragment leaves.
      const std::uint32_t ext_bytes = p->payload_off - p->off;
      if (p->sealed || p->off > p->payload_off || p->n_ext >= wire::kMaxExtensions ||
          ext_bytes + wire::kExtHeaderBytes + kFragExtBytes + wire::kBaseHeaderBytes > kHeadroom) {
        io.count(no_room);
        io.drop(p, DropReason::buffer_full);
        return;
      }
    } else {
      io.count(passed_whole);
    }
    if (queue_.size() >= max_queue_) {
      io.count(queue_full);
      io.drop(p, DropReason::buffer_full);
      return;
    }
    // Queue it (behind any message still waiting for buffers, to keep the order) and drain.
    queue_.push(p);
    if (queue_.size() == 1 || io.now_ns() >= retry_at_) drain(io);
    rearm(io);
  }

  void on_stop(StageIo& io) noexcept override {
    drain(io);
    rearm(io);
  }

  // --- receive --------------------------------------------------------------------------

  void on_receive(Packet* p, StageIo& io) noexcept override {
    purge_gone(io);
    if ((p->flags & wire::kFlagFragment) == 0) {
      io.up(p);
      return;
    }
    io.count(fragments_received);
    receive_fragment(p, io);
    rearm(io);
  }

  void on_tick(StageIo& io) noexcept override {
    timer_.fired();
    const std::uint64_t now = io.now_ns();
    purge_gone(io);
    if (!queue_.empty() && now >= retry_at_) drain(io);
    while (!lru_.empty() && partials_[lru_.front()].progress_ns + timeout_ns_ <= now) {
      io.count(incomplete);
      finish(lru_.front(), DropReason::incomplete, io);
    }
    rearm(io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return queue_.size() + n_partials_; }
  void read_gauges(std::span<double> out) const noexcept override {
    out[Gauge::reassembly_bytes] = static_cast<double>(used_bytes_);
    out[Gauge::partial_messages] = static_cast<double>(n_partials_);
    out[Gauge::queued_messages] = static_cast<double>(queue_.size());
  }

 private:
  // --- send helpers ---------------------------------------------------------------------

  // Emit fragments of the queued messages until the queue is empty or the pool is dry.
  void drain(StageIo& io) noexcept {
    while (Packet* p = queue_.front()) {
      if (p->payload_len > frag_bytes_) {
        if (!split_some(p, io)) {
          retry_at_ = io.now_ns() + retry_ns_;
          return;
        }
        queue_.pop()->release();
      } else {
        io.down(queue_.pop());
      }
    }
    retry_at_ = 0;
  }

  // Send the remaining fragments of `p` from q_off_; false when the pool ran dry.
  bool split_some(Packet* p, StageIo& io) noexcept {
    if (q_off_ == 0) {
      q_id_ = next_id_++;
      io.count(messages_split);
    }
    const std::uint32_t total = p->payload_len;
    const std::uint32_t ext_bytes = p->payload_off - p->off;
    while (q_off_ < total) {
      Packet* f = io.alloc();
      if (f == nullptr) {
        io.count(pool_waits);
        return false;
      }
      // Pool buffers all have the same size, so this is the same for every fragment.
      std::uint32_t room = f->cap > kHeadroom + wire::kTrailerBytes ? f->cap - kHeadroom - wire::kTrailerBytes : 0;
      if (room > frag_bytes_) room = frag_bytes_;
      if (room < kMinFragmentBytes) {
        // A pool this small cannot carry fragments at all; give up on the message whole.
        f->release();
        io.count(no_room);
        q_off_ = total;
        break;
      }
      const std::uint32_t chunk = total - q_off_ < room ? total - q_off_ : room;
      f->reset_for_send(chunk);
      std::memcpy(f->payload(), p->payload() + q_off_, chunk);
      // The extensions above, byte for byte, just in front of the payload.
      f->off = f->payload_off - ext_bytes;
      f->len += ext_bytes;
      std::memcpy(f->buf + f->off, p->buf + p->off, ext_bytes);
      f->n_ext = p->n_ext;
      for (std::uint8_t i = 0; i < p->n_ext; ++i) {
        f->ext_type[i] = p->ext_type[i];
        f->ext_len[i] = p->ext_len[i];
        f->ext_body[i] = static_cast<std::uint16_t>(p->ext_body[i] - p->off + f->off);
      }
      std::uint8_t* body = f->push_ext(wire::Ext::fragment, kFragExtBytes);  // room checked in on_send
      wire::put_u32(body, q_id_);
      wire::put_u32(body + 4, q_off_);
      wire::put_u32(body + 8, total);
      f->kind = p->kind;
      f->flags = static_cast<std::uint16_t>(p->flags | wire::kFlagFragment);
      f->channel = p->channel;
      f->sender = p->sender;
      f->epoch = p->epoch;
      f->seq = p->seq;
      f->token = p->token;
      f->expires_ns = p->expires_ns;
      f->dst_ip = p->dst_ip;
      f->dst_port = p->dst_port;
      q_off_ += chunk;
      io.count(fragments_sent);
      io.down(f);
    }
    q_off_ = 0;
    return true;
  }

  // --- receive helpers ------------------------------------------------------------------

  void bad(Packet* p, StageIo& io) noexcept {
    io.count(malformed);
    io.drop(p, DropReason::malformed);
  }

  void receive_fragment(Packet* p, StageIo& io) noexcept {
    std::uint8_t elen = 0;
    const std::uint8_t* body = p->ext(wire::Ext::fragment, &elen);
    if (body == nullptr || elen != kFragExtBytes || p->payload_len == 0) return bad(p, io);
    const std::uint32_t id = wire::get_u32(body);
    const std::uint32_t offset = wire::get_u32(body + 4);
    const std::uint32_t total = wire::get_u32(body + 8);
    const std::uint32_t len = p->payload_len;
    if (total == 0 || std::uint64_t{offset} + len > total) return bad(p, io);
    if (total > max_message_) {
      io.count(too_large_received);
      io.drop(p, DropReason::too_large);
      return;
    }
    const bool is_last = offset + len == total;
    // A fragment other than the last is L bytes at a multiple of L (checked here, before
    // it may start a partial message).
    if (!is_last && (len < kMinFragmentBytes || offset % len != 0)) return bad(p, io);
    // The first fragment's extensions are restored on the message; they must fit in its
    // headroom (a real sender's always do: they came from one).
    if (offset == 0 && restored_ext_bytes(*p) > kHeadroom - wire::kBaseHeaderBytes) return bad(p, io);

    const std::uint64_t now = io.now_ns();
    const std::uint32_t s_idx = find_sender(p->sender, p->epoch, now, io);
    if (s_idx == kNone) {
      io.count(stale_epoch);
      io.drop(p, DropReason::stale_epoch);
      return;
    }
    SenderState& s = senders_[s_idx];
    s.last_ns = now;

    std::uint32_t pi = find_partial(s, id);
    if (pi == kNone) {
      if (!is_new_id(s, id)) {
        io.count(late);
        io.drop(p, DropReason::duplicate);
        return;
      }
      pi = start_partial(s_idx, id, total, now, io);
      if (pi == kNone) {
        io.drop(p, DropReason::reassembly_full);
        return;
      }
    }
    Partial& pa = partials_[pi];
    if (pa.total != total) return bad(p, io);

    // Where the fragment goes, by the rules in the header comment.
    if (is_last) {
      if (pa.frag_len != 0) {
        const std::uint32_t n = (total + pa.frag_len - 1) / pa.frag_len;
        if (offset != (n - 1) * pa.frag_len) return bad(p, io);
        if (!accept_index(pa, n - 1, p, io)) return;
      } else if (pa.pending_last) {
        if (offset != pa.last_off) return bad(p, io);
        io.count(duplicates);
        io.drop(p, DropReason::duplicate);
        return;
      } else {
        pa.pending_last = true;
        pa.last_off = offset;
        pa.last_len = len;
        pa.received += len;
      }
    } else {
      if (pa.frag_len == 0) {
        pa.frag_len = len;  // aligned: checked above
        if (pa.pending_last) {
          // Check the provisional last fragment now that L is known.
          pa.pending_last = false;
          pa.received -= pa.last_len;
          const std::uint32_t n = (total + len - 1) / len;
          if (pa.last_off == (n - 1) * len) {
            set_bit(pa, n - 1);
            pa.received += pa.last_len;
          } else {
            io.count(malformed);
          }
        }
      }
      if (len != pa.frag_len || offset % pa.frag_len != 0) return bad(p, io);
      if (!accept_index(pa, offset / pa.frag_len, p, io)) return;
    }

    // Accepted: copy the bytes, and from the first fragment the message's metadata.
    std::memcpy(pa.msg->payload() + offset, p->payload(), len);
    // A message with a lifetime lives as long as its earliest fragment says.
    if (p->expires_ns != 0 && (pa.msg->expires_ns == 0 || p->expires_ns < pa.msg->expires_ns)) {
      pa.msg->expires_ns = p->expires_ns;
    }
    if (offset == 0) take_metadata(pa, *p);
    // Ordering above reads these of the whole message (Packet::gap_cause, Packet::rseq).
    if (p->gap_cause != 0) pa.msg->gap_cause = p->gap_cause;
    if (p->rseq > pa.msg->rseq) pa.msg->rseq = p->rseq;
    progress(pi, now);
    p->release();
    if (pa.received == pa.total) complete(pi, io);
  }

  // Marks fragment `index` received; false (and the packet dropped) for a duplicate.
  bool accept_index(Partial& pa, std::uint32_t index, Packet* p, StageIo& io) noexcept {
    if (get_bit(pa, index)) {
      io.count(duplicates);
      io.drop(p, DropReason::duplicate);
      return false;
    }
    set_bit(pa, index);
    pa.received += p->payload_len;
    return true;
  }

  static bool get_bit(const Partial& pa, std::uint32_t i) noexcept { return ((pa.bits[i / 64] >> (i % 64)) & 1u) != 0; }
  static void set_bit(Partial& pa, std::uint32_t i) noexcept { pa.bits[i / 64] |= std::uint64_t{1} << (i % 64); }

  static std::uint32_t restored_ext_bytes(const Packet& p) noexcept {
    std::uint32_t n = 0;
    for (std::uint8_t i = 0; i < p.n_ext; ++i) {
      if (p.ext_type[i] != static_cast<std::uint8_t>(wire::Ext::fragment)) n += wire::kExtHeaderBytes + p.ext_len[i];
    }
    return n;
  }

  // The message gets the first fragment's header fields and its extensions (all but
  // ours), written in the headroom in front of the payload as a decoder would see them.
  static void take_metadata(Partial& pa, const Packet& f) noexcept {
    Packet& m = *pa.msg;
    const std::uint32_t ext_bytes = restored_ext_bytes(f);  // checked to fit
    std::uint32_t at = m.payload_off - ext_bytes;
    m.off = at;
    m.n_ext = 0;
    for (std::uint8_t i = 0; i < f.n_ext; ++i) {
      if (f.ext_type[i] == static_cast<std::uint8_t>(wire::Ext::fragment)) continue;
      m.buf[at] = f.ext_type[i];
      m.buf[at + 1] = f.ext_len[i];
      std::memcpy(m.buf + at + wire::kExtHeaderBytes, f.buf + f.ext_body[i], f.ext_len[i]);
      m.ext_type[m.n_ext] = f.ext_type[i];
      m.ext_len[m.n_ext] = f.ext_len[i];
      m.ext_body[m.n_ext] = static_cast<std::uint16_t>(at + wire::kExtHeaderBytes);
      ++m.n_ext;
      at += wire::kExtHeaderBytes + f.ext_len[i];
    }
    m.kind = f.kind;
    m.flags = static_cast<std::uint16_t>(f.flags & ~wire::kFlagFragment);
    m.channel = f.channel;
    m.seq = f.seq;
    m.src_ip = f.src_ip;
    m.src_port = f.src_port;
    m.dst_ip = f.dst_ip;
    m.dst_port = f.dst_port;
    pa.have_first = true;
  }

  void complete(std::uint32_t pi, StageIo& io) noexcept {
    Partial& pa = partials_[pi];
    Packet* m = pa.msg;
    pa.msg = nullptr;
    m->sender = senders_[pa.sender_idx].id;
    m->epoch = senders_[pa.sender_idx].epoch;
    m->len = m->payload_off - m->off + m->payload_len;
    m->sealed = true;  // like a decoded datagram: nothing more is pushed on it
    m->rx_ns = io.now_ns();
    m->token = 0;
    m->next = nullptr;
    io.count(messages_reassembled);
    release_partial(pi);
    io.up(m);
  }

  // Drop a partial message whole.
  void finish(std::uint32_t pi, DropReason why, StageIo& io) noexcept {
    Partial& pa = partials_[pi];
    Packet* m = pa.msg;
    pa.msg = nullptr;
    release_partial(pi);
    io.drop(m, why);
  }

  void release_partial(std::uint32_t pi) noexcept {
    Partial& pa = partials_[pi];
    SenderState& s = senders_[pa.sender_idx];
    mark_done(s, pa.id);
    lru_.remove(partials_.data(), pi);
    if (pa.s_prev != kNone) partials_[pa.s_prev].s_next = pa.s_next;
    else s.partials_head = pa.s_next;
    if (pa.s_next != kNone) partials_[pa.s_next].s_prev = pa.s_prev;
    --s.n_partials;
    used_bytes_ -= pa.charge;
    --n_partials_;
    pa.bits.reset();
    pa.in_use = false;
    pa.next_free = free_head_;
    free_head_ = pi;
  }

  std::uint32_t find_partial(const SenderState& s, std::uint32_t id) const noexcept {
    for (std::uint32_t i = s.partials_head; i != kNone; i = partials_[i].s_next) {
      if (partials_[i].id == id) return i;
    }
    return kNone;
  }

  std::uint32_t start_partial(std::uint32_t s_idx, std::uint32_t id, std::uint32_t total, std::uint64_t now,
                              StageIo& io) noexcept {
    const std::uint64_t words = (bitmap_bits(total) + 63) / 64;
    const std::uint64_t charge = std::uint64_t{kHeadroom} + total + wire::kTrailerBytes + words * 8;
    if (charge > max_bytes_) {
      io.count(evicted);  // can never fit: refused like an evicted one
      return kNone;
    }
    SenderState& s = senders_[s_idx];
    // Room: this sender's own limit first, then the global table and byte budget.
    if (s.n_partials >= max_per_sender_) evict_stalest_of(s, io);
    while (!lru_.empty() && (free_head_ == kNone || used_bytes_ + charge > max_bytes_)) {
      io.count(evicted);
      finish(lru_.front(), DropReason::reassembly_full, io);
    }
    if (free_head_ == kNone) return kNone;
    Packet* m = io.alloc_large(total);
    std::unique_ptr<std::uint64_t[]> bits(new (std::nothrow) std::uint64_t[words]);
    if (m == nullptr || !bits) {
      if (m != nullptr) m->release();
      io.count(alloc_failed);
      return kNone;
    }
    std::memset(bits.get(), 0, words * 8);
    const std::uint32_t pi = free_head_;
    Partial& pa = partials_[pi];
    free_head_ = pa.next_free;
    pa.in_use = true;
    pa.sender_idx = s_idx;
    pa.id = id;
    pa.total = total;
    pa.frag_len = 0;
    pa.received = 0;
    pa.have_first = false;
    pa.pending_last = false;
    pa.last_off = pa.last_len = 0;
    pa.charge = charge;
    pa.msg = m;
    pa.bits = std::move(bits);
    pa.nbits = static_cast<std::uint32_t>(words * 64);
    pa.progress_ns = now;
    lru_.push_back(partials_.data(), pi);
    pa.s_prev = kNone;
    pa.s_next = s.partials_head;
    if (s.partials_head != kNone) partials_[s.partials_head].s_prev = pi;
    s.partials_head = pi;
    ++s.n_partials;
    used_bytes_ += charge;
    ++n_partials_;
    io.count(partials_started);
    return pi;
  }

  void evict_stalest_of(SenderState& s, StageIo& io) noexcept {
    std::uint32_t worst = kNone;
    for (std::uint32_t i = s.partials_head; i != kNone; i = partials_[i].s_next) {
      if (worst == kNone || partials_[i].progress_ns < partials_[worst].progress_ns) worst = i;
    }
    if (worst == kNone) return;
    io.count(evicted);
    finish(worst, DropReason::reassembly_full, io);
  }

  // --- finished message ids per sender ----------------------------------------------------

  // Whether `id` (with no partial message) may start one: newer than anything seen, or
  // within the window and not finished yet. Advances the window for a newer id.
  static bool is_new_id(SenderState& s, std::uint32_t id) noexcept {
    if (!s.have_highest) {
      s.have_highest = true;
      s.highest = id;
      for (auto& w : s.done) w = 0;
      return true;
    }
    const auto ahead = static_cast<std::int32_t>(id - s.highest);  // serial-number arithmetic
    if (ahead > 0) {
      if (static_cast<std::uint32_t>(ahead) >= kIdWindow) {
        for (auto& w : s.done) w = 0;
      } else {
        for (std::uint32_t x = s.highest + 1; x != id + 1; ++x) clear_done(s, x);
      }
      s.highest = id;
      return true;
    }
    if (static_cast<std::uint32_t>(-static_cast<std::int64_t>(ahead)) >= kIdWindow) return false;
    return !is_done(s, id);
  }
  static bool is_done(const SenderState& s, std::uint32_t id) noexcept {
    const std::uint32_t b = id % kIdWindow;
    return ((s.done[b / 64] >> (b % 64)) & 1u) != 0;
  }
  static void clear_done(SenderState& s, std::uint32_t id) noexcept {
    const std::uint32_t b = id % kIdWindow;
    s.done[b / 64] &= ~(std::uint64_t{1} << (b % 64));
  }
  static void mark_done(SenderState& s, std::uint32_t id) noexcept {
    const std::uint32_t b = id % kIdWindow;
    s.done[b / 64] |= std::uint64_t{1} << (b % 64);
  }

  // --- senders --------------------------------------------------------------------------

  // The slot of (id, epoch), or kNone when epoch is a retired incarnation of id. A new
  // epoch of a known sender drops the old incarnation's partial messages.
  std::uint32_t find_sender(std::uint32_t id, std::uint32_t epoch, std::uint64_t now, StageIo& io) noexcept {
    std::uint32_t idx = kNone;
    if (last_sender_ < n_senders_ && senders_[last_sender_].id == id) {
      idx = last_sender_;
    } else {
      for (std::uint32_t i = 0; i < n_senders_; ++i) {
        if (senders_[i].id == id) {
          idx = i;
          break;
        }
      }
    }
    if (idx == kNone) {
      if (n_senders_ < max_senders_) {
        idx = n_senders_++;
      } else {
        idx = 0;
        for (std::uint32_t i = 1; i < n_senders_; ++i) {
          if (senders_[i].last_ns < senders_[idx].last_ns) idx = i;
        }
        io.count(senders_evicted);
        drop_partials_of(idx, DropReason::reassembly_full, io);
      }
      SenderState& s = senders_[idx];
      s = SenderState{};
      s.in_use = true;
      s.id = id;
      s.epoch = epoch;
      s.last_ns = now;
    }
    last_sender_ = idx;
    SenderState& s = senders_[idx];
    if (s.epoch != epoch) {
      for (std::uint8_t i = 0; i < s.n_retired; ++i) {
        if (s.retired[i] == epoch) return kNone;
      }
      drop_partials_of(idx, DropReason::incomplete, io);
      s.retired[s.retired_pos] = s.epoch;
      s.retired_pos = static_cast<std::uint8_t>((s.retired_pos + 1) % kRetiredEpochs);
      if (s.n_retired < kRetiredEpochs) ++s.n_retired;
      s.epoch = epoch;
      s.have_highest = false;
    }
    return idx;
  }

  void drop_partials_of(std::uint32_t s_idx, DropReason why, StageIo& io) noexcept {
    while (senders_[s_idx].partials_head != kNone) {
      io.count(why == DropReason::incomplete ? incomplete : evicted);
      finish(senders_[s_idx].partials_head, why, io);
    }
  }

  // --- progress order and the timer ------------------------------------------------------

  void progress(std::uint32_t pi, std::uint64_t now) noexcept {
    partials_[pi].progress_ns = now;
    lru_.move_to_back(partials_.data(), pi);
  }

  // One timer serves both directions: the send retry and the stalest partial's timeout
  // (the progress list is in deadline order, since every partial has the same timeout).
  // The view says a sender failed, left or restarted: its partial messages can never
  // complete (with reliability, its retransmissions stopped), so they are dropped as
  // incomplete now rather than after reassembly_timeout_us. Checked on input and on a
  // timer at least every kViewCheckNs while anything is partial.
  void purge_gone(StageIo& io) noexcept {
    const Group& g = io.group();
    if (g.view_id() == view_seen_) return;
    view_seen_ = g.view_id();
    if (n_partials_ == 0) return;
    // A sender the view does not know is gone too once every named member has been heard
    // or declared failed (one that crashed before any of its heartbeats reached us).
    bool strangers_gone = g.slots() > 1;
    for (std::size_t i = 0; i < g.slots(); ++i) {
      if (g.member(static_cast<int>(i)).state == MemberState::expected) strangers_gone = false;
    }
    for (SenderState& st : senders_) {
      if (!st.in_use || st.n_partials == 0) continue;
      const int slot = g.slot_of_sender(st.id);
      if (slot == g.self_slot()) continue;
      bool gone = strangers_gone;
      if (slot != kNoSlot) {
        const MemberInfo& m = g.member(slot);
        gone = (m.epoch != 0 && m.epoch != st.epoch) || m.state == MemberState::failed ||
               m.state == MemberState::left;
      }
      if (!gone) continue;
      while (st.partials_head != kNone) {
        io.count(incomplete);
        finish(st.partials_head, DropReason::incomplete, io);
      }
    }
  }

  void rearm(StageIo& io) noexcept {
    std::uint64_t d = 0;
    if (!queue_.empty()) d = retry_at_ != 0 ? retry_at_ : io.now_ns() + retry_ns_;
    if (!lru_.empty()) {
      std::uint64_t t = partials_[lru_.front()].progress_ns + timeout_ns_;
      // Wake up now and then to notice a sender gone from the view (purge_gone).
      // (An armed deadline still ahead is kept, so that a stream of fragments does not
      // re-arm the timer for each one.)
      const std::uint64_t armed = timer_.armed();
      t = std::min(t, armed > io.now_ns() ? armed : io.now_ns() + kViewCheckNs);
      d = detail::earliest_deadline({d, t});
    }
    timer_.set(io, d);
  }

  std::uint64_t view_seen_ = 0;

  // Parameters.
  std::uint32_t frag_bytes_ = 1200;
  std::uint32_t max_message_ = 16777216;
  std::uint64_t timeout_ns_ = 2'000'000'000;
  std::uint64_t max_bytes_ = 67108864;
  std::uint32_t max_per_sender_ = 16;
  std::uint32_t max_senders_ = 256;
  std::uint32_t max_queue_ = 1024;
  std::uint64_t retry_ns_ = 1'000'000;

  // Send side: messages waiting for pool buffers (linked through Packet::next); the head
  // may be partly sent (q_off_ bytes, as message q_id_).
  PacketFifo queue_;
  std::uint32_t q_off_ = 0;
  std::uint32_t q_id_ = 0;
  std::uint32_t next_id_ = 1;
  std::uint64_t retry_at_ = 0;

  // Receive side.
  std::vector<SenderState> senders_;
  std::uint32_t n_senders_ = 0;
  std::uint32_t last_sender_ = 0;
  std::vector<Partial> partials_;
  std::uint32_t free_head_ = kNone;
  detail::IndexList<Partial, &Partial::lru> lru_;  // progress order: the stalest first
  std::uint32_t n_partials_ = 0;
  std::uint64_t used_bytes_ = 0;

  detail::StageTimer timer_;
};

}  // namespace

void register_fragment_split(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Fragmentation: messages larger than one datagram are split into fragments and reassembled.",
      .notes =
          "Wire: extension `fragment` (type 2), 12 bytes: u32 message id (per sender incarnation, increasing over "
          "fragmented messages), u32 byte offset, u32 total length; the base header carries the fragment flag. "
          "A message of at most `fragment_bytes` passes untouched (zero bytes added). A larger one (data, or a "
          "control packet such as ordering.group's re-sent message) is cut into "
          "ceil(length / fragment_bytes) pool packets, each with the message's flags, token and a byte-for-byte "
          "copy of the extensions the stages above wrote (e.g. ordering.seq's number); the reassembled message "
          "gets those of its first fragment back, so stages above see it as sent. When the pool runs dry "
          "mid-message, the rest (and later messages, to keep order) waits in a bounded queue and resumes on a "
          "timer (`fragment.pool_waits`). Every received fragment is validated as hostile: bounds, a consistent "
          "total, one fragment length L for all but the last (at least 16 bytes), offsets on multiples of L; "
          "anything else is dropped as malformed without disturbing the partial message, and duplicates are "
          "dropped. A partial message with no new fragment for `reassembly_timeout_us` is dropped whole "
          "(`drops.incomplete`). Memory is bounded: partial messages are charged their buffer (plus 1/128 for "
          "the fragment bitmap) against `max_reassembly_bytes`, and a sender holds at most "
          "`max_partial_per_sender`; past either limit the stalest partial message is dropped whole "
          "(`drops.reassembly_full`). Each sender's last 1024 finished message ids are remembered, so late or "
          "duplicated fragments never deliver a message twice. With reliability below, every fragment is "
          "repaired and messages always complete; the reliability stage then reports each fragment's outcome "
          "under the message's token.",
      .params = {{.name = "fragment_bytes",
                  .type = ParamType::integer,
                  .default_value = "1200",
                  .doc = "Payload bytes per fragment (16..65507); the compiler derives it from the MTU and the "
                         "stages below.",
                  .min = kMinFragmentBytes,
                  .max = wire::kMaxDatagramBytes},
                 {.name = "max_message_bytes",
                  .type = ParamType::integer,
                  .default_value = "16777216",
                  .doc = "Largest message sent or reassembled, in bytes (1..2^30).",
                  .min = 1,
                  .max = std::int64_t{1} << 30},
                 {.name = "reassembly_timeout_us",
                  .type = ParamType::integer,
                  .default_value = "2000000",
                  .doc = "A partial message with no new fragment for this long is dropped whole, in microseconds.",
                  .min = 1,
                  .max = 3'600'000'000},
                 {.name = "max_reassembly_bytes",
                  .type = ParamType::integer,
                  .default_value = "67108864",
                  .doc = "Bytes held in partial messages at this receiver, all senders together.",
                  .min = 1,
                  .max = std::int64_t{1} << 40},
                 {.name = "max_partial_per_sender",
                  .type = ParamType::integer,
                  .default_value = "16",
                  .doc = "Partial messages per sender at once.",
                  .min = 1,
                  .max = 65536},
                 {.name = "max_senders",
                  .type = ParamType::integer,
                  .default_value = "256",
                  .doc = "Senders tracked at once; the least recently active is forgotten (its partial messages "
                         "dropped).",
                  .min = 1,
                  .max = 65536},
                 {.name = "send_queue_messages",
                  .type = ParamType::integer,
                  .default_value = "1024",
                  .doc = "Messages that may wait for packet buffers on the send path; more are dropped whole.",
                  .min = 1,
                  .max = 1 << 20},
                 {.name = "retry_us",
                  .type = ParamType::integer,
                  .default_value = "1000",
                  .doc = "How soon to retry sending after the packet pool ran dry, in microseconds.",
                  .min = 1,
                  .max = 60'000'000}},
      .counters = counter_list(kCounters),
      .gauges = gauge_list(kGauges),
      .factory = [] { return std::make_unique<FragmentStage>(); },
      .serves = "max_message_bytes",
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::fragment),
                      .name = "fragment",
                      .body_bytes = 12,
                      .carried_on = "data (and large control) fragments, with flag bit 3",
                      .body = "u32 message id, u32 byte offset, u32 total message length (12 bytes)"}},
  });
}

}  // namespace tmc
