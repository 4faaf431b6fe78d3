// The membership heartbeat on the wire (membership.heartbeat owns Kind::heartbeat and
// Ext::membership). Shared by the stage and its tests, which forge hostile heartbeats.
//
//   Ext::membership body, exactly 4 bytes:
//     u8  flags      bit0 receives (0: a send-only member), bit1 leaving (goodbye),
//                    bit2 query (unicast: "I have not heard your heartbeat: answer")
//     u8  name_len   1..255; must equal the packet's payload_len
//     u16 reserved   sent as 0, ignored on receipt (room for later versions)
//   payload: the member's name, name_len bytes, no control characters.
//
// Unknown flag bits are ignored on receipt for the same reason as the reserved field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tmc/packet.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail::membership {

inline constexpr std::uint8_t kBodyBytes = 4;
inline constexpr std::uint8_t kFlagReceives = 1u << 0;
inline constexpr std::uint8_t kFlagLeaving = 1u << 1;
inline constexpr std::uint8_t kFlagQuery = 1u << 2;
inline constexpr std::size_t kMaxNameBytes = 255;

struct Heartbeat {
  std::uint8_t flags = 0;
  std::string_view name;  ///< points into the packet's buffer
  [[nodiscard]] bool receives() const noexcept { return (flags & kFlagReceives) != 0; }
  [[nodiscard]] bool leaving() const noexcept { return (flags & kFlagLeaving) != 0; }
  [[nodiscard]] bool query() const noexcept { return (flags & kFlagQuery) != 0; }
};

enum class ParseError : std::uint8_t { none, no_body, bad_body_length, name_length_mismatch, empty_name, bad_name_byte };

/// Whether `name` may travel in a heartbeat: 1..255 bytes, none of them a control
/// character (names end up in logs and events; UTF-8 is allowed).
[[nodiscard]] inline bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) return false;
  }
  return true;
}

/// Validate a received heartbeat (decoded by wire::decode, so the extension and payload
/// lie inside the datagram) and point `out` into it. Every field is treated as hostile.
[[nodiscard]] inline ParseError parse(const Packet& p, Heartbeat& out) noexcept {
  std::uint8_t len = 0;
  const std::uint8_t* body = p.ext(wire::Ext::membership, &len);
  if (body == nullptr) return ParseError::no_body;
  if (len != kBodyBytes) return ParseError::bad_body_length;
  const std::uint8_t name_len = body[1];
  if (name_len != p.payload_len) return ParseError::name_length_mismatch;
  if (name_len == 0) return ParseError::empty_name;
  const std::string_view name(reinterpret_cast<const char*>(p.payload()), name_len);
  if (!valid_name(name)) return ParseError::bad_name_byte;
  out.flags = body[0];
  out.name = name;
  return ParseError::none;
}

/// Fill a send-path packet as a heartbeat of `name` (valid_name) with `flags`. The caller
/// sets channel, sender and epoch. False when the packet has no room for it.
[[nodiscard]] inline bool write(Packet& p, std::uint8_t flags, std::string_view name) noexcept {
  if (!valid_name(name) || kHeadroom + name.size() > p.cap) return false;
  p.reset_for_send(static_cast<std::uint32_t>(name.size()));
  std::memcpy(p.payload(), name.data(), name.size());
  p.kind = wire::Kind::heartbeat;
  std::uint8_t* body = p.push_ext(wire::Ext::membership, kBodyBytes);
  if (body == nullptr) return false;
  body[0] = flags;
  body[1] = static_cast<std::uint8_t>(name.size());
  wire::put_u16(body + 2, 0);
  return true;
}

}  // namespace tmc::detail::membership
