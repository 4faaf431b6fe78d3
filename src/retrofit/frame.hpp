// The retrofit frame: 16 bytes in front of each datagram a rewired socket sends on the
// channel. It carries the addresses the program would have seen on plain UDP, so a
// receiver can deliver only what was addressed to its socket and report the real peer.
// The same bytes, frame included, are what the shim queues on the program's file
// descriptor; the intercepted receive calls strip them.
#pragma once

#include <cstdint>
#include <cstring>

namespace tmc::retrofit {

struct FrameHeader {
  std::uint8_t version = 1;
  std::uint8_t flags = 0;
  std::uint16_t src_port = 0;  // network byte order, as in sockaddr_in
  std::uint32_t src_ip = 0;
  std::uint32_t dst_ip = 0;
  std::uint16_t dst_port = 0;
  std::uint16_t reserved = 0;
};
static_assert(sizeof(FrameHeader) == 16);

inline constexpr std::uint8_t kFrameVersion = 1;
/// Sent with `unicast: fan-out`: every member's rewired socket delivers it.
inline constexpr std::uint8_t kFrameToAll = 1;

inline void encode(const FrameHeader& h, std::uint8_t* out) noexcept { std::memcpy(out, &h, sizeof h); }
inline FrameHeader decode(const std::uint8_t* in) noexcept {
  FrameHeader h;
  std::memcpy(&h, in, sizeof h);
  return h;
}

}  // namespace tmc::retrofit
