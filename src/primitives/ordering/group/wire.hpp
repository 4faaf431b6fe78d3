// The wire of ordering.group, in one place: announcement entries, the network sequencer's
// stamp body (Ext::group_seq), and the control bodies of reliable mode (sequencer failover
// with agreement): typed Ext::order bodies for term announcements, ordering status and term
// starts. Shared by every part of the stage and its unit tests, so all read and write the
// exact same bytes.
//
// An Ext::order body of exactly 4 bytes is the unreliable mode's announcement ({u32 count};
// the term is the packet's sender and epoch). One of exactly 8 bytes is a re-sent message
// ({u64 seq}; the packet is a reliable control packet whose payload is the data message
// (sender, epoch, seq) — its sender re-sends its undelivered messages after a view change,
// because reliability gives a message up when a member of its ack set fails). Every other
// body starts with a type byte:
//
//   1 announce  body 9:  u8 type, u32 term_no, u32 count
//               payload: count entries {u32 sender, u32 epoch, u64 seq, u64 global} (24 B)
//               term = (term_no, packet sender, packet epoch); sent flagged reliable.
//   2 status    body 39: u8 type, u8 flags (bit 0: frozen), u32 term_no, u32 term_sender,
//                        u32 term_epoch, u64 held_through, u64 delivered_through,
//                        u64 stable_through, u8 record_count
//               payload: record_count cut records (20 B each, see below), the cuts of the
//               term start this member adopted, then (frozen statuses only) per-sender
//               cut-offs {u32 sender, u32 epoch, u64 last_seq} (16 B each, as many as the
//               rest of the payload holds; the member's own first): the last number of
//               each sender this member delivered or passed, which the next term start
//               takes the largest of; sent unreliable (repaired by the next one).
//   3 start     body 7:  u8 type, u32 term_no, u8 record_count, u8 cutoff_count
//               payload: record_count cut records, then cutoff_count per-sender cut-offs
//               {u32 sender, u32 epoch, u64 last_seq} (16 B); term = (term_no, packet
//               sender, packet epoch); sent flagged reliable. A group with more senders
//               than one datagram's cut-offs sends several start packets of one term, each
//               with every cut record and its own slice of the cut-offs (at most 255).
//   cut record: {u32 term_no, u32 term_sender, u32 term_epoch, u64 end}: "that term ends at
//               global number `end`".
//
// All integers big-endian. parse_* treat every byte as hostile: a wrong length, an unknown
// flag bit, a zero term number, counts beyond the limits or a payload that does not match
// the counts are refused (the stage drops the packet as malformed and counts it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "primitives/common/fixed_body.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail::group_wire {

inline constexpr std::uint8_t kLegacyAnnounceBody = 4;
inline constexpr std::uint8_t kResendBody = 8;
inline constexpr std::uint8_t kTypeAnnounce = 1;
inline constexpr std::uint8_t kTypeStatus = 2;
inline constexpr std::uint8_t kTypeStart = 3;
inline constexpr std::uint8_t kAnnounceBody = 9;
inline constexpr std::uint8_t kStatusBody = 39;
inline constexpr std::uint8_t kStartBody = 7;
inline constexpr std::uint32_t kEntryBytes = 24;
inline constexpr std::uint32_t kRecordBytes = 20;
inline constexpr std::uint32_t kCutoffBytes = 16;
inline constexpr std::uint32_t kMaxRecords = 8;
/// Cut-offs in one term start packet (its count is a byte).
inline constexpr std::uint32_t kMaxStartCutoffs = 255;
inline constexpr std::uint8_t kStatusFrozen = 1;
/// Body of Ext::group_seq, the network sequencer's stamp: u64 global, u32 session.
inline constexpr std::uint8_t kStampBody = 12;

/// One sequencer term: its number (increasing across failovers) and the sequencer's
/// incarnation. Term number 0 is "no term yet".
struct TermId {
  std::uint32_t no = 0;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
};
[[nodiscard]] inline bool same_term(const TermId& a, const TermId& b) noexcept {
  return a.no == b.no && a.sender == b.sender && a.epoch == b.epoch;
}
/// Terms are ordered by number, then by sequencer id and epoch (only split views can make
/// two terms share a number).
[[nodiscard]] inline bool term_after(const TermId& a, const TermId& b) noexcept {
  if (a.no != b.no) return a.no > b.no;
  if (a.sender != b.sender) return a.sender > b.sender;
  return a.epoch > b.epoch;
}

/// The network sequencer's stamp: global number `global` of session `session` (written by
/// tmc-sequencer, read by the members).
struct Stamp {
  std::uint64_t global = 0;
  std::uint32_t session = 0;
};
using StampCodec = FixedBody<Stamp, &Stamp::global, &Stamp::session>;
static_assert(StampCodec::kBytes == kStampBody);
inline void put_stamp(std::uint8_t* body, const Stamp& s) noexcept { StampCodec::encode(body, s); }
/// `body` holds kStampBody bytes (the caller checked the extension's length).
[[nodiscard]] inline Stamp get_stamp(const std::uint8_t* body) noexcept {
  return *StampCodec::decode(body, StampCodec::kBytes);
}

/// An announcement entry: message (sender, epoch, seq) is at global number `global`.
struct Entry {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t global = 0;
};
using EntryCodec = FixedBody<Entry, &Entry::sender, &Entry::epoch, &Entry::seq, &Entry::global>;
static_assert(EntryCodec::kBytes == kEntryBytes);
inline void put_entry(std::uint8_t* p, const Entry& e) noexcept { EntryCodec::encode(p, e); }
/// `p` holds kEntryBytes (the caller checked the payload against the count).
[[nodiscard]] inline Entry get_entry(const std::uint8_t* p) noexcept {
  return *EntryCodec::decode(p, EntryCodec::kBytes);
}

struct CutRecord {
  TermId term;
  std::uint64_t end = 0;
};

struct Cutoff {
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t last_seq = 0;
};

struct Status {
  bool frozen = false;
  TermId term;
  std::uint64_t held = 0;
  std::uint64_t delivered = 0;
  std::uint64_t stable = 0;
  std::uint32_t n_records = 0;
  CutRecord records[kMaxRecords];
  std::uint32_t n_cutoffs = 0;  ///< frozen statuses: per-sender cut-offs after the records
};

struct Start {
  std::uint32_t term_no = 0;
  std::uint32_t n_records = 0;
  CutRecord records[kMaxRecords];
  std::uint32_t n_cutoffs = 0;
  const std::uint8_t* cutoffs = nullptr;  ///< n_cutoffs * kCutoffBytes, read with cutoff_at()
};

/// A cut record and a cut-off as they lie on the wire (the CutRecord's term flattened).
struct RecordWire {
  std::uint32_t no = 0;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t end = 0;
};
using RecordCodec = FixedBody<RecordWire, &RecordWire::no, &RecordWire::sender, &RecordWire::epoch, &RecordWire::end>;
using CutoffCodec = FixedBody<Cutoff, &Cutoff::sender, &Cutoff::epoch, &Cutoff::last_seq>;
static_assert(RecordCodec::kBytes == kRecordBytes);
static_assert(CutoffCodec::kBytes == kCutoffBytes);

inline void put_record(std::uint8_t* p, const CutRecord& r) noexcept {
  RecordCodec::encode(p, RecordWire{r.term.no, r.term.sender, r.term.epoch, r.end});
}
/// `p` holds kRecordBytes (the caller checked the payload against the count).
[[nodiscard]] inline CutRecord get_record(const std::uint8_t* p) noexcept {
  const RecordWire w = *RecordCodec::decode(p, RecordCodec::kBytes);
  return CutRecord{.term = TermId{w.no, w.sender, w.epoch}, .end = w.end};
}
inline void put_cutoff(std::uint8_t* p, const Cutoff& c) noexcept { CutoffCodec::encode(p, c); }
/// Cut-off `i` of an array of them (the caller checked the payload against the count).
[[nodiscard]] inline Cutoff cutoff_at(const std::uint8_t* cutoffs, std::uint32_t i) noexcept {
  return *CutoffCodec::decode(cutoffs + std::size_t{i} * kCutoffBytes, CutoffCodec::kBytes);
}

/// Announce body {type, term_no, count}; payload must hold count entries.
[[nodiscard]] inline bool parse_announce(const std::uint8_t* body, std::uint8_t len, std::uint32_t payload_len,
                                         std::uint32_t& term_no, std::uint32_t& count) noexcept {
  if (body == nullptr || len != kAnnounceBody || body[0] != kTypeAnnounce) return false;
  term_no = wire::get_u32(body + 1);
  count = wire::get_u32(body + 5);
  return term_no != 0 && std::uint64_t{payload_len} == std::uint64_t{count} * kEntryBytes;
}

inline void write_status_body(std::uint8_t* b, const Status& s) noexcept {
  b[0] = kTypeStatus;
  b[1] = s.frozen ? kStatusFrozen : 0;
  wire::put_u32(b + 2, s.term.no);
  wire::put_u32(b + 6, s.term.sender);
  wire::put_u32(b + 10, s.term.epoch);
  wire::put_u64(b + 14, s.held);
  wire::put_u64(b + 22, s.delivered);
  wire::put_u64(b + 30, s.stable);
  b[38] = static_cast<std::uint8_t>(s.n_records);
}

[[nodiscard]] inline bool parse_status(const std::uint8_t* body, std::uint8_t len, const std::uint8_t* payload,
                                       std::uint32_t payload_len, Status& s) noexcept {
  if (body == nullptr || len != kStatusBody || body[0] != kTypeStatus) return false;
  if ((body[1] & ~kStatusFrozen) != 0) return false;
  s.frozen = (body[1] & kStatusFrozen) != 0;
  s.term.no = wire::get_u32(body + 2);
  s.term.sender = wire::get_u32(body + 6);
  s.term.epoch = wire::get_u32(body + 10);
  s.held = wire::get_u64(body + 14);
  s.delivered = wire::get_u64(body + 22);
  s.stable = wire::get_u64(body + 30);
  s.n_records = body[38];
  if (s.n_records > kMaxRecords || payload_len < s.n_records * kRecordBytes) return false;
  const std::uint32_t rest = payload_len - s.n_records * kRecordBytes;
  if (rest % kCutoffBytes != 0 || (rest != 0 && !s.frozen)) return false;
  s.n_cutoffs = rest / kCutoffBytes;
  for (std::uint32_t i = 0; i < s.n_cutoffs; ++i) {
    if (cutoff_at(payload + std::size_t{s.n_records} * kRecordBytes, i).sender == 0) return false;
  }
  if (s.term.no == 0 && (s.term.sender != 0 || s.term.epoch != 0 || s.held != 0)) return false;
  if (s.delivered > s.held || s.stable > s.held) return false;
  for (std::uint32_t i = 0; i < s.n_records; ++i) {
    s.records[i] = get_record(payload + std::size_t{i} * kRecordBytes);
    if (s.records[i].term.no == 0 || s.records[i].term.no >= s.term.no) return false;
  }
  return true;
}

inline void write_start_body(std::uint8_t* b, std::uint32_t term_no, std::uint32_t n_records,
                             std::uint32_t n_cutoffs) noexcept {
  b[0] = kTypeStart;
  wire::put_u32(b + 1, term_no);
  b[5] = static_cast<std::uint8_t>(n_records);
  b[6] = static_cast<std::uint8_t>(n_cutoffs);
}

[[nodiscard]] inline bool parse_start(const std::uint8_t* body, std::uint8_t len, const std::uint8_t* payload,
                                      std::uint32_t payload_len, Start& s) noexcept {
  if (body == nullptr || len != kStartBody || body[0] != kTypeStart) return false;
  s.term_no = wire::get_u32(body + 1);
  s.n_records = body[5];
  s.n_cutoffs = body[6];
  if (s.term_no == 0 || s.n_records > kMaxRecords || s.n_cutoffs > kMaxStartCutoffs) return false;
  if (std::uint64_t{payload_len} != std::uint64_t{s.n_records} * kRecordBytes + std::uint64_t{s.n_cutoffs} * kCutoffBytes) {
    return false;
  }
  for (std::uint32_t i = 0; i < s.n_records; ++i) {
    s.records[i] = get_record(payload + std::size_t{i} * kRecordBytes);
    if (s.records[i].term.no == 0 || s.records[i].term.no >= s.term_no) return false;
  }
  s.cutoffs = payload + std::size_t{s.n_records} * kRecordBytes;
  for (std::uint32_t i = 0; i < s.n_cutoffs; ++i) {
    if (cutoff_at(s.cutoffs, i).sender == 0) return false;
  }
  return true;
}

}  // namespace tmc::detail::group_wire
