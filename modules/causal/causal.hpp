// ordering.causal — causal delivery (ISIS CBCAST) over a vector timestamp per message.
// See causal.cpp for the rule, the wire format and the bounds; README.md for placement.
#pragma once

#include <cstdint>

#include "tmc/stage.hpp"

namespace tmc::modules {

/// The wire extension ordering.causal owns (module range 128..255).
inline constexpr std::uint8_t kCausalExt = 201;
/// Senders a vector timestamp names at most (each entry: u32 sender id, u32 count). The
/// extension must leave headroom for the stages below, so the group is kept small.
inline constexpr std::uint32_t kCausalMaxSenders = 16;
inline constexpr std::uint32_t kCausalEntryBytes = 8;

/// ordering.causal's description: parameters, counters, placement facts, factory.
StageInfo causal_info();

}  // namespace tmc::modules
