// ordering.group's member sequencer: the member the view names assigns global numbers to
// every sender's ordered messages, in each sender's per-sender order, and multicasts them
// in batched announcements; every other member places the announced entries in the
// message table. Depends on the table and the wire helpers only; which messages may be
// ordered (a reliable term must be running, senders alive) and how far (the members'
// windows) is the stage's to decide, and is passed in.
//
// Wire, unreliable: Kind::control with Ext::order body {u32 count}; reliable: body {u8 type
// = announce, u32 term_no, u32 count}, flagged reliable. Payload: count entries {u32 sender,
// u32 epoch, u64 seq, u64 global} (group/wire.hpp).
#pragma once

#include <cstdint>

#include "primitives/ordering/group/table.hpp"

namespace tmc::detail::group_order {

class MemberSequencer {
 public:
  /// Told of every announcement sent in reliable mode: it stands for the sequencer's status
  /// (it holds every global it numbered). Implemented by the stage.
  class AnnounceSink {
   public:
    virtual ~AnnounceSink() = default;
    virtual void announced(std::uint32_t term_no, std::uint64_t top) noexcept = 0;
  };

  MemberSequencer() = default;
  MemberSequencer(const MemberSequencer&) = delete;
  MemberSequencer& operator=(const MemberSequencer&) = delete;
  ~MemberSequencer();

  void configure(const StageEnv& env, bool reliable, std::uint64_t hold_ns, std::uint64_t flush_ns,
                 AnnounceSink& sink) noexcept;

  // --- ordering (this member sequences) -----------------------------------------------

  /// Number from 1 in a new term: each sender's order continues after what this member
  /// delivered of it.
  void begin(MsgTable& t) noexcept;
  /// Number from 1 (a reliable term start; the per-sender order is set when it runs).
  void restart_numbering() noexcept { next_assign_ = 1; }
  /// Give every message of sender `s` that is next in its per-sender order a global number
  /// below `limit`. Whether `limit` stopped it.
  bool order(MsgTable& t, std::uint32_t s, std::uint64_t limit, StageIo& io) noexcept;
  /// Unreliable: a sender's next message has been missing for hold_us; order from its
  /// earliest waiting one instead (the missing ones will never be ordered).
  void give_up_waits(MsgTable& t, StageIo& io) noexcept;
  void clear_wait() noexcept { wait_at_ = 0; }
  [[nodiscard]] std::uint64_t next_assign() const noexcept { return next_assign_; }
  [[nodiscard]] std::uint64_t wait_at() const noexcept { return wait_at_; }

  // --- announcements ------------------------------------------------------------------

  /// Send the batch being filled.
  void flush(StageIo& io) noexcept;
  [[nodiscard]] bool batching() const noexcept { return batch_n_ > 0; }
  [[nodiscard]] bool holds_batch() const noexcept { return batch_ != nullptr; }
  [[nodiscard]] std::uint64_t flush_at() const noexcept { return flush_at_; }
  /// A follower of the term: place the `n` announced entries (already length-checked).
  void place_entries(MsgTable& t, const std::uint8_t* entries, std::uint32_t n, StageIo& io) noexcept;

 private:
  void add(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq, std::uint64_t g, std::uint32_t term_no,
           StageIo& io) noexcept;

  StageEnv env_;
  bool reliable_ = false;
  std::uint64_t hold_ns_ = 50'000'000;
  std::uint64_t flush_ns_ = 100'000;
  AnnounceSink* sink_ = nullptr;

  std::uint64_t next_assign_ = 1;
  std::uint64_t wait_at_ = 0;  ///< unreliable: the earliest per-sender wait to give up (0 = none)

  Packet* batch_ = nullptr;
  std::uint32_t batch_n_ = 0;
  std::uint32_t batch_max_ = 1;
  std::uint32_t batch_term_no_ = 0;
  std::uint64_t flush_at_ = 0;
};

}  // namespace tmc::detail::group_order
