// Wire bodies of reliability's control packets (Ext::ack), shared by every stage that reads
// them: reliability.arq writes and consumes them; flow.credit and congestion.window learn
// from acks passing by. The layout is in docs/wire-format.md:
//
//   Ack  (Kind::ack,  Ext::ack, 24 bytes): u32 target_sender, u32 target_epoch,
//        u64 cumulative (every rseq <= it received; 0 = none),
//        u64 sack bitmap (bit i set = rseq cumulative + 2 + i received).
//   Nack (Kind::nack, Ext::ack, 20 bytes): u32 target_sender, u32 target_epoch,
//        u64 first missing rseq, u32 count.
//        In a large group (sparse acks) a NACK also carries the receiver's position
//        (36 bytes: the 20 above, then u64 cumulative and u64 sack bitmap as in an ack),
//        and counts as its ack.
//   Rel  (Ext::rel on reliable data/control, 8 bytes): u64 = (rseq - trail) << 48 | rseq,
//        see RelBody. Use decode_rel() for just the sequence number.
//
// All integers are big-endian (tmc::wire::put_* / get_*). The decoders treat the body as
// hostile: a wrong length yields std::nullopt, never a read past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "primitives/common/fixed_body.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail {

inline constexpr std::size_t kAckBodyBytes = 24;
inline constexpr std::size_t kNackBodyBytes = 20;
/// A NACK carrying the receiver's position: the NACK body, then an ack's cumulative and sack.
inline constexpr std::size_t kNackAckBodyBytes = 36;
/// Ext::rel body: one u64 (see RelBody).
inline constexpr std::size_t kRelBodyBytes = 8;
/// The low 48 bits of the Ext::rel word are the reliable sequence number (2^48 messages per
/// sender incarnation is more than a lifetime); the high 16 bits are the distance back to
/// the sender's trailing edge. So a sender's window may never exceed this.
inline constexpr std::uint64_t kRelSeqMask = (std::uint64_t{1} << 48) - 1;
inline constexpr std::uint64_t kMaxRelTrailDistance = 0xFFFF;

struct AckBody {
  std::uint32_t target_sender = 0;
  std::uint32_t target_epoch = 0;
  std::uint64_t cumulative = 0;  ///< every rseq <= this was received; 0 = none
  std::uint64_t sack = 0;        ///< bit i set: rseq cumulative + 2 + i was received

  /// True when this ack says `rseq` was received.
  [[nodiscard]] bool covers(std::uint64_t rseq) const noexcept {
    if (rseq == 0) return false;
    if (rseq <= cumulative) return true;
    if (rseq < cumulative + 2) return false;  // rseq == cumulative + 1 is the first gap
    const std::uint64_t bit = rseq - cumulative - 2;
    return bit < 64 && ((sack >> bit) & 1u) != 0;
  }
  /// Highest rseq this ack reports as received (cumulative if the SACK bitmap is empty).
  [[nodiscard]] std::uint64_t highest() const noexcept {
    if (sack == 0) return cumulative;
    return cumulative + 2 + static_cast<std::uint64_t>(63 - __builtin_clzll(sack));
  }
};

struct NackBody {
  std::uint32_t target_sender = 0;
  std::uint32_t target_epoch = 0;
  std::uint64_t first = 0;  ///< first missing rseq
  std::uint32_t count = 0;  ///< number of consecutive missing rseqs from `first`
};

using AckCodec = FixedBody<AckBody, &AckBody::target_sender, &AckBody::target_epoch, &AckBody::cumulative,
                           &AckBody::sack>;
using NackCodec =
    FixedBody<NackBody, &NackBody::target_sender, &NackBody::target_epoch, &NackBody::first, &NackBody::count>;
static_assert(AckCodec::kBytes == kAckBodyBytes && NackCodec::kBytes == kNackBodyBytes);

inline void encode_ack(std::uint8_t* out, const AckBody& a) noexcept { AckCodec::encode(out, a); }

[[nodiscard]] inline std::optional<AckBody> decode_ack(const std::uint8_t* body, std::size_t len) noexcept {
  return AckCodec::decode(body, len);
}

inline void encode_nack(std::uint8_t* out, const NackBody& n) noexcept { NackCodec::encode(out, n); }

/// A NACK that carries the receiver's position (`ack`, for the same target): out holds
/// kNackAckBodyBytes.
inline void encode_nack(std::uint8_t* out, const NackBody& n, const AckBody& ack) noexcept {
  NackCodec::encode(out, n);
  wire::put_u64(out + kNackBodyBytes, ack.cumulative);
  wire::put_u64(out + kNackBodyBytes + 8, ack.sack);
}

/// The NACK part of a NACK body, with or without a position.
[[nodiscard]] inline std::optional<NackBody> decode_nack(const std::uint8_t* body, std::size_t len) noexcept {
  return NackCodec::decode(body, len == kNackAckBodyBytes ? kNackBodyBytes : len);
}

/// The position a NACK body carries, as an ack of the NACK's target; std::nullopt when it
/// carries none (or is malformed).
[[nodiscard]] inline std::optional<AckBody> decode_nack_position(const std::uint8_t* body, std::size_t len) noexcept {
  if (body == nullptr || len != kNackAckBodyBytes) return std::nullopt;
  AckBody a;
  a.target_sender = wire::get_u32(body);
  a.target_epoch = wire::get_u32(body + 4);
  a.cumulative = wire::get_u64(body + kNackBodyBytes);
  a.sack = wire::get_u64(body + kNackBodyBytes + 8);
  return a;
}

/// Ext::rel on a reliable data packet. `trail` is the sender's trailing edge when the copy
/// left it: the lowest reliable sequence number it has not yet settled (met or failed).
/// Everything below it is finished at the sender, so a receiver that joins mid-stream
/// starts there, and a receiver missing something below it stops asking for it (as in
/// PGM's SPM trailing edge). Packed as (rseq - trail) << 48 | rseq.
struct RelBody {
  std::uint64_t rseq = 0;   ///< 1, 2, ... per sender incarnation, over reliable packets only
  std::uint64_t trail = 0;  ///< <= rseq
};

inline void encode_rel(std::uint8_t* out, const RelBody& r) noexcept {
  const std::uint64_t dist = r.rseq >= r.trail ? r.rseq - r.trail : 0;
  wire::put_u64(out, ((dist > kMaxRelTrailDistance ? kMaxRelTrailDistance : dist) << 48) | (r.rseq & kRelSeqMask));
}

/// The whole body; std::nullopt when the length is wrong or the sequence number is 0.
[[nodiscard]] inline std::optional<RelBody> decode_rel_body(const std::uint8_t* body, std::size_t len) noexcept {
  if (body == nullptr || len != kRelBodyBytes) return std::nullopt;
  const std::uint64_t w = wire::get_u64(body);
  RelBody r;
  r.rseq = w & kRelSeqMask;
  const std::uint64_t dist = w >> 48;
  if (r.rseq == 0) return std::nullopt;
  r.trail = dist >= r.rseq ? 1 : r.rseq - dist;
  return r;
}

/// Just the reliable sequence number (what flow and congestion control need).
[[nodiscard]] inline std::optional<std::uint64_t> decode_rel(const std::uint8_t* body, std::size_t len) noexcept {
  const auto r = decode_rel_body(body, len);
  if (!r) return std::nullopt;
  return r->rseq;
}

}  // namespace tmc::detail
