// reliability.arq, deliver=in_order: the receiver's in-order hold.
//
// A reliable packet that arrives above a gap in its sender's sequence is held here, in a
// ring indexed by its reliable number (one ring per receive slot, made the first time the
// slot holds a packet and kept when the slot is reused), and passed up when the gap fills,
// so the ordering stage above sees each sender's packets in order and holds nothing. The
// point is cost: with coalescing above, one held datagram carries a whole batch, where the
// ordering stage would hold every message of it separately. Holding here is an
// optimisation only; ordering above stays the authority.
//
// The receiver (arq_receiver) decides what is in order: it tells the hold each slot's
// cumulative point (every number at or below it received or settled at the sender) and
// when to give up waiting. Every held number of a slot lies in (released, released + ring
// size]. Packets to pass up wait in one queue shared by all slots, so the order holds even
// when a stage above sends, or the network hands the stage more, from inside io.up().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "tmc/stage.hpp"

namespace tmc::arq {

class [[gnu::visibility("hidden")]] InOrderHold {
 public:
  InOrderHold() = default;
  InOrderHold(const InOrderHold&) = delete;
  InOrderHold& operator=(const InOrderHold&) = delete;
  ~InOrderHold();

  /// Cold: `slots` receive slots, each holding numbers in a ring of `ring_size` (the
  /// receive window); at most `budget` packets held over all slots together.
  void configure(std::size_t slots, std::uint64_t ring_size, std::size_t budget);

  /// Hold `p` (number `r`, above the slot's cumulative point). False when the budget is
  /// spent: the caller passes it up unordered (pass_up()).
  bool hold(std::size_t slot, Packet* p, std::uint64_t r, std::uint64_t now) noexcept;

  /// `p` (number `r`) arrived at or below the cumulative point `cum`: it goes up in its
  /// place, then whatever waited behind it.
  void arrived_in_order(std::size_t slot, Packet* p, std::uint64_t r, std::uint64_t cum, std::uint64_t now) noexcept {
    Slot& s = slots_[slot];
    if (s.n_held == 0) {
      s.released = cum;
      out_.push(p);
      return;
    }
    s.ring[r % ring_size_] = p;
    ++s.n_held;
    ++total_;
    release_through(slot, cum, now);
  }

  /// Queue every held packet at or below `cum`, in order (the gap below them filled, or
  /// the sender settled past it).
  /// With `gap_cause` (an EventCause), the first packet queued, and the first after each
  /// missing number, carry it (Packet::gap_cause): the sender settled what is missing.
  /// Returns whether the mark is spent: it queued something, and no number up to `cum` is
  /// missing after the last packet it queued (a hole there is for the next packet to mark).
  bool release_through(std::size_t slot, std::uint64_t cum, std::uint64_t now, std::uint8_t gap_cause = 0) noexcept;

  /// The wait is over (timeout, new incarnation, eviction): queue every held packet of the
  /// slot in order, gaps and all, counting them under held_released_early.
  void release_all(std::size_t slot, StageIo& io) noexcept;

  /// The slot starts a new sender incarnation at cumulative point `cum` (nothing held).
  void restart(std::size_t slot, std::uint64_t cum) noexcept {
    Slot& s = slots_[slot];
    s.n_held = 0;
    s.released = cum;
    s.held_since_ns = 0;
  }

  /// Queue `p` to go up after what is queued already.
  void pass_up(Packet* p) noexcept { out_.push(p); }

  /// Pass up everything queued, in order. Call last: a stage above may send from inside.
  void flush(StageIo& io) noexcept {
    while (Packet* q = out_.pop()) io.up(q);
  }

  [[nodiscard]] std::uint32_t held(std::size_t slot) const noexcept { return slots_[slot].n_held; }
  /// When the slot's current wait behind a gap began (meaningful while held() > 0).
  [[nodiscard]] std::uint64_t held_since_ns(std::size_t slot) const noexcept { return slots_[slot].held_since_ns; }
  /// Packets held, all slots together.
  [[nodiscard]] std::size_t total() const noexcept { return total_; }

 private:
  struct Slot {
    std::unique_ptr<Packet*[]> ring;  // by number % ring_size_; made at the slot's first hold
    std::uint32_t n_held = 0;
    std::uint64_t released = 0;       // every held packet at or below this has gone up
    std::uint64_t held_since_ns = 0;  // when the current wait behind a gap began
  };

  Packet* take(Slot& s, std::uint64_t r) noexcept;

  std::vector<Slot> slots_;
  std::uint64_t ring_size_ = 0;
  std::size_t budget_ = 0;
  std::size_t total_ = 0;
  PacketFifo out_;
};

}  // namespace tmc::arq
