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
  /// Heap bytes held.
  [[nodiscard]] std::size_t heap_bytes() const noexcept { return tree_.capacity() * sizeof(std::uint64_t); }
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
  /// Cold: set slots one by one without the walk up, then rebuild() once.
  void set_leaf(std::size_t slot, std::uint64_t v) noexcept {
    if (slot < cap_) tree_[cap_ + slot] = v;
  }
  void rebuild() noexcept {
    for (std::size_t i = cap_ == 0 ? 0 : cap_ - 1; i >= 1; --i) tree_[i] = tree_[2 * i] < tree_[2 * i + 1] ? tree_[2 * i] : tree_[2 * i + 1];
  }
  [[nodiscard]] std::uint64_t min() const noexcept { return tree_.size() > 1 ? tree_[1] : kNone; }
  /// A slot holding the minimum (the leftmost), O(log n).
  [[nodiscard]] std::size_t argmin() const noexcept {
    std::size_t i = 1;
    while (i < cap_) i = tree_[2 * i] == tree_[i] ? 2 * i : 2 * i + 1;
    return i - cap_;
  }
  /// Whether pred(slot) holds for every slot whose value is below `bound`; stops at the
  /// first that fails (O(log n) per slot visited).
  template <class Pred>
  [[nodiscard]] bool all_below(std::uint64_t bound, Pred&& pred) const noexcept {
    return tree_.size() <= 1 || below(1, bound, pred);
  }

 private:
  template <class Pred>
  bool below(std::size_t i, std::uint64_t bound, Pred& pred) const noexcept {
    if (tree_[i] >= bound) return true;
    if (i >= cap_) return pred(i - cap_);
    return below(2 * i, bound, pred) && below(2 * i + 1, bound, pred);
  }

  std::size_t cap_ = 0;
  std::vector<std::uint64_t> tree_;  ///< 1-based heap layout; leaves at cap_ + slot
};

}  // namespace tmc::detail
