#include "runtime/channel/message_policy.hpp"

#include "tmc/wire.hpp"

namespace tmc::detail {

namespace {

/// The message's own 'reliability', if any.
Status reliability_of(const ChannelTraits& t, bool reliable, std::uint16_t& wire) {
  if (!t.reliable()) {
    return {Code::NOT_AVAILABLE,
            "send: per-message reliability needs the reliability stage in the channel's plan; set "
            "'reliability: {messages: flagged}' (or 'reliability: true') in the manifest"};
  }
  if (!reliable && t.reliability == ReliabilityScope::all) {
    return {Code::NOT_AVAILABLE, "send: this channel acknowledges every message; opting one out of reliability "
                                 "is not available (use 'reliability: {messages: flagged}')"};
  }
  if (reliable) wire |= wire::kFlagReliable;
  return Status::ok();
}

/// The message's own 'error checking': it can only agree with the channel's.
Status error_checking_of(const ChannelTraits& t, bool checked) {
  if (checked && !t.error_checking) {
    return {Code::NOT_AVAILABLE,
            "send: per-message error checking is not available yet; enable 'error checking' for the channel "
            "(update({'error checking': true}))"};
  }
  if (!checked && t.error_checking) {
    return {Code::NOT_AVAILABLE,
            "send: this channel checks every message; opting one message out of error checking is not "
            "available yet"};
  }
  return Status::ok();
}

/// The message's own 'ordered': opts in (needs ordering in the plan) or out (always possible).
Status ordered_of(const ChannelTraits& t, bool ordered, std::uint16_t& wire) {
  if (ordered && !t.ordered()) {
    return {Code::NOT_AVAILABLE,
            "send: per-message 'ordered: true' needs ordering in the channel's plan; set 'group ordering' or "
            "'point-to-point ordering' (with 'ordered messages: flagged', messages are ordered only when "
            "they opt in)"};
  }
  wire = ordered ? static_cast<std::uint16_t>(wire & ~wire::kFlagUnordered)
                 : static_cast<std::uint16_t>(wire | wire::kFlagUnordered);
  return Status::ok();
}

}  // namespace

Status message_flags(const ChannelTraits& t, const MessageManifest* per_message, MessageFlags& out) {
  // 'ordered messages: flagged': unordered unless the message opts in.
  std::uint16_t wire = t.ordered_flagged ? wire::kFlagUnordered : 0;
  out.lifetime_ns = 0;
  if (per_message != nullptr) {
    const MessageManifest& m = *per_message;
    if (m.reliability.has_value()) {
      if (Status s = reliability_of(t, *m.reliability, wire); !s) return s;
    }
    if (m.error_checking.has_value()) {
      if (Status s = error_checking_of(t, *m.error_checking); !s) return s;
    }
    if (m.ordered.has_value()) {
      if (Status s = ordered_of(t, *m.ordered, wire); !s) return s;
    }
    if (m.lifetime_us.has_value()) {
      if (!t.lifetime) {
        return {Code::NOT_AVAILABLE,
                "send: a per-message 'lifetime us' needs the lifetime stage in the channel's plan; set "
                "'lifetime: true' (or 'lifetime: {duration us: N}') in the manifest"};
      }
      if (*m.lifetime_us <= 0) return {Code::INVALID_ARGUMENT, "send: 'lifetime us' must be at least 1"};
      out.lifetime_ns = static_cast<std::uint64_t>(*m.lifetime_us) * 1000;
    }
  }
  out.wire = wire;
  out.reliable = (wire & wire::kFlagReliable) != 0 || t.reliability == ReliabilityScope::all;
  return Status::ok();
}

}  // namespace tmc::detail
