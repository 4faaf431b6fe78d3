// reliability.arq: what the sender knows each member received, in O(members) state.
//
// A member's acks report a cumulative number and a SACK bitmap of the 64 numbers after the
// first gap. Acks only grow (a receiver never forgets), so the union of everything one
// member reported is again a cumulative number (`base`: every rseq up to it received) and
// the 64 numbers above the first gap: MemberAcks. The sender keeps one per member instead
// of a member set per window entry, and finds "acked by every member of the ack set" as the
// minimum of the members' bases (MinTree), plus the selective acks above it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "primitives/common/min_tree.hpp"
#include "primitives/reliability/ack_format.hpp"

namespace tmc::arq {

struct MemberAcks {
  std::uint64_t base = 0;  // every rseq <= base received
  std::uint64_t sack = 0;  // bit i: rseq base + 2 + i received (base + 1 never is)

  [[nodiscard]] bool has(std::uint64_t r) const noexcept {
    if (r <= base) return true;
    const std::uint64_t i = r - base - 2;
    return r >= base + 2 && i < 64 && ((sack >> i) & 1U) != 0;
  }
  /// The highest rseq received (base when no selective ack).
  [[nodiscard]] std::uint64_t high() const noexcept {
    return sack == 0 ? base : base + 2 + static_cast<std::uint64_t>(63 - __builtin_clzll(sack));
  }
  [[nodiscard]] bool operator==(const MemberAcks&) const noexcept = default;

  /// This state and what `ack` reports, counting only rseqs up to `top` (the newest sent).
  [[nodiscard]] MemberAcks merged(const detail::AckBody& ack, std::uint64_t top) const noexcept {
    if (ack.cumulative >= top) return MemberAcks{base > top ? base : top, 0};
    std::uint64_t nb = base > ack.cumulative ? base : ack.cumulative;
    // `next`: whether nb + 1 was received; `bits`: bit j is rseq nb + 2 + j, as in `sack`.
    bool next = false;
    std::uint64_t bits = 0;
    const auto take = [&](std::uint64_t from_base, std::uint64_t from_sack) {
      const std::uint64_t d = nb - from_base;  // from_sack bit i is rseq nb + 2 + (i - d)
      if (d == 0) {
        bits |= from_sack;
        return;
      }
      next = next || (d - 1 < 64 && ((from_sack >> (d - 1)) & 1U) != 0);
      bits |= d < 64 ? from_sack >> d : 0;
    };
    take(base, sack);
    take(ack.cumulative, ack.sack);
    // Nothing above the newest sent counts: rseqs nb + 1 .. top.
    const std::uint64_t room = top - nb;
    if (room == 0) next = false;
    if (room <= 64) bits &= room <= 1 ? 0 : (std::uint64_t{1} << (room - 1)) - 1;
    if (next) {
      const auto k = static_cast<std::uint64_t>(~bits == 0 ? 64 : __builtin_ctzll(~bits));  // received after nb + 1
      nb += 1 + k;
      bits = k + 1 >= 64 ? 0 : bits >> (k + 1);
    }
    return MemberAcks{nb, bits};
  }
};

using detail::MinTree;  // primitives/common/min_tree.hpp

}  // namespace tmc::arq
