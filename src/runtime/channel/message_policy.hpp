// The per-message manifest policy: what send(msg, {...}) turns into on a given channel.
//
// A message may ask for reliability, error checking or ordering of its own. Whether the
// channel can honour that is decided by its plan (ChannelTraits), not by the message: a
// property the plan has no stage for is refused with NOT_AVAILABLE and a message naming
// the manifest change that would provide it. Pure: no channel state, no clock.
#pragma once

#include <cstdint>

#include "tmc/manifest.hpp"
#include "tmc/plan.hpp"
#include "tmc/status.hpp"

namespace tmc::detail {

/// How one message travels.
struct MessageFlags {
  std::uint16_t wire = 0;  ///< Packet::flags: wire::kFlagReliable, wire::kFlagUnordered
  bool reliable = false;   ///< acknowledged (the channel's every message, or this one asked)
  std::uint64_t lifetime_ns = 0;  ///< this message's own lifetime (Packet::lifetime_ns); 0 = the channel's
  bool operator==(const MessageFlags&) const = default;
};

/// The flags of a message sent with `per_message` (null: none given) on a channel with
/// `traits`, or NOT_AVAILABLE naming the per-message property the channel cannot honour.
/// Allocates only to describe a refusal.
Status message_flags(const ChannelTraits& traits, const MessageManifest* per_message, MessageFlags& out);

}  // namespace tmc::detail
