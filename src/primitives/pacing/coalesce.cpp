// pacing.coalesce — several small messages in one datagram (paper Table 3: throughput vs latency).
//
// Synopsis
//   On send, data packets are copied as records (sealed, or compact) into one batch
//   datagram, flushed when the next message would not fit in max_bytes, when max_messages
//   are in it, or delay_us after its first message. On receive, a batch is split back into its inner datagrams, each
//   validated as hostile input.
// Params
//   max_bytes (int, 1400)     payload budget of one batch datagram (the compiler passes the
//                             channel's max payload per datagram); further capped by the
//                             endpoint's max_payload_bytes and the pool's buffer size
//   delay_us (int, 100)       longest a message waits for company; 0 = until the next tick
//   max_messages (int, 64)    messages per batch at most
//   records (full|compact, full)  how records are written (see Wire); a receiver reads
//                             both. The compiler asks for compact.
// Counters
//   see register_pacing_coalesce below (pacing.coalesce_*)
// Wire
//   A batch is a Kind::data datagram with extension wire::Ext::batch, 2 bytes: u16 count of
//   records; its payload is `count` records of { u16 length, length bytes: one complete inner
//   datagram (base header, extensions, payload) }. The outer header carries the channel,
//   sender and epoch shared by all inner datagrams and flags kFlagReliable when the records
//   are reliable (a batch never mixes reliable and unreliable ones; reliability.arq below
//   then acknowledges the batch as one datagram) (the checksum stage below adds
//   its flag and a trailer over the whole batch).
//   Compact records (records: compact): the extension is 3 bytes, u16 count and u8 format
//   = 1, and each record is { u16 length, then `length` bytes: u8 head, [u8 ext_bytes,
//   ext_bytes of extensions], payload }. A record leaves out what every inner datagram of a
//   batch shares or what the outer header already says (magic, version, kind = data,
//   channel, sender, epoch, lengths): 22 bytes less per message than a full record. The
//   head's low four bits are the record's flags; bit 4 says the record's only extension is
//   a seq equal to the previous record's plus one, and is left out (bits 5..7 must be 0).
//   A 64-byte message with a seq (the usual case) then costs 67 bytes instead of 100, so
//   a 1433-byte batch carries 21 of them instead of 14.
// Notes
//   A batch that holds one message at flush time is sent as that message itself: at low
//   rates the stage costs no bytes. The first message of a batch is kept as its own packet;
//   only when a second one comes is a batch buffer taken from the pool (io.alloc()) and both
//   copied in, so there is no heap allocation per message. If the pool is empty the held
//   message simply leaves alone. Non-data kinds (acks, nacks, heartbeats, control) pass down
//   at once, untouched: delaying an ack would only inflate the peer's RTT estimate. A data
//   packet too large for any batch flushes the pending batch (to keep the sender's order)
//   and passes down as itself; so does a unicast data packet (Packet::dst_ip set).
//
//   Receive: a batch whose framing is wrong (a record overrunning the payload, bytes left
//   over, a count that disagrees with the records, an extension of the wrong length, or a
//   non-data outer kind) is dropped whole as malformed: nothing in it can be trusted. A
//   well-framed batch is split; each record is copied into a pool packet, decoded with
//   wire::decode, and must be a data datagram of the outer's channel, sender and epoch,
//   without a CRC trailer and not itself a batch. Records that fail are dropped as malformed
//   and counted; the others go up with the outer's arrival time and source address.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_COALESCE_COUNTERS(X, P)                                                                                 \
  X(P, batches_sent, "batch datagrams sent (two or more messages each)")                                            \
  X(P, messages_batched, "messages sent inside batches")                                                            \
  X(P, lone_sent, "messages flushed alone, sent as themselves")                                                     \
  X(P, oversize_passed, "messages too large for a batch, sent as themselves")                                       \
  X(P, unicast_passed, "unicast data packets sent as themselves (never batched)")                                   \
  X(P, flush_size, "flushes because the next message would not fit")                                                \
  X(P, flush_count, "flushes because max_messages was reached")                                                     \
  X(P, flush_timer, "flushes because delay_us had passed")                                                          \
  X(P, flush_stop, "flushes because the pipeline stopped")                                                          \
  X(P, alloc_failed, "batches not started: packet pool exhausted")                                                  \
  X(P, outcome_passed, "messages sent as themselves because the application waits on their outcome")                \
  X(P, flush_flags, "batches flushed because a reliable message followed an unreliable one or the reverse")         \
  X(P, batches_received, "batch datagrams received")                                                                \
  X(P, records_delivered, "inner messages split out of batches and passed up")                                      \
  X(P, records_malformed, "inner records dropped as malformed")                                                     \
  X(P, batch_malformed, "whole batches dropped for wrong framing")                                                  \
  X(P, rx_pool_exhausted, "inner records lost: packet pool exhausted")
TMC_STAGE_COUNTERS("pacing.coalesce_", TMC_COALESCE_COUNTERS);

constexpr std::uint8_t kBatchExtBytes = 2;
// Compact records: the batch extension is {u16 count, u8 format}.
constexpr std::uint8_t kCompactExtBytes = 3;
constexpr std::uint8_t kFormatCompact = 1;
// A compact record's head byte: the record's flags (wire::kKnownFlags fit in four bits) and
// whether its seq extension is implied.
constexpr std::uint8_t kHeadFlagsMask = 0x0F;
constexpr std::uint8_t kHeadImpliedSeq = 0x10;
constexpr std::uint8_t kHeadKnown = kHeadFlagsMask | kHeadImpliedSeq;
constexpr std::uint8_t kSeqBodyBytes = 8;
constexpr std::uint32_t kSeqExtBytes = wire::kExtHeaderBytes + kSeqBodyBytes;
constexpr std::uint32_t kRecordHeaderBytes = 2;

class CoalesceStage final : public Stage {
 public:
  ~CoalesceStage() override {
    if (first_ != nullptr) first_->release();
    if (batch_ != nullptr) batch_->release();
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)errors;  // the registry checked every range
    compact_ = params.text("records") == "compact";
    budget_ = static_cast<std::uint32_t>(params.integer("max_bytes"));
    // The channel's own limit wins over a larger manifest value: a batch is one datagram.
    if (env.max_payload_bytes != 0 && env.max_payload_bytes < budget_) budget_ = env.max_payload_bytes;
    delay_ns_ = static_cast<std::uint64_t>(params.integer("delay_us")) * 1000;
    max_messages_ = static_cast<std::uint32_t>(params.integer("max_messages"));
    return true;
  }

  // --- send ------------------------------------------------------------------------------

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data) {
      io.down(p);
      return;
    }
    // The stages above have pushed their extensions; a record is the finished (sealed)
    // datagram. A packet that leaves as itself stays open: reliability below pushes its
    // extension on it.
    const std::uint16_t rel = p->flags & wire::kFlagReliable;
    if (compact_ && ((p->flags & ~static_cast<std::uint16_t>(kHeadFlagsMask)) != 0 || ext_bytes_of(*p) > 0xFF)) {
      // What a compact record cannot carry (flags beyond four bits, none today; more than
      // 255 bytes of extensions): it goes as itself.
      flush(io);
      io.count(oversize_passed);
      io.down(p);
      return;
    }
    if (p->wants_outcome || p->expires_ns != 0) {
      // The application waits on this message's own outcome, which reliability reports for
      // the datagram that carries it, or the message has a lifetime of its own, which its
      // datagram carries: it goes as itself (flushing first keeps the order).
      flush(io);
      io.count(outcome_passed);
      io.down(p);
      return;
    }
    if (p->dst_ip != 0) {
      // A unicast datagram cannot share a batch addressed to the group; flushing first
      // keeps this sender's order.
      flush(io);
      io.count(unicast_passed);
      io.down(p);
      return;
    }
    // A record's size when it starts a batch (the most it can take).
    const std::uint32_t alone = record_bytes(*p, false);
    if (alone > budget_) {
      flush(io);
      io.count(oversize_passed);
      io.down(p);
      return;
    }
    if (count_ > 0 && rel != batch_flags_) {
      // Reliable and unreliable messages never share a batch: reliability acknowledges
      // the batch as a whole.
      io.count(flush_flags);
      flush(io);
    }
    std::uint64_t seq = 0;
    const bool has_seq = only_seq(*p, seq);
    std::uint32_t rec = count_ > 0 ? record_bytes(*p, implied(has_seq, seq)) : alone;
    if (count_ > 0 && bytes_ + rec > limit()) {
      io.count(flush_size);
      flush(io);
      rec = alone;
    }
    if (count_ == 0) batch_flags_ = rel;
    append(p, rec, io);
    last_has_seq_ = has_seq;
    last_seq_ = seq;
    if (count_ >= max_messages_) {
      io.count(flush_count);
      flush(io);
    }
  }

  void on_tick(StageIo& io) noexcept override {
    if (count_ == 0) return;
    if (io.now_ns() >= first_ns_ + delay_ns_) {
      io.count(flush_timer);
      flush(io);
    } else {
      io.arm_timer(first_ns_ + delay_ns_);
    }
  }

  void on_stop(StageIo& io) noexcept override {
    if (count_ > 0) io.count(flush_stop);
    flush(io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return count_ > 0 ? 1 : 0; }

  // --- receive ---------------------------------------------------------------------------

  void on_receive(Packet* p, StageIo& io) noexcept override {
    std::uint8_t ext_len = 0;
    const std::uint8_t* ext = p->ext(wire::Ext::batch, &ext_len);
    if (ext == nullptr) {
      io.up(p);
      return;
    }
    io.count(batches_received);
    const std::uint8_t* pay = p->payload();
    const std::uint32_t n = p->payload_len;
    const bool compact = ext_len == kCompactExtBytes && ext[2] == kFormatCompact;
    if ((ext_len != kBatchExtBytes && !compact) || p->kind != wire::Kind::data ||
        !framing_ok(pay, n, wire::get_u16(ext))) {
      io.count(batch_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (compact) {
      receive_compact(p, io);
      return;
    }
    std::uint32_t at = 0;
    while (at < n) {
      const std::uint32_t len = wire::get_u16(pay + at);
      const std::uint8_t* rec = pay + at + kRecordHeaderBytes;
      at += kRecordHeaderBytes + len;
      Packet* q = io.alloc();
      if (q == nullptr) {
        // Nothing to drop through io.drop: the records left are lost to memory pressure.
        io.count(rx_pool_exhausted);
        continue;
      }
      q->reset_for_receive();
      if (len > q->cap) {
        io.count(records_malformed);
        io.drop(q, DropReason::malformed);
        continue;
      }
      std::memcpy(q->buf, rec, len);
      q->len = len;
      if (!inner_ok(*q, *p)) {
        io.count(records_malformed);
        io.drop(q, DropReason::malformed);
        continue;
      }
      deliver_record(q, *p, io);
    }
    p->release();
  }

 private:
  // Split a batch of compact records (framing already checked). Each record becomes a pool
  // packet laid out exactly as wire::decode leaves a received datagram (base header,
  // extensions, payload, the fields filled in), so the stages above cannot tell. A record
  // with its extensions written out is rebuilt as a full datagram and goes through
  // wire::decode, the one parser of network bytes; a record with an implied seq (the
  // common case) has nothing left to parse: its header and its one extension are written
  // here from the outer header and the previous record's seq.
  // A record unpacked from batch `outer` goes up as if it had arrived on its own.
  static void deliver_record(Packet* q, const Packet& outer, StageIo& io) noexcept {
    q->rx_ns = outer.rx_ns;
    q->src_ip = outer.src_ip;
    q->src_port = outer.src_port;
    io.count(records_delivered);
    io.up(q);
  }

  void receive_compact(Packet* p, StageIo& io) noexcept {
    const std::uint8_t* pay = p->payload();
    const std::uint32_t n = p->payload_len;
    std::uint32_t at = 0;
    bool prev_ok = false;  // the previous record's seq is known
    std::uint64_t prev_seq = 0;
    while (at < n) {
      const std::uint32_t len = wire::get_u16(pay + at);
      const std::uint8_t* rec = pay + at + kRecordHeaderBytes;
      at += kRecordHeaderBytes + len;
      // The rebuilt datagram is at most the base header, the record, an implied seq
      // extension and a trailer: a small one takes a small buffer (dense while held).
      const bool small = wire::kBaseHeaderBytes + len + wire::kExtHeaderBytes + kSeqBodyBytes +
                             wire::kTrailerBytes <= kSmallPacketBytes;
      Packet* q = small ? io.alloc_small() : io.alloc();
      if (q == nullptr) {
        io.count(rx_pool_exhausted);
        prev_ok = false;  // the next implied seq cannot be trusted to follow a lost record
        continue;
      }
      q->reset_for_receive();
      const std::uint8_t head = len >= 1 ? rec[0] : 0xFF;
      const bool imp = (head & kHeadImpliedSeq) != 0;
      std::uint32_t ext_bytes = 0;
      std::uint32_t body_at = 1;  // where extensions (explicit) or the payload (implied) start
      // As for a full record (inner_ok): no CRC flag inside a batch.
      bool ok = len >= 1 && (head & ~kHeadKnown) == 0 && (head & wire::kFlagCrc) == 0;
      if (ok && imp) {
        ok = prev_ok;
        ext_bytes = kSeqExtBytes;
      } else if (ok) {
        ok = len >= 2 && rec[1] <= len - 2;
        if (ok) ext_bytes = rec[1];
        body_at = 2;
      }
      const std::uint32_t payload_len = ok ? len - body_at - (imp ? 0 : ext_bytes) : 0;
      if (!ok || wire::kBaseHeaderBytes + ext_bytes + payload_len > q->cap) {
        io.count(records_malformed);
        io.drop(q, DropReason::malformed);
        prev_ok = false;
        continue;
      }
      // The base header, as the sender's seal() would have written it.
      std::uint8_t* h = q->buf;
      wire::put_u16(h + 0, wire::kMagic);
      h[2] = wire::kVersion;
      h[3] = static_cast<std::uint8_t>(wire::Kind::data);
      wire::put_u16(h + 4, static_cast<std::uint16_t>(head & kHeadFlagsMask));
      wire::put_u16(h + 6, static_cast<std::uint16_t>(ext_bytes));
      wire::put_u32(h + 8, p->channel);
      wire::put_u32(h + 12, p->sender);
      wire::put_u32(h + 16, p->epoch);
      wire::put_u32(h + 20, payload_len);
      std::uint8_t* e = h + wire::kBaseHeaderBytes;
      if (imp) {
        prev_seq += 1;
        e[0] = static_cast<std::uint8_t>(wire::Ext::seq);
        e[1] = kSeqBodyBytes;
        wire::put_u64(e + wire::kExtHeaderBytes, prev_seq);
        std::memcpy(e + ext_bytes, rec + body_at, payload_len);
        q->len = static_cast<std::uint32_t>(wire::kBaseHeaderBytes) + ext_bytes + payload_len;
        // What wire::decode would fill in for these bytes.
        q->kind = wire::Kind::data;
        q->flags = static_cast<std::uint16_t>(head & kHeadFlagsMask);
        q->channel = p->channel;
        q->sender = p->sender;
        q->epoch = p->epoch;
        q->n_ext = 1;
        q->ext_type[0] = static_cast<std::uint8_t>(wire::Ext::seq);
        q->ext_len[0] = kSeqBodyBytes;
        q->ext_body[0] = static_cast<std::uint16_t>(wire::kBaseHeaderBytes + wire::kExtHeaderBytes);
        q->payload_off = static_cast<std::uint32_t>(wire::kBaseHeaderBytes) + ext_bytes;
        q->payload_len = payload_len;
        q->sealed = true;
      } else {
        std::memcpy(e, rec + body_at, ext_bytes + payload_len);
        q->len = static_cast<std::uint32_t>(wire::kBaseHeaderBytes) + ext_bytes + payload_len;
        if (!inner_ok(*q, *p)) {
          io.count(records_malformed);
          io.drop(q, DropReason::malformed);
          prev_ok = false;
          continue;
        }
        std::uint8_t seq_len = 0;
        const std::uint8_t* sb = q->ext(wire::Ext::seq, &seq_len);
        prev_ok = sb != nullptr && seq_len == kSeqBodyBytes;
        if (prev_ok) prev_seq = wire::get_u64(sb);
      }
      deliver_record(q, *p, io);
    }
    p->release();
  }

  // Send path: whether the packet's only extension is a seq (and its value).
  static bool only_seq(const Packet& p, std::uint64_t& seq) noexcept {
    if (p.n_ext != 1 || p.ext_type[0] != static_cast<std::uint8_t>(wire::Ext::seq) ||
        p.ext_len[0] != kSeqBodyBytes) {
      return false;
    }
    seq = wire::get_u64(p.buf + p.ext_body[0]);
    return true;
  }

  // Whether a record with this seq may leave it out: it follows the batch's last record.
  [[nodiscard]] bool implied(bool has_seq, std::uint64_t seq) const noexcept {
    return compact_ && has_seq && last_has_seq_ && seq == last_seq_ + 1;
  }

  // Extension bytes of a send-path packet (between its header, if sealed, and its payload).
  static std::uint32_t ext_bytes_of(const Packet& p) noexcept {
    const std::uint32_t start = p.off + (p.sealed ? static_cast<std::uint32_t>(wire::kBaseHeaderBytes) : 0u);
    return p.payload_off > start ? p.payload_off - start : 0;
  }

  // Bytes a record of `p` takes in a batch, its length prefix included.
  [[nodiscard]] std::uint32_t record_bytes(const Packet& p, bool implied_seq) const noexcept {
    if (!compact_) return kRecordHeaderBytes + p.len + (p.sealed ? 0u : wire::kBaseHeaderBytes);
    return kRecordHeaderBytes + 1 + (implied_seq ? 0u : 1u + ext_bytes_of(p)) + p.payload_len;
  }

  // Records must tile the payload exactly and number `count`.
  static bool framing_ok(const std::uint8_t* pay, std::uint32_t n, std::uint16_t count) noexcept {
    std::uint32_t at = 0;
    std::uint32_t seen = 0;
    while (at < n) {
      if (n - at < kRecordHeaderBytes) return false;
      const std::uint32_t len = wire::get_u16(pay + at);
      at += kRecordHeaderBytes;
      if (len > n - at) return false;
      at += len;
      ++seen;
    }
    // A batch of fewer than two is never sent (a lone message goes as itself).
    return seen == count && count >= 2;
  }

  static bool inner_ok(Packet& q, const Packet& outer) noexcept {
    if (wire::decode(q) != wire::DecodeError::none) return false;
    return q.kind == wire::Kind::data && q.channel == outer.channel && q.sender == outer.sender &&
           q.epoch == outer.epoch && (q.flags & wire::kFlagCrc) == 0 && q.ext(wire::Ext::batch) == nullptr;
  }

  void append(Packet* p, std::uint32_t rec, StageIo& io) noexcept {
    if (count_ == 0) {
      first_ = p;
      count_ = 1;
      // Whatever `rec` assumed, a batch's first record is written out in full.
      bytes_ = record_bytes(*p, false);
      first_ns_ = io.now_ns();
      first_token_ = p->token;
      last_token_ = p->token;
      io.arm_timer(first_ns_ + delay_ns_);
      return;
    }
    if (count_ == 1) {
      Packet* b = io.alloc();
      // Room for records in a pool buffer: after the headroom, before a checksum trailer.
      const std::uint32_t room =
          b == nullptr || b->cap < kHeadroom + wire::kTrailerBytes ? 0 : b->cap - kHeadroom - wire::kTrailerBytes;
      if (b != nullptr) room_ = room;
      if (b == nullptr || bytes_ + rec > limit()) {
        if (b == nullptr) {
          io.count(alloc_failed);
        } else {
          b->release();
          io.count(flush_size);
        }
        flush(io);
        append(p, rec, io);
        return;
      }
      b->reset_for_send(0);
      batch_ = b;
      channel_ = first_->channel;
      sender_ = first_->sender;
      epoch_ = first_->epoch;
      Packet* f = first_;
      first_ = nullptr;
      bytes_ = 0;
      write_record(*f, false);
      f->release();
    }
    std::uint64_t seq = 0;
    const bool has_seq = only_seq(*p, seq);
    write_record(*p, implied(has_seq, seq));
    last_token_ = p->token;
    p->release();
    ++count_;
  }

  void write_record(Packet& p, bool implied_seq) noexcept {
    std::uint8_t* at = batch_->payload() + bytes_;
    if (!compact_) {
      p.seal();
      wire::put_u16(at, static_cast<std::uint16_t>(p.len));
      std::memcpy(at + kRecordHeaderBytes, p.data(), p.len);
      bytes_ += kRecordHeaderBytes + p.len;
      return;
    }
    // Compact: the head byte, the extensions unless implied, the payload (see Wire).
    const std::uint32_t rec = record_bytes(p, implied_seq) - kRecordHeaderBytes;
    wire::put_u16(at, static_cast<std::uint16_t>(rec));
    std::uint8_t* w = at + kRecordHeaderBytes;
    *w++ = static_cast<std::uint8_t>((p.flags & kHeadFlagsMask) | (implied_seq ? kHeadImpliedSeq : 0));
    if (!implied_seq) {
      const std::uint32_t eb = ext_bytes_of(p);
      *w++ = static_cast<std::uint8_t>(eb);
      std::memcpy(w, p.buf + p.payload_off - eb, eb);
      w += eb;
    }
    std::memcpy(w, p.payload(), p.payload_len);
    bytes_ += kRecordHeaderBytes + rec;
  }

  void flush(StageIo& io) noexcept {
    if (count_ == 0) return;
    io.cancel_timer();
    if (count_ == 1) {
      Packet* f = first_;
      first_ = nullptr;
      count_ = 0;
      bytes_ = 0;
      io.count(lone_sent);
      io.down(f);
      return;
    }
    Packet* b = batch_;
    const std::uint32_t n = count_;
    batch_ = nullptr;
    count_ = 0;
    b->payload_len = bytes_;
    b->len = bytes_;
    bytes_ = 0;
    b->kind = wire::Kind::data;
    b->flags = batch_flags_;
    b->channel = channel_;
    b->sender = sender_;
    b->epoch = epoch_;
    // The batch stands for its messages' tokens (reliability acknowledges it when the
    // application acknowledges any of them; "forget this and earlier" covers it once it
    // covers the last one).
    b->token = last_token_;
    b->token_first = first_token_;
    // A fresh packet has the whole headroom free, so the extension always fits.
    if (compact_) {
      std::uint8_t* x = b->push_ext(wire::Ext::batch, kCompactExtBytes);
      wire::put_u16(x, static_cast<std::uint16_t>(n));
      x[2] = kFormatCompact;
    } else {
      wire::put_u16(b->push_ext(wire::Ext::batch, kBatchExtBytes), static_cast<std::uint16_t>(n));
    }
    io.count(batches_sent);
    io.count(messages_batched, n);
    io.down(b);
  }

  // What a batch may hold: the budget, or less when pool buffers are smaller.
  [[nodiscard]] std::uint32_t limit() const noexcept { return room_ < budget_ ? room_ : budget_; }

  std::uint32_t budget_ = 1400;
  std::uint32_t room_ = 0xFFFFFFFFu;  ///< record room of a pool buffer, learned at the first batch
  std::uint64_t delay_ns_ = 0;
  std::uint32_t max_messages_ = 64;

  // The batch being built: count_ messages, bytes_ of records. With one message it is
  // still its own packet (first_); from two on it lives in batch_.
  Packet* first_ = nullptr;
  Packet* batch_ = nullptr;
  std::uint32_t count_ = 0;
  std::uint32_t bytes_ = 0;
  std::uint64_t first_ns_ = 0;
  std::uint64_t first_token_ = 0;  ///< the batch's first and last messages' tokens
  std::uint64_t last_token_ = 0;
  std::uint32_t channel_ = 0;
  std::uint32_t sender_ = 0;
  std::uint32_t epoch_ = 0;
  std::uint16_t batch_flags_ = 0;  ///< kFlagReliable of every record in the batch
  bool compact_ = false;           ///< write compact records (see Wire)
  // The last record appended: whether its only extension is a seq, and its value (a
  // compact record that follows it by one leaves its seq out).
  bool last_has_seq_ = false;
  std::uint64_t last_seq_ = 0;
};

constexpr std::string_view kRecordFormats[] = {"full", "compact"};

}  // namespace

void register_pacing_coalesce(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "pacing.coalesce",
      .synopsis = "Batching: several small messages in one datagram, flushed on size, count or a bounded delay.",
      .notes = "Wire: a batch is a data datagram with extension `batch` (type 8), 2 bytes: the u16 number of "
               "records; its payload is that many records of {u16 length, one complete inner datagram}. The "
               "outer header carries the channel, sender and epoch the inner datagrams share. Data packets "
               "coming down are sealed and appended; the batch leaves when the next message would not fit in "
               "`max_bytes` (capped by the channel's max payload per datagram and the pool's buffer size), "
               "when it holds `max_messages`, or `delay_us` after its first message (0: at the next timer "
               "tick), so no message waits longer than `delay_us`. A batch of one message leaves as that "
               "message itself (no bytes added at low rates); a message too large for any batch flushes the "
               "pending one and passes as itself, as does a unicast data packet. Other kinds pass down at "
               "once (acks are never delayed). The "
               "batch buffer is a pool packet taken when the second message arrives: no allocation per "
               "message. Receive: a batch whose framing is wrong (record overrun, leftover bytes, count "
               "mismatch, fewer than two records) is dropped whole as malformed; otherwise every record is "
               "copied into a pool packet and decoded as hostile input, and must be a data datagram of the "
               "outer's channel, sender and epoch, without a CRC and not itself a batch, or it is dropped as "
               "malformed while the others are still delivered. Place the checksum stage below this one so "
               "that its CRC covers the whole batch. Compact records (`records: compact`, what the compiler "
               "asks for): the extension is 3 bytes (u16 count, u8 format 1) and a record is {u16 length, "
               "u8 head, [u8 extension bytes, extensions], payload}, leaving out the base header the records "
               "share with the batch; the head holds the flags (low four bits) and, in bit 4, that the "
               "record's only extension is a seq one above the previous record's and is left out as well "
               "(a 64-byte message with a seq takes 67 bytes instead of 100). The receiver rebuilds each "
               "record as the datagram it stands for; one with extensions goes through the wire decoder.",
      .params = {{.name = "max_bytes",
                  .type = ParamType::integer,
                  .default_value = "1400",
                  .doc = "Payload budget of one batch datagram, in bytes (64..65507); the compiler passes the "
                         "channel's max payload per datagram.",
                  .min = 64,
                  .max = wire::kMaxDatagramBytes},
                 {.name = "delay_us",
                  .type = ParamType::integer,
                  .default_value = "100",
                  .doc = "Longest a message waits for company, in microseconds (0: until the next timer tick).",
                  .min = 0,
                  .max = 10'000'000},
                 {.name = "max_messages",
                  .type = ParamType::integer,
                  .default_value = "64",
                  .doc = "Messages per batch at most (1..65535).",
                  .min = 1,
                  .max = 65535},
                 {.name = "records",
                  .type = ParamType::string,
                  .default_value = "full",
                  .doc = "How the sender writes records: 'full' (each a complete datagram) or 'compact' (without "
                         "the shared base header, seq implied when consecutive); a receiver reads both.",
                  .one_of = kRecordFormats}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<CoalesceStage>(); },
      .wire_bytes_per_message = kRecordHeaderBytes,
      .serves = "pacing",
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::batch),
                      .name = "batch",
                      .body_bytes = kCompactExtBytes,
                      .carried_on = "data",
                      .body = "u16 record count (2 bytes, full records), or u16 count and u8 format 1 (3 bytes, "
                              "compact records): see [Coalesced datagrams](#coalesced-datagrams-pacingcoalesce)"}},
  });
}

}  // namespace tmc
