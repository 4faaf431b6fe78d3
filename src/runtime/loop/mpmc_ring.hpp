// A bounded lock-free multi-producer multi-consumer ring (Dmitry Vyukov's design).
//
// Used for the hand-off between application threads and the loop thread: the loop
// pushes free packet buffers that senders pop, and senders push filled packets that the
// loop pops. Capacity is a power of two fixed at construction; push and pop never
// allocate. Each operation reports the position it took, which lets a synchronous sender
// wait until the loop has processed everything up to its own position.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace tmc::detail {

template <class T>
class MpmcRing {
 public:
  explicit MpmcRing(std::size_t min_capacity) {
    std::size_t cap = 2;
    while (cap < min_capacity) cap <<= 1;
    mask_ = cap - 1;
    cells_ = std::make_unique<Cell[]>(cap);
    for (std::size_t i = 0; i < cap; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  MpmcRing(const MpmcRing&) = delete;
  MpmcRing& operator=(const MpmcRing&) = delete;

  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

  /// False when full. `pos_out`, if given, receives the position this item took.
  bool try_push(const T& value, std::uint64_t* pos_out = nullptr) noexcept {
    std::uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
    Cell* cell = nullptr;
    for (;;) {
      cell = &cells_[pos & mask_];
      const std::uint64_t seq = cell->seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;
      } else {
        pos = enqueue_pos_.load(std::memory_order_relaxed);
      }
    }
    cell->value = value;
    cell->seq.store(pos + 1, std::memory_order_release);
    if (pos_out != nullptr) *pos_out = pos;
    return true;
  }

  /// False when empty (or when the next item is claimed but not yet published).
  bool try_pop(T& out, std::uint64_t* pos_out = nullptr) noexcept {
    std::uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
    Cell* cell = nullptr;
    for (;;) {
      cell = &cells_[pos & mask_];
      const std::uint64_t seq = cell->seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;
      } else {
        pos = dequeue_pos_.load(std::memory_order_relaxed);
      }
    }
    out = cell->value;
    cell->seq.store(pos + mask_ + 1, std::memory_order_release);
    if (pos_out != nullptr) *pos_out = pos;
    return true;
  }

  /// Items pushed so far (a snapshot; exact only for the single producer).
  [[nodiscard]] std::uint64_t pushed() const noexcept { return enqueue_pos_.load(std::memory_order_acquire); }
  /// Items popped so far (a snapshot; exact only for the single consumer).
  [[nodiscard]] std::uint64_t popped() const noexcept { return dequeue_pos_.load(std::memory_order_acquire); }

 private:
  struct Cell {
    std::atomic<std::uint64_t> seq{0};
    T value{};
  };
  std::unique_ptr<Cell[]> cells_;
  std::size_t mask_ = 0;
  alignas(64) std::atomic<std::uint64_t> enqueue_pos_{0};
  alignas(64) std::atomic<std::uint64_t> dequeue_pos_{0};
};

}  // namespace tmc::detail
