// The channel as its members see it: the membership view, the member list, and the
// current manifest, plan and name.
#include <algorithm>
#include <thread>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"

namespace tmc::detail {

std::vector<MemberStatus> ChannelCore::view() {
  if (life_.detached.load() || !config_.traits.load().membership) return {};
  return loop_.call([this] {
    ExecGuard exec(*this);
    std::vector<MemberStatus> out;
    if (!pipeline_) return out;
    const Group& g = pipeline_->group();
    for (std::size_t i = 0; i < g.slots(); ++i) {
      const MemberInfo& m = g.member(static_cast<int>(i));
      out.push_back(MemberStatus{m.name, m.state, i == 0, m.receives, m.sender, m.epoch});
    }
    return out;
  });
}

Status ChannelCore::wait_for_members(std::size_t count, std::chrono::nanoseconds timeout) {
  if (!config_.traits.load().membership) {
    return {Code::NOT_AVAILABLE, "wait_for_members: the channel's plan has no membership stage (it comes with "
                                 "reliability, flow control or group ordering)"};
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (life_.detached.load()) return {Code::CLOSED, "wait_for_members: the channel is closed"};
    const std::size_t alive = loop_.call([this] {
      ExecGuard exec(*this);
      return pipeline_ ? static_cast<std::size_t>(pipeline_->group().alive().count()) : std::size_t{0};
    });
    if (alive >= count) return Status::ok();
    if (std::chrono::steady_clock::now() >= deadline) {
      return {Code::TIMED_OUT, "wait_for_members: " + std::to_string(alive) + " of " + std::to_string(count) +
                                   " members alive when the wait ended"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::vector<std::string> ChannelCore::members() {
  if (config_.traits.load().membership && !life_.detached.load()) {
    return loop_.call([this] {
      ExecGuard exec(*this);
      std::vector<std::string> out;
      if (!pipeline_) return out;
      const Group& g = pipeline_->group();
      for (std::size_t i = 0; i < g.slots(); ++i) {
        const MemberInfo& m = g.member(static_cast<int>(i));
        if (i == 0 || m.state == MemberState::alive) out.push_back(m.name);
      }
      return out;
    });
  }
  auto compute = [this] {
    std::vector<std::string> out;
    auto add = [&out](const std::string& n) {
      if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    };
    Manifest m = manifest();
    for (const auto& e : m.members) add(member_name(e));
    for (std::uint32_t id : heard_order_) {
      auto it = names_.find(id);
      add(it != names_.end() ? it->second : hex_id(id));
    }
    add(name());
    return out;
  };
  if (life_.detached.load()) return compute();
  return loop_.call([this, &compute] {
    ExecGuard exec(*this);  // heard_order_ and names_ change under exec (inline receive too)
    return compute();
  });
}

Plan ChannelCore::plan() const {
  std::lock_guard<std::mutex> lock(state_.mu);
  return state_.plan;
}

Manifest ChannelCore::manifest() const {
  std::lock_guard<std::mutex> lock(state_.mu);
  return state_.manifest;
}

std::string ChannelCore::name() const {
  std::lock_guard<std::mutex> lock(state_.mu);
  return state_.name;
}

}  // namespace tmc::detail
