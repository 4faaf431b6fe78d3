#include "tmc/group.hpp"

#include <algorithm>

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
                  const std::vector<std::string>& expected_names, std::size_t max_members) {
  members_.clear();
  max_members_ = std::max<std::size_t>(max_members, 1);
  members_.reserve(std::min(max_members_, expected_names.size() + 1));
  MemberInfo self;
  self.name = std::move(self_name);
  self.sender = self_sender;
  self.epoch = self_epoch;
  self.state = MemberState::alive;
  self.receives = self_receives;
  members_.push_back(std::move(self));
  by_name_.clear();
  reindex();
  for (const auto& n : expected_names) {
    if (members_.size() >= max_members_) break;
    if (n == members_[0].name || slot_of_name(n) != kNoSlot) continue;
    MemberInfo m;
    m.name = n;
    members_.push_back(std::move(m));
    reindex();
  }
  ++view_id_;
  recompute();
}

int Group::heard(std::string_view name, std::uint32_t sender, std::uint32_t epoch, bool receives,
                 std::uint64_t now_ns, std::uint32_t ip, std::uint16_t port) {
  int slot = slot_of_name(name);
  if (slot == 0) return 0;  // someone using our name: never overwrite self
  if (slot == kNoSlot) {
    if (members_.size() >= max_members_) return kNoSlot;
    MemberInfo m;
    m.name = std::string(name);
    members_.push_back(std::move(m));
    slot = static_cast<int>(members_.size() - 1);
    reindex();
  }
  MemberInfo& m = members_[static_cast<std::size_t>(slot)];
  const bool changed = m.state != MemberState::alive || m.sender != sender || m.epoch != epoch || m.receives != receives;
  const std::uint32_t old_sender = m.sender;
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
    update(slot, old_sender);
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
  update(slot, m.sender);
}

int Group::slot_of_sender(std::uint32_t sender) const noexcept {
  if (sender == 0) return kNoSlot;
  // Several slots may have held one id (a name that changed hands): the lowest slot wins,
  // as the linear scan this replaces did.
  const auto it = std::lower_bound(by_sender_.begin(), by_sender_.end(), std::pair<std::uint32_t, int>{sender, -1});
  return it != by_sender_.end() && it->first == sender ? it->second : kNoSlot;
}

int Group::slot_of_name(std::string_view name) const noexcept {
  const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name, [this](int slot, std::string_view n) {
    return members_[static_cast<std::size_t>(slot)].name < n;
  });
  return it != by_name_.end() && members_[static_cast<std::size_t>(*it)].name == name ? *it : kNoSlot;
}

std::string Group::names(const MemberSet& set) const {
  std::string out;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (!set.contains(static_cast<int>(i))) continue;
    if (!out.empty()) out += ", ";
    out += members_[i].name.empty() ? "?" : members_[i].name;
  }
  return out;
}

// Cold: the newest slot joins the name index (names are unique: a slot is looked up by
// name before one is added).
void Group::reindex() {
  const int slot = static_cast<int>(members_.size() - 1);
  const std::string& name = members_.back().name;
  const auto at = std::upper_bound(by_name_.begin(), by_name_.end(), name, [this](std::string_view n, int s) {
    return n < members_[static_cast<std::size_t>(s)].name;
  });
  by_name_.insert(at, slot);
}

// Cold: the derived sets and the sender index, after any change of the view.
void Group::recompute() {
  alive_.reserve(members_.size());
  receivers_.reserve(members_.size());
  all_.reserve(members_.size());
  gone_.reserve(members_.size());
  alive_.clear();
  receivers_.clear();
  all_.clear();
  gone_.clear();
  by_sender_.clear();
  by_sender_.reserve(members_.size());
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const MemberInfo& m = members_[i];
    const int slot = static_cast<int>(i);
    all_.insert(slot);
    if (m.sender != 0) by_sender_.emplace_back(m.sender, slot);
    if (i == 0) continue;
    if (m.state == MemberState::alive) alive_.insert(slot);
    if (m.state == MemberState::failed || m.state == MemberState::left) gone_.insert(slot);
    if (m.receives && (m.state == MemberState::alive || m.state == MemberState::expected)) receivers_.insert(slot);
  }
  std::sort(by_sender_.begin(), by_sender_.end());
}

// The derived sets and the sender index after a change of one member (`old_sender`: the
// sender id it had before): what recompute() would give, in O(1) for the sets and one
// shift of the index, so that a group of n members starting up (each member heard for
// the first time, one view change each) costs O(n) per change instead of O(n log n).
void Group::update(int slot, std::uint32_t old_sender) {
  const std::size_t n = members_.size();
  alive_.reserve(n);
  receivers_.reserve(n);
  all_.reserve(n);
  gone_.reserve(n);
  by_sender_.reserve(n);
  const MemberInfo& m = members_[static_cast<std::size_t>(slot)];
  all_.insert(slot);
  if (m.sender != old_sender) {
    if (old_sender != 0) {
      const auto it = std::lower_bound(by_sender_.begin(), by_sender_.end(), std::pair{old_sender, slot});
      if (it != by_sender_.end() && *it == std::pair{old_sender, slot}) by_sender_.erase(it);
    }
    if (m.sender != 0) {
      const std::pair<std::uint32_t, int> key{m.sender, slot};
      by_sender_.insert(std::lower_bound(by_sender_.begin(), by_sender_.end(), key), key);
    }
  }
  if (slot == 0) return;
  const auto put = [slot](MemberSet& set, bool in) {
    if (in) {
      set.insert(slot);
    } else {
      set.erase(slot);
    }
  };
  put(alive_, m.state == MemberState::alive);
  put(gone_, m.state == MemberState::failed || m.state == MemberState::left);
  put(receivers_, m.receives && (m.state == MemberState::alive || m.state == MemberState::expected));
}

}  // namespace tmc
