// libTMC wire format, version 1.
//
//   0      2      3      4        6         8          12         16        20             24
//   +------+------+------+--------+---------+----------+----------+---------+--------------+
//   | magic| ver  | kind | flags  | ext_len | channel  | sender   | epoch   | payload_len  |
//   | u16  | u8   | u8   | u16    | u16     | u32      | u32      | u32     | u32          |
//   +------+------+------+--------+---------+----------+----------+---------+--------------+
//   | extensions: ext_len bytes of { u8 type, u8 len, len bytes of body } ...              |
//   +--------------------------------------------------------------------------------------+
//   | payload: payload_len bytes                                                           |
//   +--------------------------------------------------------------------------------------+
//   | trailer: u32 CRC32C over every byte before it, present iff flags & kFlagCrc          |
//   +--------------------------------------------------------------------------------------+
//
// All integers are big-endian (network order). A datagram must be exactly
// 24 + ext_len + payload_len (+ 4 with the trailer) bytes long; anything else is malformed.
// Each stage owns one extension type; a stage absent from the plan writes nothing, so it
// costs zero bytes. The decoder (tmc::wire::decode) is the only code that parses bytes
// from the network and treats every one of them as hostile.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmc::wire {

inline constexpr std::uint16_t kMagic = 0x544D;  // "TM"
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kBaseHeaderBytes = 24;
inline constexpr std::size_t kTrailerBytes = 4;
inline constexpr std::size_t kExtHeaderBytes = 2;
/// Extensions a single packet may carry; more is malformed (bounds the decoder's work).
inline constexpr std::size_t kMaxExtensions = 8;
/// Largest UDP payload over IPv4.
inline constexpr std::size_t kMaxDatagramBytes = 65507;

/// What a datagram carries. Control kinds belong to the stage that defines them.
enum class Kind : std::uint8_t {
  data = 0,       ///< an application message (or a fragment of one)
  ack = 1,        ///< reliability: positive acknowledgment
  nack = 2,       ///< reliability: negative acknowledgment (gap report)
  heartbeat = 3,  ///< membership / liveness
  control = 4,    ///< stage-defined control traffic (the extension says which stage)
};
inline constexpr std::uint8_t kMaxKind = 4;

/// Base-header flag bits. Per-message properties (send(msg, {...})) travel here.
inline constexpr std::uint16_t kFlagCrc = 1u << 0;        ///< a CRC32C trailer follows the payload
inline constexpr std::uint16_t kFlagReliable = 1u << 1;   ///< this message asks for acknowledgment
inline constexpr std::uint16_t kFlagUnordered = 1u << 2;  ///< opt out of the channel's ordering
inline constexpr std::uint16_t kFlagFragment = 1u << 3;   ///< payload is one fragment of a message
inline constexpr std::uint16_t kKnownFlags = 0x000F;      ///< other bits set: malformed

/// Extension types (bodies: docs/wire-format.md). 1..127 built in; 128..255 reserved, unused.
enum class Ext : std::uint8_t {
  seq = 1,         ///< ordering.seq: u64 per-sender sequence number
  fragment = 2,    ///< fragment: u32 message id, u32 offset, u32 total length
  ack = 3,         ///< reliability: acknowledgment body
  group_seq = 4,   ///< group ordering: u64 global sequence + u32 sequencer epoch
  flow = 5,        ///< flow control: advertised window
  membership = 6,  ///< membership: view / heartbeat body
  rel = 7,         ///< reliability: u64 reliable sequence number of a data packet
  batch = 8,       ///< pacing.coalesce: payload is several inner datagrams
  order = 9,       ///< group ordering: sequencer's order announcements
  auth = 10,       ///< security.aead: algorithm, key id, nonce counter and AEAD tag
  lifetime = 11,   ///< lifetime.deadline: u32 microseconds of the message's lifetime left
  module_first = 128,
};

// Byte-order helpers (used by the codec and by stages writing their extension bodies).
inline void put_u16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline void put_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
inline void put_u64(std::uint8_t* p, std::uint64_t v) noexcept {
  put_u32(p, static_cast<std::uint32_t>(v >> 32));
  put_u32(p + 4, static_cast<std::uint32_t>(v));
}
inline std::uint16_t get_u16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get_u32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
inline std::uint64_t get_u64(const std::uint8_t* p) noexcept {
  return (std::uint64_t{get_u32(p)} << 32) | get_u32(p + 4);
}

/// 32-bit FNV-1a of a channel id string; what the base header's `channel` field carries.
constexpr std::uint32_t channel_hash(const char* s, std::size_t n) noexcept {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(s[i]);
    h *= 16777619u;
  }
  return h;
}

}  // namespace tmc::wire
