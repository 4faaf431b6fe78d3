// An open-addressing hash table from keys to indexes into the caller's array of state
// (senders, held messages): linear probing, backward-shift deletion (no tombstones, so a
// flood of inserts and erases cannot lengthen lookups), sized once in reset() and never
// grown on the hot path.
//
// The caller hashes (salted, so that a hostile peer cannot choose colliding keys) and owns
// the keys. Each slot stores the index and a 32-bit tag: the key itself when it fits in 32
// bits (then a tag match is the answer), or any 32 bits of it otherwise, with a `match`
// callback that compares the full key in the caller's array.
//
//   IndexTable t;  t.reset(1024);                  // slots: a power of two
//   t.insert(hash(id), id, i);
//   std::uint32_t i = t.find(hash(id), id);       // kNoIndex when absent
//   t.erase(hash(id), i, [&](std::uint32_t tag, std::uint32_t) { return hash(tag); });
#pragma once

#include <cstdint>
#include <vector>

#include "primitives/common/index_list.hpp"  // kNoIndex

namespace tmc::detail {

class IndexTable {
 public:
  /// Cold: `slots` empty slots (a power of two; keep the load at or below one half).
  void reset(std::uint32_t slots) {
    tags_.assign(slots, 0);
    vals_.assign(slots, kNoIndex);
    mask_ = slots - 1;
  }

  [[nodiscard]] std::uint32_t slots() const noexcept { return mask_ + 1; }

  /// The index stored under `tag` whose entry `match(index)` accepts; kNoIndex if none.
  /// `hash` is the key's hash (any 32 bits; the table keeps the low ones).
  template <class Match>
  [[nodiscard]] std::uint32_t find(std::uint32_t hash, std::uint32_t tag, Match&& match) const noexcept {
    for (std::uint32_t h = hash & mask_;; h = (h + 1) & mask_) {
      const std::uint32_t v = vals_[h];
      if (v == kNoIndex) return kNoIndex;
      if (tags_[h] == tag && match(v)) return v;
    }
  }
  /// The index stored under `tag` when the tag is the whole key; kNoIndex if none.
  [[nodiscard]] std::uint32_t find(std::uint32_t hash, std::uint32_t tag) const noexcept {
    return find(hash, tag, [](std::uint32_t) { return true; });
  }

  /// Store `index` under `tag` (the key must not be in the table already; a free slot must
  /// exist).
  void insert(std::uint32_t hash, std::uint32_t tag, std::uint32_t index) noexcept {
    std::uint32_t h = hash & mask_;
    while (vals_[h] != kNoIndex) h = (h + 1) & mask_;
    tags_[h] = tag;
    vals_[h] = index;
  }

  /// Remove `index` (stored from `hash`). `hash_of(tag, index)` gives the hash of another
  /// entry's key, to decide which later entries move back into the hole.
  template <class HashOf>
  void erase(std::uint32_t hash, std::uint32_t index, HashOf&& hash_of) noexcept {
    std::uint32_t h = hash & mask_;
    while (vals_[h] != index) h = (h + 1) & mask_;
    std::uint32_t hole = h;
    std::uint32_t j = h;
    for (;;) {
      j = (j + 1) & mask_;
      if (vals_[j] == kNoIndex) break;
      const std::uint32_t home = hash_of(tags_[j], vals_[j]) & mask_;
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (!stays) {
        tags_[hole] = tags_[j];
        vals_[hole] = vals_[j];
        hole = j;
      }
    }
    vals_[hole] = kNoIndex;
  }

 private:
  std::vector<std::uint32_t> tags_;
  std::vector<std::uint32_t> vals_;
  std::uint32_t mask_ = 0;
};

}  // namespace tmc::detail
