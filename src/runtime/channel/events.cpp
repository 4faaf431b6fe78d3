// Events and delivery outcomes: stage events become ChannelEvents for the event handler,
// and delivery events settle the outcomes that senders wait on.
#include <optional>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"

namespace tmc::detail {

void ChannelCore::on_event(const Event& e) noexcept {
  if ((e.type == EventType::delivery_met || e.type == EventType::delivery_failed ||
       e.type == EventType::delivery_forgotten || e.type == EventType::delivery_expired) &&
      outcomes_.count.load() > 0) {
    settle_outcome(e);
  }
  if (!handler_set_.event.load(std::memory_order_relaxed) || events_.size() >= 4096) return;
  try {
    ChannelEvent ce;
    static_cast<Event&>(ce) = e;
    if (e.sender != 0) ce.sender_name = name_of(e.sender);
    ce.detail = std::string(e.detail);
    ce.Event::detail = {};  // the stage's text is valid only during this call
    if (!e.members.empty() && pipeline_) {
      const Group& g = pipeline_->group();
      e.members.for_each([&](int slot) {
        if (static_cast<std::size_t>(slot) < g.slots()) ce.members.push_back(g.member(slot).name);
      });
    }
    events_.push_back(std::move(ce));
  } catch (...) {
    // Out of memory: the event is lost to the handler; counters still count what happened.
  }
}

void ChannelCore::settle_outcome(const Event& e) noexcept {
  // A fragmented message is several reliable packets under one token: it is met when every
  // fragment is, and failed as soon as one fails.
  try {
    // Looked up first: a default-constructed std::promise allocates its shared state, and
    // most met events belong to messages nobody waits on.
    std::optional<std::promise<DeliveryOutcome>> promise;
    MemberSet members = e.members;
    {
      std::lock_guard<std::mutex> lock(outcomes_.mu);
      auto it = outcomes_.by_token.find(e.token);
      if (it == outcomes_.by_token.end()) return;
      if (e.type == EventType::delivery_met) {
        if (it->second.any_met) {
          it->second.acked &= e.members;
        } else {
          it->second.acked = e.members;
          it->second.any_met = true;
        }
        if (--it->second.remaining > 0) return;
        members = it->second.acked;
      }
      promise.emplace(std::move(it->second.promise));
      outcomes_.by_token.erase(it);
      outcomes_.count.fetch_sub(1);
    }
    DeliveryOutcome o;
    o.state = e.type == EventType::delivery_met         ? DeliveryOutcome::State::met
              : e.type == EventType::delivery_forgotten ? DeliveryOutcome::State::forgotten
              : e.type == EventType::delivery_expired   ? DeliveryOutcome::State::expired
                                                        : DeliveryOutcome::State::failed;
    if (pipeline_) {
      const Group& g = pipeline_->group();
      // One allocation for the names however large the group (growing the vector name by
      // name re-copied every name some seven times a message at 100 members).
      std::vector<std::string>& names = o.state == DeliveryOutcome::State::failed ? o.missing : o.acked;
      names.reserve(static_cast<std::size_t>(members.count()));
      members.for_each([&](int slot) {
        if (slot < 1 || static_cast<std::size_t>(slot) >= g.slots()) return;
        names.push_back(g.member(slot).name);
      });
    }
    promise->set_value(std::move(o));
  } catch (...) {
  }
}

void ChannelCore::abandon_outcomes(std::uint64_t up_to_token) noexcept {
  settle_outcomes(0, up_to_token, DeliveryOutcome::State::abandoned);
}

void ChannelCore::settle_outcomes(std::uint64_t after, std::uint64_t through, DeliveryOutcome::State state) noexcept {
  try {
    std::vector<Tracked> gone;
    {
      std::lock_guard<std::mutex> lock(outcomes_.mu);
      for (auto it = outcomes_.by_token.begin(); it != outcomes_.by_token.end();) {
        if (it->first > after && it->first <= through) {
          gone.push_back(std::move(it->second));
          it = outcomes_.by_token.erase(it);
          outcomes_.count.fetch_sub(1);
        } else {
          ++it;
        }
      }
    }
    for (auto& t : gone) {
      DeliveryOutcome o;
      o.state = state;
      t.promise.set_value(std::move(o));
    }
  } catch (...) {
  }
}

std::string ChannelCore::name_of(std::uint32_t sender) const {
  auto it = names_.find(sender);
  if (it != names_.end()) return it->second;
  if (pipeline_) {
    const Group& g = pipeline_->group();
    const int slot = g.slot_of_sender(sender);
    if (slot != kNoSlot && !g.member(slot).name.empty()) return g.member(slot).name;
  }
  return hex_id(sender);
}

void ChannelCore::set_event_handler(Channel::EventHandler h) {
  if (life_.detached.load()) return;
  loop_.post([this, h = std::move(h)]() mutable {
    if (life_.detached.load()) return;
    event_handler_ = std::move(h);
    handler_set_.event.store(static_cast<bool>(event_handler_));
  });
}

}  // namespace tmc::detail
