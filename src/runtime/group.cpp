#include "tmc/group.hpp"

namespace tmc {

std::string_view member_state_name(MemberState s) noexcept {
  switch (s) {
    case MemberState::expected: return "expected";
    case MemberState::alive: return "alive";
    case MemberState::failed: return "failed";
    case MemberState::left: return "left";
  }
  return "?";
}

void Group::reset(std::string self_name, std::uint32_t self_sender, std::uint32_t self_epoch, bool self_receives,
                  const std::vector<std::string>& expected_names) {
  members_.clear();
  members_.reserve(kMaxGroupMembers);
  MemberInfo self;
  self.name = std::move(self_name);
  self.sender = self_sender;
  self.epoch = self_epoch;
  self.state = MemberState::alive;
  self.receives = self_receives;
  members_.push_back(std::move(self));
  for (const auto& n : expected_names) {
    if (members_.size() >= kMaxGroupMembers) break;
    if (n == members_[0].name || slot_of_name(n) != kNoSlot) continue;
    MemberInfo m;
    m.name = n;
    members_.push_back(std::move(m));
  }
  ++view_id_;
  recompute();
}

int Group::heard(std::string_view name, std::uint32_t sender, std::uint32_t epoch, bool receives,
                 std::uint64_t now_ns, std::uint32_t ip, std::uint16_t port) {
  int slot = slot_of_name(name);
  if (slot == 0) return 0;  // someone using our name: never overwrite self
  if (slot == kNoSlot) {
    if (members_.size() >= kMaxGroupMembers) return kNoSlot;
    MemberInfo m;
    m.name = std::string(name);
    members_.push_back(std::move(m));
    slot = static_cast<int>(members_.size() - 1);
  }
  MemberInfo& m = members_[static_cast<std::size_t>(slot)];
  const bool changed = m.state != MemberState::alive || m.sender != sender || m.epoch != epoch || m.receives != receives;
  m.sender = sender;
  m.epoch = epoch;
  m.receives = receives;
  m.state = MemberState::alive;
  m.last_heard_ns = now_ns;
  if (ip != 0) {
    m.ip = ip;
    m.port = port;
  }
  if (changed) {
    ++view_id_;
    recompute();
  }
  return slot;
}

bool Group::touch(std::uint32_t sender, std::uint32_t epoch, std::uint64_t now_ns) noexcept {
  const int slot = slot_of_sender(sender);
  if (slot <= 0) return false;
  MemberInfo& m = members_[static_cast<std::size_t>(slot)];
  if (m.epoch != epoch || m.state != MemberState::alive) return false;
  m.last_heard_ns = now_ns;
  return true;
}

void Group::mark(int slot, MemberState state) noexcept {
  if (slot <= 0 || static_cast<std::size_t>(slot) >= members_.size()) return;
  MemberInfo& m = members_[static_cast<std::size_t>(slot)];
  if (m.state == state) return;
  if ((state == MemberState::failed || state == MemberState::left) &&
      (m.state == MemberState::alive || m.state == MemberState::expected)) {
    ++m.outages;
  }
  m.state = state;
  ++view_id_;
  recompute();
}

int Group::slot_of_sender(std::uint32_t sender) const noexcept {
  if (sender == 0) return kNoSlot;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].sender == sender) return static_cast<int>(i);
  }
  return kNoSlot;
}

int Group::slot_of_name(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].name == name) return static_cast<int>(i);
  }
  return kNoSlot;
}

std::string Group::names(MemberMask mask) const {
  std::string out;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if ((mask & slot_bit(static_cast<int>(i))) == 0) continue;
    if (!out.empty()) out += ", ";
    out += members_[i].name.empty() ? "?" : members_[i].name;
  }
  return out;
}

void Group::recompute() noexcept {
  alive_ = receivers_ = all_ = 0;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const MemberInfo& m = members_[i];
    const MemberMask bit = slot_bit(static_cast<int>(i));
    all_ |= bit;
    if (i == 0) continue;
    if (m.state == MemberState::alive) alive_ |= bit;
    if (m.receives && (m.state == MemberState::alive || m.state == MemberState::expected)) receivers_ |= bit;
  }
}

}  // namespace tmc
