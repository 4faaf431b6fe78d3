// A tournament tree over n slots: the smallest value in O(1), one slot's update in
// O(log n). "Acknowledged by every receiver" is the minimum over per-receiver cumulative
// positions; with this the sender pays O(log n) per ack instead of a scan of the group.
// Sized on a view change (cold); set() never allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tmc::detail {

class MinTree {
 public:
  /// The value of a slot that takes no part (and min() when no slot does).
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  /// Cold: room for slots 0..n-1, every one kNone.
  void reset(std::size_t n) {
    cap_ = 1;
    while (cap_ < n) cap_ <<= 1;
    tree_.assign(2 * cap_, kNone);
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  void set(std::size_t slot, std::uint64_t v) noexcept {
    std::size_t i = cap_ + slot;
    if (slot >= cap_ || tree_[i] == v) return;
    tree_[i] = v;
    for (i >>= 1; i >= 1; i >>= 1) {
      const std::uint64_t m = tree_[2 * i] < tree_[2 * i + 1] ? tree_[2 * i] : tree_[2 * i + 1];
      if (tree_[i] == m) break;  // nothing above changes
      tree_[i] = m;
    }
  }
  [[nodiscard]] std::uint64_t min() const noexcept { return tree_.size() > 1 ? tree_[1] : kNone; }

 private:
  std::size_t cap_ = 0;
  std::vector<std::uint64_t> tree_;  ///< 1-based heap layout; leaves at cap_ + slot
};

}  // namespace tmc::detail
