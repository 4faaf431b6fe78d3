// The group view: who is in a channel right now, shared by the stages of one pipeline.
//
// One Group per pipeline. The membership stage (membership.heartbeat) is its only writer;
// every other stage reads it through StageIo::group() and never keeps a member list of its
// own (reliability resolves "ack from all / a named subset / a fraction" against it, flow
// control finds the receivers it waits for, group ordering picks its sequencer from it).
//
// Members live in slots 0..max_members()-1 (the manifest's 'max members'), and a set of
// members is a MemberSet (tmc/member_set.hpp): one inline word up to 64 members, a heap
// bitset sized to the group beyond that. A slot is stable for one member *name* for the
// pipeline's life: a member that restarts keeps its slot and gets a new epoch (the slot's
// `epoch` changes and view_id() moves on). This endpoint itself has a slot too
// (self_slot()). A member heard when every slot is taken gets none: heard() says so and
// the membership stage reports it (event member_refused), never silently.
//
// Lookups by sender id and by name are binary searches over indexes rebuilt when the view
// changes (cold), so a 1,000-member group costs O(log n) per packet, not O(n).
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
#include <utility>
#include <vector>

#include "tmc/member_set.hpp"

namespace tmc {

/// The default of the manifest's 'max members': slots a view holds at most.
inline constexpr std::size_t kDefaultMaxMembers = 4096;
/// The largest 'max members' a manifest may ask for.
inline constexpr std::size_t kMaxMaxMembers = 65536;
inline constexpr int kNoSlot = -1;

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
  /// Names beyond `max_members` slots are ignored (the compiler refuses such manifests).
  void reset(std::string self_name, std::uint32_t self_sender, std::uint32_t self_epoch, bool self_receives,
             const std::vector<std::string>& expected_names, std::size_t max_members = kDefaultMaxMembers);

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
  /// Slots this view may hold at most (self included).
  [[nodiscard]] std::size_t max_members() const noexcept { return max_members_; }
  [[nodiscard]] const MemberInfo& member(int slot) const noexcept { return members_[static_cast<std::size_t>(slot)]; }
  /// The slot of this sender id (any epoch), or kNoSlot.
  [[nodiscard]] int slot_of_sender(std::uint32_t sender) const noexcept;
  /// The slot of this name, or kNoSlot.
  [[nodiscard]] int slot_of_name(std::string_view name) const noexcept;
  /// Members other than self in state alive.
  [[nodiscard]] const MemberSet& alive() const noexcept { return alive_; }
  /// Members other than self that receive and are alive or expected: whom "ack from all"
  /// waits for.
  [[nodiscard]] const MemberSet& receivers() const noexcept { return receivers_; }
  /// Every slot in use, self included.
  [[nodiscard]] const MemberSet& all() const noexcept { return all_; }
  /// Members other than self in state failed or left.
  [[nodiscard]] const MemberSet& gone() const noexcept { return gone_; }
  /// The names of the members in `mask`, comma-separated (cold: for messages and events).
  [[nodiscard]] std::string names(const MemberSet& set) const;

 private:
  void recompute();
  void update(int slot, std::uint32_t old_sender);
  void reindex();

  std::vector<MemberInfo> members_;  ///< slot -> member
  std::size_t max_members_ = kDefaultMaxMembers;
  std::uint64_t view_id_ = 0;
  MemberSet alive_;
  MemberSet receivers_;
  MemberSet all_;
  MemberSet gone_;
  /// (sender id, slot) sorted by id, senders heard only; and slots sorted by name.
  std::vector<std::pair<std::uint32_t, int>> by_sender_;
  std::vector<int> by_name_;
};

}  // namespace tmc
