// A set of group member slots (tmc/group.hpp), sized to the group.
//
// Slots 0..63 live in one inline word: a three- to 64-member group never allocates, and
// its sets cost what the 64-bit masks they replace cost. A set that must hold a higher
// slot grows to a heap bitset. Growing is the cold path (a view change, an event for a
// member beyond slot 63); stages that copy sets per message size their sets to the view
// on a view change (reserve()), after which assign() and the in-place operators never
// allocate. Binary operators that would make temporaries are left out on purpose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>

namespace tmc {

class MemberSet {
 public:
  MemberSet() noexcept = default;
  MemberSet(const MemberSet& o) { assign(o); }
  MemberSet(MemberSet&& o) noexcept { steal(o); }
  MemberSet& operator=(const MemberSet& o) {
    if (this != &o) assign(o);
    return *this;
  }
  MemberSet& operator=(MemberSet&& o) noexcept {
    if (this != &o) {
      delete[] heap_;
      steal(o);
    }
    return *this;
  }
  ~MemberSet() { delete[] heap_; }

  /// The set holding `slot` alone (allocates only for slot >= 64).
  [[nodiscard]] static MemberSet of(int slot) {
    MemberSet s;
    s.insert(slot);
    return s;
  }

  /// The set holding these slots.
  [[nodiscard]] static MemberSet of(std::initializer_list<int> slots) {
    MemberSet s;
    for (const int slot : slots) s.insert(slot);
    return s;
  }

  [[nodiscard]] bool contains(int slot) const noexcept {
    const auto w = static_cast<std::size_t>(slot) >> 6;
    return slot >= 0 && w < words_ && (data()[w] >> (static_cast<unsigned>(slot) & 63U) & 1U) != 0;
  }
  /// Add `slot` (grows, and so allocates, when it lies beyond the capacity).
  void insert(int slot) {
    if (slot < 0) return;
    const auto w = static_cast<std::size_t>(slot) >> 6;
    if (w >= words_) grow(w + 1);
    data()[w] |= std::uint64_t{1} << (static_cast<unsigned>(slot) & 63U);
  }
  void erase(int slot) noexcept {
    const auto w = static_cast<std::size_t>(slot) >> 6;
    if (slot >= 0 && w < words_) data()[w] &= ~(std::uint64_t{1} << (static_cast<unsigned>(slot) & 63U));
  }
  /// Empty the set; the capacity stays.
  void clear() noexcept { std::memset(data(), 0, words_ * sizeof(std::uint64_t)); }
  /// Cold: room for slots 0..slots-1 without allocating later.
  void reserve(std::size_t slots) {
    const std::size_t w = (slots + 63) / 64;
    if (w > words_) grow(w);
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return words_ * 64; }

  [[nodiscard]] bool empty() const noexcept {
    const std::uint64_t* d = data();
    for (std::size_t i = 0; i < words_; ++i) {
      if (d[i] != 0) return false;
    }
    return true;
  }
  [[nodiscard]] int count() const noexcept {
    int n = 0;
    const std::uint64_t* d = data();
    for (std::size_t i = 0; i < words_; ++i) n += __builtin_popcountll(d[i]);
    return n;
  }
  /// Become a copy of `o`; allocates only when `o` holds a slot beyond this capacity.
  void assign(const MemberSet& o) {
    const std::size_t used = o.used_words();
    if (used > words_) grow(used);
    std::uint64_t* d = data();
    const std::uint64_t* s = o.data();
    for (std::size_t i = 0; i < words_; ++i) d[i] = i < used ? s[i] : 0;
  }
  /// Union (grows when `o` holds a slot beyond this capacity).
  MemberSet& operator|=(const MemberSet& o) {
    const std::size_t used = o.used_words();
    if (used > words_) grow(used);
    std::uint64_t* d = data();
    const std::uint64_t* s = o.data();
    for (std::size_t i = 0; i < used; ++i) d[i] |= s[i];
    return *this;
  }
  /// Intersection.
  MemberSet& operator&=(const MemberSet& o) noexcept {
    std::uint64_t* d = data();
    for (std::size_t i = 0; i < words_; ++i) d[i] &= o.word(i);
    return *this;
  }
  /// Difference: remove every member of `o`.
  MemberSet& subtract(const MemberSet& o) noexcept {
    std::uint64_t* d = data();
    const std::size_t n = words_ < o.words_ ? words_ : o.words_;
    const std::uint64_t* s = o.data();
    for (std::size_t i = 0; i < n; ++i) d[i] &= ~s[i];
    return *this;
  }
  [[nodiscard]] bool intersects(const MemberSet& o) const noexcept {
    const std::size_t n = words_ < o.words_ ? words_ : o.words_;
    const std::uint64_t* a = data();
    const std::uint64_t* b = o.data();
    for (std::size_t i = 0; i < n; ++i) {
      if ((a[i] & b[i]) != 0) return true;
    }
    return false;
  }
  /// Whether some member of this set is in `o` but not in `except`.
  [[nodiscard]] bool intersects_except(const MemberSet& o, const MemberSet& except) const noexcept {
    const std::uint64_t* a = data();
    for (std::size_t i = 0; i < words_; ++i) {
      if ((a[i] & o.word(i) & ~except.word(i)) != 0) return true;
    }
    return false;
  }
  /// Whether every member of this set is in `o`.
  [[nodiscard]] bool subset_of(const MemberSet& o) const noexcept {
    const std::uint64_t* a = data();
    for (std::size_t i = 0; i < words_; ++i) {
      if ((a[i] & ~o.word(i)) != 0) return false;
    }
    return true;
  }
  /// The members of this set that are not in `minus`, counted.
  [[nodiscard]] int count_without(const MemberSet& minus) const noexcept {
    int n = 0;
    const std::uint64_t* a = data();
    for (std::size_t i = 0; i < words_; ++i) n += __builtin_popcountll(a[i] & ~minus.word(i));
    return n;
  }
  /// The members of this set that are not in `minus` nor in `minus2`, counted.
  [[nodiscard]] int count_without(const MemberSet& minus, const MemberSet& minus2) const noexcept {
    int n = 0;
    const std::uint64_t* a = data();
    for (std::size_t i = 0; i < words_; ++i) n += __builtin_popcountll(a[i] & ~minus.word(i) & ~minus2.word(i));
    return n;
  }
  /// Same members (capacities may differ).
  [[nodiscard]] bool operator==(const MemberSet& o) const noexcept {
    const std::size_t n = words_ > o.words_ ? words_ : o.words_;
    for (std::size_t i = 0; i < n; ++i) {
      if (word(i) != o.word(i)) return false;
    }
    return true;
  }

  /// The lowest slot greater than `after` (-1: start from slot 0), or -1 when none.
  [[nodiscard]] int next(int after) const noexcept {
    const auto start = static_cast<std::size_t>(after + 1);
    std::size_t w = start >> 6;
    if (w >= words_) return -1;
    const std::uint64_t* d = data();
    std::uint64_t bits = d[w] & (~std::uint64_t{0} << (start & 63U));
    for (;;) {
      if (bits != 0) return static_cast<int>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits)));
      if (++w >= words_) return -1;
      bits = d[w];
    }
  }
  [[nodiscard]] int first() const noexcept { return next(-1); }
  /// Call f(slot) for every member, lowest slot first.
  template <class F>
  void for_each(F&& f) const {
    const std::uint64_t* d = data();
    for (std::size_t w = 0; w < words_; ++w) {
      for (std::uint64_t bits = d[w]; bits != 0; bits &= bits - 1) {
        f(static_cast<int>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits))));
      }
    }
  }
  /// Word `i` of the bitset (slots 64i..64i+63); 0 beyond the capacity.
  [[nodiscard]] std::uint64_t word(std::size_t i) const noexcept { return i < words_ ? data()[i] : 0; }

 private:
  [[nodiscard]] std::uint64_t* data() noexcept { return heap_ != nullptr ? heap_ : &inline_; }
  [[nodiscard]] const std::uint64_t* data() const noexcept { return heap_ != nullptr ? heap_ : &inline_; }
  [[nodiscard]] std::size_t used_words() const noexcept {
    std::size_t n = words_;
    const std::uint64_t* d = data();
    while (n > 1 && d[n - 1] == 0) --n;
    return n;
  }
  void grow(std::size_t words) {
    auto* h = new std::uint64_t[words];
    const std::uint64_t* d = data();
    for (std::size_t i = 0; i < words; ++i) h[i] = i < words_ ? d[i] : 0;
    delete[] heap_;
    heap_ = h;
    words_ = words;
  }
  void steal(MemberSet& o) noexcept {
    inline_ = o.inline_;
    heap_ = o.heap_;
    words_ = o.words_;
    o.heap_ = nullptr;
    o.inline_ = 0;
    o.words_ = 1;
  }

  std::uint64_t inline_ = 0;
  std::uint64_t* heap_ = nullptr;
  std::size_t words_ = 1;
};

}  // namespace tmc
