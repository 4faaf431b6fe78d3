// The plan's traits, published by the loop for application threads.
#pragma once

#include <atomic>
#include <cstdint>

#include "tmc/plan.hpp"

namespace tmc::detail {

/// install() stores a new plan's traits on the loop; send() and the membership calls load
/// them on any thread without a lock. Everything but 'max message bytes' is packed into
/// one word, so a reader never sees the flags of two plans mixed. (lifetime_ns is not
/// published: the pipeline applies it, send() only checks that lifetimes are possible.)
class TraitsCell {
 public:
  void store(const ChannelTraits& t) noexcept {
    max_message_.store(t.max_message_bytes, std::memory_order_relaxed);
    bits_.store(pack(t), std::memory_order_release);
  }
  [[nodiscard]] ChannelTraits load() const noexcept {
    ChannelTraits t = unpack(bits_.load(std::memory_order_acquire));
    t.max_message_bytes = max_message_.load(std::memory_order_relaxed);
    return t;
  }

  /// The word store() publishes (max_message_bytes aside); unpack(pack(t)) == t without it.
  static constexpr std::uint64_t pack(const ChannelTraits& t) noexcept {
    return static_cast<std::uint64_t>(t.reliability) | static_cast<std::uint64_t>(t.point_to_point_ordering) << 2 |
           bit(t.group_ordering, 4) | bit(t.network_sequenced, 5) | bit(t.ordered_flagged, 6) |
           bit(t.error_checking, 7) | bit(t.coalescing, 8) | bit(t.membership, 9) | bit(t.lifetime, 10) |
           static_cast<std::uint64_t>(t.fragment_bytes) << 32;
  }
  static constexpr ChannelTraits unpack(std::uint64_t w) noexcept {
    ChannelTraits t;
    t.reliability = static_cast<ReliabilityScope>(w & 3);
    t.point_to_point_ordering = static_cast<FifoOrdering>((w >> 2) & 3);
    t.group_ordering = ((w >> 4) & 1) != 0;
    t.network_sequenced = ((w >> 5) & 1) != 0;
    t.ordered_flagged = ((w >> 6) & 1) != 0;
    t.error_checking = ((w >> 7) & 1) != 0;
    t.coalescing = ((w >> 8) & 1) != 0;
    t.membership = ((w >> 9) & 1) != 0;
    t.lifetime = ((w >> 10) & 1) != 0;
    t.fragment_bytes = static_cast<std::uint32_t>(w >> 32);
    return t;
  }

 private:
  static constexpr std::uint64_t bit(bool b, int at) noexcept { return static_cast<std::uint64_t>(b) << at; }

  std::atomic<std::uint64_t> bits_{0};
  std::atomic<std::uint64_t> max_message_{0};
};

}  // namespace tmc::detail
