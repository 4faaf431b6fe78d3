// reliability.arq, deliver=in_order: the receiver's in-order hold (see arq_hold.hpp).
#include "primitives/reliability/arq_hold.hpp"

#include <algorithm>

#include "primitives/reliability/arq_config.hpp"

namespace tmc::arq {

InOrderHold::~InOrderHold() {
  out_.release_all();
  for (Slot& s : slots_) {
    for (std::uint64_t i = 0; s.ring != nullptr && s.n_held > 0 && i < ring_size_; ++i) {
      if (s.ring[i] != nullptr) {
        s.ring[i]->release();
        s.ring[i] = nullptr;
        --s.n_held;
      }
    }
  }
}

void InOrderHold::configure(std::size_t slots, std::uint64_t ring_size, std::size_t budget) {
  slots_.clear();
  slots_.resize(slots);
  ring_size_ = ring_size;
  budget_ = budget;
  total_ = 0;
}

bool InOrderHold::hold(std::size_t slot, Packet* p, std::uint64_t r, std::uint64_t now) noexcept {
  if (total_ >= budget_) return false;
  Slot& s = slots_[slot];
  // Cold: the first hold for this receive slot (kept when the slot is reused).
  if (s.ring == nullptr) s.ring = std::make_unique<Packet*[]>(ring_size_);
  s.ring[r % ring_size_] = p;
  ++total_;
  if (s.n_held++ == 0) s.held_since_ns = now;
  return true;
}

Packet* InOrderHold::take(Slot& s, std::uint64_t r) noexcept {
  Packet*& at = s.ring[r % ring_size_];
  Packet* q = at;
  if (q != nullptr) {
    at = nullptr;
    --s.n_held;
    --total_;
  }
  return q;
}

bool InOrderHold::release_through(std::size_t slot, std::uint64_t cum, std::uint64_t now,
                                  std::uint8_t gap_cause) noexcept {
  Slot& s = slots_[slot];
  bool hole = true;  // the first one goes up marked too (the hole may lie before the ring)
  if (s.n_held > 0 && cum > s.released) {
    const std::uint64_t end = std::min(cum, s.released + ring_size_);
    std::uint64_t r = s.released + 1;
    for (; r <= end && s.n_held > 0; ++r) {
      Packet* q = take(s, r);
      if (q == nullptr) {
        hole = true;
        continue;
      }
      if (hole && gap_cause != 0) q->gap_cause = gap_cause;
      hole = false;
      out_.push(q);
    }
    if (r <= cum) hole = true;  // nothing was held in [r, cum]: missing after the last one
    s.held_since_ns = s.n_held > 0 ? now : 0;  // what is left waits behind a newer gap
  }
  s.released = cum;
  return !hole;
}

void InOrderHold::release_all(std::size_t slot, StageIo& io) noexcept {
  Slot& s = slots_[slot];
  if (s.n_held == 0) return;
  // Their numbers stay marked received at the receiver, so none goes up twice.
  io.count(ctr::held_released_early, s.n_held);
  for (std::uint64_t r = s.released + 1; r <= s.released + ring_size_ && s.n_held > 0; ++r) {
    if (Packet* q = take(s, r)) out_.push(q);
  }
  s.held_since_ns = 0;
}

}  // namespace tmc::arq
