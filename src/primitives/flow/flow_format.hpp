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

#include "primitives/common/fixed_body.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail {

inline constexpr std::size_t kFlowBodyBytes = 20;

struct FlowBody {
  std::uint32_t target_sender = 0;
  std::uint32_t target_epoch = 0;
  std::uint64_t consumed_bytes = 0;
  std::uint32_t window_bytes = 0;
};

using FlowCodec = FixedBody<FlowBody, &FlowBody::target_sender, &FlowBody::target_epoch, &FlowBody::consumed_bytes,
                            &FlowBody::window_bytes>;
static_assert(FlowCodec::kBytes == kFlowBodyBytes);

inline void encode_flow(std::uint8_t* out, const FlowBody& f) noexcept { FlowCodec::encode(out, f); }

[[nodiscard]] inline std::optional<FlowBody> decode_flow(const std::uint8_t* body, std::size_t len) noexcept {
  return FlowCodec::decode(body, len);
}

}  // namespace tmc::detail
