// The pipeline: one channel's stages, wired top (application) to bottom (network).
//
// Shells (runtime/loop, sim) own a Pipeline and a PipelineSink. They call send(),
// receive() and tick() with the current time, and after each call re-arm their timer to
// next_deadline_ns(). The pipeline never reads a clock.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tmc/plan.hpp"
#include "tmc/stage.hpp"

struct tmc_io;  // tmc/module_abi.h

namespace tmc {

namespace detail {
class AppAcknowledged;
}  // namespace detail

/// What a pipeline hands to its shell.
class PipelineSink {
 public:
  /// A sealed datagram: bytes [p->data(), p->data() + p->len). The sink owns `p`.
  /// p->dst_ip/dst_port, when non-zero, name a unicast destination; else the group.
  virtual void transmit(Packet* p) noexcept = 0;
  /// A message for the application: payload [p->payload(), +p->payload_len). Sink owns `p`.
  virtual void deliver(Packet* p) noexcept = 0;
  /// A stage reported an event.
  virtual void on_event(const Event& e) noexcept = 0;
  /// The receiving application's load in [0, 1] (StageIo::load()); 0 = unknown.
  virtual double load() const noexcept { return 0.0; }

 protected:
  ~PipelineSink() = default;
};

/// Pipeline-level counters, always present; stage counters follow them.
#define TMC_PIPELINE_COUNTERS(X)                                                  \
  X(sent_messages, "messages accepted from the application")                    \
  X(sent_bytes, "payload bytes accepted from the application")                  \
  X(transmitted_packets, "datagrams handed to the transport")                   \
  X(transmitted_bytes, "datagram bytes handed to the transport")                \
  X(received_packets, "datagrams received from the transport")                  \
  X(received_bytes, "datagram bytes received from the transport")               \
  X(delivered_messages, "messages delivered to the application")                \
  X(delivered_bytes, "payload bytes delivered to the application")              \
  X(own_packets, "own multicast datagrams looped back and ignored")

enum class PipelineCounter : std::uint8_t {
#define TMC_PC_ENUM(name, doc) name,
  TMC_PIPELINE_COUNTERS(TMC_PC_ENUM)
#undef TMC_PC_ENUM
      count_
};
inline constexpr std::size_t kPipelineCounterCount = static_cast<std::size_t>(PipelineCounter::count_);

/// Names and values of every counter of one pipeline: "pipeline.*", "drops.*",
/// "wire.*", then each stage's own.
struct CounterSnapshot {
  std::vector<std::string> names;
  std::vector<std::uint64_t> values;
  [[nodiscard]] std::uint64_t get(std::string_view name) const noexcept;  ///< 0 if absent
};

/// Names and values of every stage's gauges (StageInfo::gauges, in pipeline order), read
/// when the snapshot was taken.
struct GaugeSnapshot {
  std::vector<std::string> names;
  std::vector<double> values;
  [[nodiscard]] double get(std::string_view name) const noexcept;  ///< NaN if absent
};

class Pipeline {
 public:
  /// Instantiate and configure the plan's software stages (in order; unwinds on error).
  /// Errors name the stage and parameter.
  static Status build(const Plan& plan, const Registry& registry, const StageEnv& env, PacketPool& pool,
                      PipelineSink& sink, std::unique_ptr<Pipeline>& out);

  /// When `io` is one of a pipeline's StageIo objects: fill the bound calls and the counter
  /// block of a module's tmc_io (revision 2) so that they go straight to the pipeline, and
  /// return true. Cold: a module stage calls it once per pipeline, not per message.
  static bool bind_module_io(StageIo& io, tmc_io& view) noexcept;

  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// A message from the application. `p` was prepared with reset_for_send() and its
  /// payload written; p->flags carry the per-message properties. The pipeline fills
  /// channel/sender/epoch.
  void send(Packet* p, std::uint64_t now_ns) noexcept;
  /// A datagram from the network (bytes at p->data(), p->len). Decoded, filtered by
  /// channel, then passed bottom-up through the stages.
  void receive(Packet* p, std::uint64_t now_ns) noexcept;
  /// The application acknowledged the message it sent with Packet::token `token` on behalf
  /// of the member whose wire id is `sender` (Channel::acknowledge): each stage that tracks
  /// acknowledgments records it as that member's ack. False when none tracked the message
  /// or the member is not in the view.
  bool app_ack(std::uint64_t token, std::uint32_t sender, std::uint64_t now_ns) noexcept;
  /// One application acknowledgment: token, member's wire id, when the application made it.
  struct AppAckRecord {
    std::uint64_t token = 0;
    std::uint32_t sender = 0;
    std::uint64_t at_ns = 0;
  };
  /// A batch of app_ack() calls in order, each at its own time (so each RTT sample is the
  /// reply's); the number that a stage tracked.
  std::size_t app_acks(std::span<const AppAckRecord> acks) noexcept;
  /// Run every stage whose timer is due at `now_ns`.
  void tick(std::uint64_t now_ns) noexcept;
  /// The application forgot the message given `token` (or it and every earlier one): every
  /// stage's on_forget, top to bottom. Cold.
  void forget(std::uint64_t token, ForgetScope scope, std::uint64_t now_ns) noexcept;
  /// Call every stage's on_start (once, before the first send/receive/tick). Shells call it
  /// right after build().
  void start(std::uint64_t now_ns) noexcept;
  /// Call every stage's on_stop (once; shells call it when retiring the pipeline, before
  /// flushing). Idempotent.
  void stop(std::uint64_t now_ns) noexcept;
  /// The membership view shared by the stages (see tmc/group.hpp).
  [[nodiscard]] Group& group() noexcept { return group_; }
  [[nodiscard]] const Group& group() const noexcept { return group_; }
  /// Earliest armed stage deadline, or 0 when none is armed.
  [[nodiscard]] std::uint64_t next_deadline_ns() const noexcept { return next_deadline_; }

  [[nodiscard]] const StageEnv& env() const noexcept { return env_; }
  [[nodiscard]] std::size_t stage_count() const noexcept { return stages_.size(); }
  [[nodiscard]] Stage& stage(std::size_t i) noexcept { return *stages_[i]; }
  [[nodiscard]] const std::string& stage_kind(std::size_t i) const noexcept { return kinds_[i]; }
  /// Packets currently held inside stages.
  [[nodiscard]] std::size_t held_packets() const noexcept;
  /// Sum of the stages' max_held_packets(): what full windows and queues may hold.
  [[nodiscard]] std::size_t max_held_packets() const noexcept;
  /// Sum of the stages' send_backlog(): application messages waiting for room inside.
  [[nodiscard]] std::size_t send_backlog() const noexcept;

  [[nodiscard]] CounterSnapshot counters() const;
  /// Every stage's gauges, read now (cold: allocates the snapshot; never per message).
  [[nodiscard]] GaugeSnapshot gauges() const;
  [[nodiscard]] std::uint64_t counter(PipelineCounter c) const noexcept {
    return values_[static_cast<std::size_t>(c)];
  }
  [[nodiscard]] std::uint64_t drops(DropReason r) const noexcept {
    return values_[kPipelineCounterCount + static_cast<std::size_t>(r)];
  }

 private:
  class Io;
  Pipeline(PacketPool& pool, PipelineSink& sink, const StageEnv& env);

  void pass_down(std::size_t from, Packet* p) noexcept;
  void pass_up(std::size_t from, Packet* p) noexcept;
  void drop(Packet* p, DropReason r) noexcept;
  void set_deadline(std::size_t stage, std::uint64_t deadline_ns) noexcept;
  void recompute_deadline() noexcept;
  void bump(std::size_t index, std::uint64_t n = 1) noexcept { values_[index] += n; }

  PacketPool& pool_;
  PipelineSink& sink_;
  StageEnv env_;
  std::uint64_t now_ns_ = 0;
  std::uint64_t next_deadline_ = 0;
  std::uint32_t redirect_ip_ = 0;  ///< StageIo::redirect_to_group
  std::uint16_t redirect_port_ = 0;
  bool network_sequenced_ = false;  ///< own datagrams stamped by the sequencer are delivered
  Group group_;
  bool started_ = false;
  bool stopped_ = false;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<std::string> kinds_;
  std::vector<std::unique_ptr<Io>> ios_;
  std::vector<std::pair<std::size_t, detail::AppAcknowledged*>> app_ackers_;  ///< stage index, interface
  std::vector<std::uint64_t> deadlines_;
  std::vector<std::string> counter_names_;
  std::vector<std::uint64_t> values_;
  std::size_t wire_counter_base_ = 0;
  /// Lifetimes (lifetime.deadline in the plan): every message's lifetime when it gives
  /// none of its own, and the stage's counter of messages that expired while a stage above
  /// it held them (dropped at delivery); 0 = no such stage.
  std::uint64_t lifetime_ns_ = 0;
  std::size_t expired_at_delivery_ = 0;
  std::vector<std::string> gauge_names_;
  std::vector<std::size_t> gauge_begin_;  ///< stage i's gauges: [gauge_begin_[i], gauge_begin_[i + 1])
};

}  // namespace tmc
