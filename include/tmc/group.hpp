// The group view: who is in a channel right now, shared by the stages of one pipeline.
//
// One Group per pipeline. The membership stage (membership.heartbeat) is its only writer;
// every other stage reads it through StageIo::group() and never keeps a member list of its
// own (reliability resolves "ack from all / a named subset / a fraction" against it, flow
// control finds the receivers it waits for, group ordering picks its sequencer from it).
//
// Members live in at most kMaxGroupMembers slots, so a set of members is a 64-bit mask
// (MemberMask) and per-message bookkeeping such as "who has acked" costs one word and no
// allocation. Slot 0..63 is stable for one member *name* for the pipeline's life: a member
// that restarts keeps its slot and gets a new epoch (the slot's `epoch` changes and
// view_id() moves on). This endpoint itself has a slot too (self_slot()).
//
// Members named in the manifest ('members') get slots at reset() and are "expected": they
// belong in an "ack from all" set from the start, so a message sent before a member was
// heard still waits for it. Members not named are added when first heard.
//
// view_id() increases by one on every change (join, leave, restart, failure), so a stage
// notices a new view by comparing one integer on its hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tmc {

inline constexpr std::size_t kMaxGroupMembers = 64;
using MemberMask = std::uint64_t;
inline constexpr int kNoSlot = -1;

[[nodiscard]] inline MemberMask slot_bit(int slot) noexcept { return MemberMask{1} << static_cast<unsigned>(slot); }
[[nodiscard]] inline int mask_count(MemberMask m) noexcept { return __builtin_popcountll(m); }

enum class MemberState : std::uint8_t {
  expected,  ///< named in the manifest, not heard yet
  alive,     ///< heard within the failure timeout
  failed,    ///< not heard within the failure timeout (still has its slot)
  left,      ///< said goodbye
};
std::string_view member_state_name(MemberState s) noexcept;

struct MemberInfo {
  std::string name;
  std::uint32_t sender = 0;  ///< wire sender id; 0 until heard
  std::uint32_t epoch = 0;   ///< current incarnation; 0 until heard
  MemberState state = MemberState::expected;
  bool receives = true;      ///< false: a send-only member (never acks, never in an ack set)
  std::uint64_t last_heard_ns = 0;
  /// How many times the slot was marked failed or left. A member heard again after a
  /// partition keeps its epoch, so a stage that reads the view only now and then (on its
  /// own inputs) learns from this that the member was out meanwhile.
  std::uint32_t outages = 0;
  std::uint32_t ip = 0;      ///< source address of its last packet (host order), 0 = unknown
  std::uint16_t port = 0;
};

class Group {
 public:
  /// Cold. Start a new view with this endpoint and the manifest's named members (expected).
  /// Names beyond kMaxGroupMembers are ignored (the compiler refuses such manifests).
  void reset(std::string self_name, std::uint32_t self_sender, std::uint32_t self_epoch, bool self_receives,
             const std::vector<std::string>& expected_names);

  // --- writes (the membership stage) ----------------------------------------------------
  /// A packet or heartbeat from (name, sender, epoch) at now_ns. Creates the slot when the
  /// name is new (kNoSlot if the table is full), marks it alive, and records a restart when
  /// the epoch differs. Returns the slot. Cold only when something changed (allocates the
  /// name once per new member).
  int heard(std::string_view name, std::uint32_t sender, std::uint32_t epoch, bool receives, std::uint64_t now_ns,
            std::uint32_t ip = 0, std::uint16_t port = 0);
  /// Refresh liveness of a known (sender, epoch) without a name; false if unknown or stale.
  bool touch(std::uint32_t sender, std::uint32_t epoch, std::uint64_t now_ns) noexcept;
  /// Mark a slot failed or left (no-op for self or a slot already in that state).
  void mark(int slot, MemberState state) noexcept;

  // --- reads (any stage; hot and allocation-free) ---------------------------------------
  [[nodiscard]] std::uint64_t view_id() const noexcept { return view_id_; }
  [[nodiscard]] int self_slot() const noexcept { return 0; }
  [[nodiscard]] std::size_t slots() const noexcept { return members_.size(); }
  [[nodiscard]] const MemberInfo& member(int slot) const noexcept { return members_[static_cast<std::size_t>(slot)]; }
  /// The slot of this sender id (any epoch), or kNoSlot.
  [[nodiscard]] int slot_of_sender(std::uint32_t sender) const noexcept;
  /// The slot of this name, or kNoSlot.
  [[nodiscard]] int slot_of_name(std::string_view name) const noexcept;
  /// Members other than self in state alive.
  [[nodiscard]] MemberMask alive() const noexcept { return alive_; }
  /// Members other than self that receive and are alive or expected: whom "ack from all"
  /// waits for.
  [[nodiscard]] MemberMask receivers() const noexcept { return receivers_; }
  /// Every slot in use, self included.
  [[nodiscard]] MemberMask all() const noexcept { return all_; }
  /// The names of the members in `mask`, comma-separated (cold: for messages and events).
  [[nodiscard]] std::string names(MemberMask mask) const;

 private:
  void recompute() noexcept;

  std::vector<MemberInfo> members_;  ///< slot -> member; reserved to kMaxGroupMembers at reset
  std::uint64_t view_id_ = 0;
  MemberMask alive_ = 0;
  MemberMask receivers_ = 0;
  MemberMask all_ = 0;
};

}  // namespace tmc
