// Wire body of flow control's advertisement (Ext::flow, 20 bytes; docs/wire-format.md):
//
//   u32 target_sender, u32 target_epoch  the sender whose messages are counted
//   u64 consumed_bytes                    payload bytes of that sender's (sender, epoch)
//                                         reliable data this receiver has passed up
//   u32 window_bytes                      how far beyond consumed_bytes it may send
//
// Carried on Kind::ack packets (appended by the receiver's flow.credit) and alone on
// Kind::control packets. Big-endian; the decoder treats the body as hostile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "tmc/wire.hpp"

namespace tmc::detail {

inline constexpr std::size_t kFlowBodyBytes = 20;

struct FlowBody {
  std::uint32_t target_sender = 0;
  std::uint32_t target_epoch = 0;
  std::uint64_t consumed_bytes = 0;
  std::uint32_t window_bytes = 0;
};

inline void encode_flow(std::uint8_t* out, const FlowBody& f) noexcept {
  wire::put_u32(out, f.target_sender);
  wire::put_u32(out + 4, f.target_epoch);
  wire::put_u64(out + 8, f.consumed_bytes);
  wire::put_u32(out + 16, f.window_bytes);
}

[[nodiscard]] inline std::optional<FlowBody> decode_flow(const std::uint8_t* body, std::size_t len) noexcept {
  if (body == nullptr || len != kFlowBodyBytes) return std::nullopt;
  FlowBody f;
  f.target_sender = wire::get_u32(body);
  f.target_epoch = wire::get_u32(body + 4);
  f.consumed_bytes = wire::get_u64(body + 8);
  f.window_bytes = wire::get_u32(body + 16);
  return f;
}

}  // namespace tmc::detail
