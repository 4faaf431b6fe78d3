// Channel statistics: the counters of every pipeline and transport the channel has had,
// the shell's own, and the estimates derived from them.
#include <algorithm>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"

namespace tmc::detail {

ChannelStats ChannelCore::stats() {
  if (life_.detached.load()) return final_stats_;
  return loop_.call([this] {
    ExecGuard exec(*this);
    return life_.detached.load() ? final_stats_ : build_stats();
  });
}

ChannelStats ChannelCore::build_stats() const {
  ChannelStats s;
  s.counters = carried_;
  if (pipeline_) {
    const CounterSnapshot snap = pipeline_->counters();
    for (std::size_t i = 0; i < snap.names.size(); ++i) add_named(s.counters, snap.names[i], snap.values[i]);
    GaugeSnapshot g = pipeline_->gauges();
    s.gauges.reserve(g.names.size());
    for (std::size_t i = 0; i < g.names.size(); ++i) s.gauges.emplace_back(std::move(g.names[i]), g.values[i]);
  }
  TransportCounters t = tx_carried_;
  if (transport_) add_counters(t, transport_->counters());
  const std::pair<const char*, std::uint64_t> shell[] = {
      {"shell.datagrams_sent", t.datagrams_sent},
      {"shell.datagram_bytes_sent", t.datagram_bytes_sent},
      {"shell.send_errors", t.send_errors},
      {"shell.tx_overflow", t.tx_overflow},
      {"shell.gso_sends", t.gso_sends},
      {"shell.gso_refused", t.gso_refused},
      {"shell.gro_reads", t.gro_reads},
      {"shell.peer_refused", t.refused},
      {"shell.datagrams_received", t.datagrams_received},
      {"shell.datagram_bytes_received", t.datagram_bytes_received},
      {"shell.receive_errors", t.receive_errors},
      {"shell.truncated", t.truncated},
      {"shell.rx_pool_exhausted", t.rx_pool_exhausted},
      {"shell.delivered_messages", shell_.delivered_messages},
      {"shell.delivered_bytes", shell_.delivered_bytes},
      {"shell.receive_queue_full", shell_.receive_queue_full},
      {"shell.expired_in_queue", rq_.expired.load()},
      {"shell.own_old_epoch", shell_.own_old_epoch},
      {"shell.handler_exceptions", shell_.handler_exceptions},
      {"shell.updates", shell_.updates},
      {"shell.final_ticks", shell_.final_ticks},
      {"shell.send_only_discarded", shell_.send_only_discarded},
      {"shell.inline_received", shell_.inline_received},
      {"shell.loop_stepped_aside", shell_.loop_stepped_aside},
      {"shell.forgotten_unsent", shell_.forgotten_unsent},
      {"shell.send_waited_for_memory", send_.waited_for_memory.load()},
  };
  for (const auto& [n, v] : shell) s.counters.emplace_back(n, v);

  s.messages_sent = s.counter("pipeline.sent_messages");
  s.bytes_sent = s.counter("pipeline.sent_bytes");
  s.datagrams_sent = t.datagrams_sent;
  s.datagram_bytes_sent = t.datagram_bytes_sent;
  s.datagrams_received = t.datagrams_received;
  s.datagram_bytes_received = t.datagram_bytes_received;
  s.messages_delivered = shell_.delivered_messages;
  s.bytes_delivered = shell_.delivered_bytes;
  for (std::size_t r = 0; r < kDropReasonCount; ++r) {
    s.drops[r] = s.counter("drops." + std::string(drop_reason_name(static_cast<DropReason>(r))));
  }
  s.drops[static_cast<std::size_t>(DropReason::pool_exhausted)] += t.rx_pool_exhausted;
  s.receive_queue_full = shell_.receive_queue_full;
  s.own_datagrams = s.counter("pipeline.own_packets");
  s.send_errors = t.send_errors + t.tx_overflow;
  s.receive_errors = t.receive_errors;
  s.send_latency_ns = send_latency_ns_;
  s.interarrival_ns = interarrival_ns_;
  s.interarrival_jitter_ns = jitter_ns_;
  if (!seq_.empty()) {
    double expected = 0;
    double missing = 0;
    for (const auto& [key, tr] : seq_) {
      const double span = static_cast<double>(tr.highest - tr.first + 1);
      expected += span;
      missing += std::max(0.0, span - static_cast<double>(tr.delivered));
    }
    s.loss_ratio = expected > 0 ? missing / expected : 0.0;
  }
  return s;
}

}  // namespace tmc::detail
