// Live counters: the channel's loop publishes its counters, gauges, plan and member view
// into its slot of the process's stat file (runtime/stat/stat_file.hpp), where `tmc stat`
// reads them from another process.
//
// Why a timer and not counters kept in the file itself: the pipeline's and the stages'
// counters are plain integers in their own memory, bumped on the hot path with no atomics
// and no indirection; moving them into a shared mapping would make every stage depend on
// it and every increment a store to memory other processes read. A libuv timer every
// kStatPublishMs copies them instead, on the loop thread under the exec lock it takes for
// every callback anyway: sends and receives do nothing for it, and a reader costs the
// writer nothing (it never takes a lock the writer takes, nor makes it do a system call).
// The copy is build_stats(), the same snapshot stats() returns (the stages' gauges are read
// there, after the shell's own); it allocates, ten times a second, never per message.
#include <cstdio>

#include "runtime/channel/channel_core.hpp"
#include "runtime/stat/stat_file.hpp"

namespace tmc::detail {

void ChannelCore::start_publishing() noexcept {
  if (!options_.publish_stats) return;
  try {
    stat_slot_ = StatWriter::instance().acquire();
  } catch (...) {
    stat_slot_ = -1;
  }
  if (stat_slot_ < 0) return;
  uv_timer_init(loop_.uv(), &stat_timer_);
  stat_timer_.data = this;
  ++open_handles_;
  // The first publish right after open, then every kStatPublishMs.
  uv_timer_start(&stat_timer_, &ChannelCore::on_stat_timer_cb, 0, kStatPublishMs);
}

void ChannelCore::stop_publishing() noexcept {
  if (stat_slot_ < 0) return;
  uv_timer_stop(&stat_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&stat_timer_), &ChannelCore::on_handle_closed);
  StatWriter::instance().release(stat_slot_);
  stat_slot_ = -1;
}

void ChannelCore::on_stat_timer_cb(uv_timer_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  self->publish_stats();
}

void ChannelCore::publish_stats() noexcept {
  if (stat_slot_ < 0 || !pipeline_ || life_.detached.load()) return;
  try {
    const ChannelStats s = build_stats();
    // members() runs inline on the loop thread (and under this exec lock, which nests).
    const std::vector<std::string> members = this->members();
    Plan plan = this->plan();
    if (stat_plan_updates_ != shell_.updates) {
      stat_plan_ = plan.to_string();
      stat_plan_updates_ = shell_.updates;
    }
    char group[96];
    std::snprintf(group, sizeof group, "%s:%u", plan.transport.group.c_str(),
                  static_cast<unsigned>(plan.transport.port));
    StatUpdate u;
    u.channel = plan.channel_id;
    u.member = plan.member;
    u.group = group;
    u.counters = &s.counters;
    u.gauges = {
        {"send_latency_ns", s.send_latency_ns},
        {"interarrival_ns", s.interarrival_ns},
        {"interarrival_jitter_ns", s.interarrival_jitter_ns},
        {"loss_ratio", s.loss_ratio},
        {"receive_queue_depth", static_cast<double>(rq_.ready.load(std::memory_order_relaxed))},
        {"send_queue_depth", static_cast<double>(submit_ring_.pushed() - submit_ring_.popped())},
        {"send_backlog", static_cast<double>(pipeline_->send_backlog())},
        {"members", static_cast<double>(members.size())},
    };
    for (const auto& [name, value] : s.gauges) u.gauges.emplace_back(name, value);
    u.plan = stat_plan_;
    u.members = &members;
    StatWriter::instance().publish(stat_slot_, u);
  } catch (...) {
    // Out of memory: this publish is skipped; the next one tries again.
  }
}

}  // namespace tmc::detail
