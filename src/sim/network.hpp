// tmc::sim — a deterministic network simulator: the test shell around real pipelines.
//
// What is modelled
//   N members (endpoints) of one multicast group. Each member runs the same Pipeline the
//   libuv runtime would run, built from a tmc::Plan, with its own PacketPool, StageEnv and
//   sink. The network is a set of directed links between members. A datagram a member
//   transmits to the group is copied to every other member, and each copy crosses its link
//   independently; a datagram with a unicast destination (Packet::dst_ip) goes to the one
//   member with that address (member i is 10.0.0.(i+1), port = the plan's port, or 4000).
//   Per copy, the link may lose it, duplicate it, delay it (base delay + uniform jitter),
//   reorder it (an extra random delay), and corrupt it (flip 1..k random bits anywhere in
//   the datagram). Partitions (groups of members that cannot reach each other, or cut
//   member pairs) apply from t0 to t1. Link parameters have a default and overrides per
//   directed pair, per destination and per source. Members can leave, rejoin and restart
//   (a new pipeline with a new epoch and the same sender id).
//
// Time and determinism
//   Time is virtual, in nanoseconds, starting at 0. All work happens in events taken from
//   one queue ordered by (time, insertion order), so ties break the same way every run.
//   Every random choice comes from a xoshiro256** generator seeded from the network seed
//   (sim/rng.hpp); sender ids, epochs and stage seeds are derived from it too. Nothing
//   reads a clock, the environment or global state, so the same seed and the same calls
//   give the same deliveries, events and counters, bit for bit (fingerprint() hashes them).
//   Stage timers: after every call into a pipeline, the shell re-arms one timer event at
//   the pipeline's next_deadline_ns() (or now, if that lies in the past).
//
// Limits
//   No bandwidth, queueing or MTU model: a link never congests, and datagrams are as large
//   as the pool's buffers allow. Partitions are decided when a datagram leaves its sender
//   (a copy already in flight when the partition starts still arrives). Loss and
//   duplication apply per copy; the simulator never loops a member's own multicast back
//   to it. run_until*() are bounded by a maximum number of events per call, so a stage
//   that re-arms its timer forever makes the run stop (and say so) instead of hanging.
//   Deliveries and events are recorded in memory with their payloads: meant for tests of
//   thousands of messages, not millions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/pipeline.hpp"
#include "sim/rng.hpp"
#include "tmc/plan.hpp"
#include "tmc/stage.hpp"

namespace tmc::sim {

/// "No member": the source of a datagram whose sender the network does not know.
inline constexpr std::size_t kNoMember = std::numeric_limits<std::size_t>::max();
/// "Forever": the end of a partition that is never healed.
inline constexpr std::uint64_t kForever = std::numeric_limits<std::uint64_t>::max();

/// How one directed link treats each datagram copy that crosses it.
struct LinkParams {
  double loss = 0.0;                      ///< probability a copy is lost
  double duplicate = 0.0;                 ///< probability a second copy is delivered too
  double reorder = 0.0;                   ///< probability a copy gets an extra delay
  std::uint64_t reorder_delay_ns = 2'000'000;  ///< the extra delay is uniform in [1, this]
  std::uint64_t delay_ns = 100'000;       ///< base one-way delay
  std::uint64_t jitter_ns = 0;            ///< uniform extra delay in [0, this] for every copy
  double corrupt = 0.0;                   ///< probability a copy has bits flipped
  std::uint32_t corrupt_max_bits = 1;     ///< bits flipped: uniform in [1, this]

  /// A link that neither loses, duplicates, reorders nor corrupts (delays still apply).
  [[nodiscard]] static LinkParams clean(std::uint64_t delay_ns = 100'000) {
    LinkParams l;
    l.delay_ns = delay_ns;
    return l;
  }
};

struct Config {
  std::uint64_t seed = 1;
  LinkParams link;                          ///< default for every directed link
  std::uint32_t max_payload_bytes = 1200;   ///< when the plan does not say
  std::uint32_t pool_initial_packets = 64;  ///< per member
  std::uint32_t pool_max_packets = 8192;    ///< per member: the hard memory bound
  std::uint64_t max_events_per_run = 5'000'000;  ///< bounds each run_until*() call
};

/// A message a member's pipeline delivered to its application.
struct Delivery {
  std::size_t from = kNoMember;  ///< member whose datagram it was (by network source address)
  std::uint32_t sender = 0;      ///< sender id in the header
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;         ///< Packet::seq (0 without ordering.seq)
  std::uint16_t flags = 0;
  std::uint64_t time_ns = 0;
  std::vector<std::uint8_t> payload;
};

/// An event a stage of a member's pipeline raised.
struct RecordedEvent {
  std::uint64_t time_ns = 0;
  EventType type = EventType::gap_skipped;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t count = 0;
  std::string stage;
  std::uint64_t token = 0;   ///< Event::token (delivery_met / delivery_failed)
  MemberSet members{};       ///< Event::members (Group slots)
  EventCause cause = EventCause::none;  ///< Event::cause (gap_skipped)
  std::string detail;        ///< Event::detail (module_fault)
};

/// A message the application of a member handed to send(). Its Packet::token (reported in
/// delivery_met / delivery_failed events) is its 1-based index in sent(member).
struct SentMessage {
  std::uint64_t time_ns = 0;
  std::uint32_t epoch = 0;  ///< the incarnation that sent it
  std::uint16_t flags = 0;
  bool accepted = false;    ///< false: the member was down or the pool exhausted
  std::vector<std::uint8_t> payload;
  /// The end of its lifetime (its own, else the channel's; 0 = none): no member may
  /// deliver it later than this (the simulator's clocks agree).
  std::uint64_t expires_ns = 0;
};

/// What the network did to datagrams, counted per receiving member (or in total).
struct LinkStats {
  std::uint64_t copies = 0;       ///< datagram copies addressed to the member
  std::uint64_t lost = 0;         ///< lost by the link
  std::uint64_t partitioned = 0;  ///< blocked by a partition
  std::uint64_t duplicated = 0;   ///< extra copies created by the link
  std::uint64_t reordered = 0;    ///< copies given an extra reordering delay
  std::uint64_t corrupted = 0;    ///< copies with bits flipped
  std::uint64_t arrived = 0;      ///< copies handed to the member's pipeline
  std::uint64_t corrupted_arrived = 0;  ///< of those, how many were corrupted
  std::uint64_t to_down_member = 0;     ///< arrived while the member was down
  std::uint64_t oversize = 0;           ///< larger than the member's buffers
  std::uint64_t pool_exhausted = 0;     ///< no buffer to receive into
  std::uint64_t unroutable = 0;         ///< unicast to an address no member has (counted at the sender)

  LinkStats& operator+=(const LinkStats& o) noexcept;
};

/// A plan with the given software stages (index 0 nearest the application), channel
/// `channel_id`, and the transport defaults the simulator uses. For tests and tools.
Plan make_plan(std::vector<PlannedStage> stages, std::string channel_id = "sim");
/// One planned software stage.
PlannedStage stage(std::string kind, std::map<std::string, std::string, std::less<>> params = {});

class Network {
 public:
  explicit Network(Config config);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // --- members --------------------------------------------------------------------------

  /// Add a member running `plan`, built with `registry` (which must outlive the network).
  /// The member is up at once. Throws tmc::Error when the pipeline cannot be built (the
  /// message names the stage and parameter).
  std::size_t add_member(const Plan& plan, const Registry& registry = Registry::builtin());
  /// Take the member down: its pipeline and pool are destroyed; datagrams that reach it
  /// are counted under to_down_member; its timers never fire. Recorded logs stay.
  /// graceful = false is a crash; true first runs the stages' on_stop (goodbyes go out).
  void leave(std::size_t member, bool graceful = false);
  /// Bring a member back with a fresh pipeline, a new epoch and the same sender id.
  void rejoin(std::size_t member);
  /// leave() then rejoin().
  void restart(std::size_t member) {
    leave(member);
    rejoin(member);
  }
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  [[nodiscard]] bool is_up(std::size_t member) const;
  [[nodiscard]] std::uint32_t sender_id(std::size_t member) const;
  [[nodiscard]] std::uint32_t epoch(std::size_t member) const;  ///< current incarnation's
  [[nodiscard]] std::uint32_t ip(std::size_t member) const;     ///< host order
  /// The member with this sender id (any incarnation), or kNoMember.
  [[nodiscard]] std::size_t member_of_sender(std::uint32_t sender_id) const noexcept;

  // --- links and partitions ---------------------------------------------------------------

  void set_default_link(const LinkParams& link) { config_.link = link; }
  /// Override the link from `from` to `to` (one direction).
  void set_link(std::size_t from, std::size_t to, const LinkParams& link);
  /// Override every link toward `to` (e.g. loss only toward member 2).
  void set_link_to(std::size_t to, const LinkParams& link);
  /// Override every link from `from`.
  void set_link_from(std::size_t from, const LinkParams& link);
  /// Remove every override.
  void clear_link_overrides();
  /// The parameters used for from -> to: the pair override, else the destination's, else
  /// the source's, else the default.
  [[nodiscard]] const LinkParams& link(std::size_t from, std::size_t to) const;

  /// Members in different groups cannot reach each other during [from_ns, until_ns).
  /// Members not named in any group are unaffected.
  void partition(std::vector<std::vector<std::size_t>> groups, std::uint64_t from_ns, std::uint64_t until_ns = kForever);
  /// Cut a -> b (and b -> a unless `one_way`) during [from_ns, until_ns).
  void cut(std::size_t a, std::size_t b, std::uint64_t from_ns, std::uint64_t until_ns = kForever, bool one_way = false);
  /// Member `i` is not running during [from_ns, from_ns + for_ns) (a descheduled process):
  /// its timer, the datagrams that reach it and its application's sends wait until then; at
  /// the end its timer fires first, then it reads what arrived, in arrival order.
  void pause(std::size_t i, std::uint64_t from_ns, std::uint64_t for_ns);
  /// End every partition and cut now.
  void heal_all();
  /// Whether a datagram leaving `from` toward `to` at `t_ns` is blocked by a partition.
  [[nodiscard]] bool blocked(std::size_t from, std::size_t to, std::uint64_t t_ns) const;

  // --- traffic ----------------------------------------------------------------------------

  /// The member's application sends `bytes` now. Returns false (and still records it, with
  /// accepted = false) when the member is down, the payload is too large, or its pool is
  /// exhausted.
  bool send(std::size_t member, std::span<const std::uint8_t> bytes, std::uint16_t flags = 0);
  /// The same with a lifetime of its own (a per-message 'lifetime us'; needs lifetime.deadline).
  bool send_with_lifetime(std::size_t member, std::span<const std::uint8_t> bytes, std::uint64_t lifetime_ns,
                          std::uint16_t flags = 0);
  /// The member's application forgets message `token` (its 1-based index in sent(member)),
  /// or it and every earlier one (Channel::forget). Nothing when the member is down.
  void forget(std::size_t member, std::uint64_t token, ForgetScope scope = ForgetScope::message);
  /// Schedule a send at virtual time `t_ns` (>= now).
  void schedule_send(std::uint64_t t_ns, std::size_t member, std::vector<std::uint8_t> bytes, std::uint16_t flags = 0);
  /// Run `fn` at virtual time `t_ns` (>= now), in order with the other events: to change
  /// links, restart members, or send from inside a scenario.
  void schedule(std::uint64_t t_ns, std::function<void()> fn);

  /// A raw datagram reaches member `to` at virtual time `t_ns` (>= now) as if sent from
  /// member `from`'s address: forged, replayed or flooded traffic for attacker scenarios.
  /// It bypasses links and partitions and draws nothing from the network's random stream.
  void inject(std::uint64_t t_ns, std::size_t from, std::size_t to, std::vector<std::uint8_t> bytes);
  /// Called with every datagram a member transmits, before routing (to capture traffic
  /// for a replay); nullptr stops it.
  void set_tap(std::function<void(std::size_t from, std::span<const std::uint8_t>)> tap) { tap_ = std::move(tap); }
  /// Called with every datagram copy that reaches an up member, before its pipeline reads
  /// it (to count what each member has to process); nullptr stops it.
  void set_arrival_tap(std::function<void(std::size_t to, std::span<const std::uint8_t>)> tap) {
    arrival_tap_ = std::move(tap);
  }
  /// Decides, for every datagram copy routed from member `from` to member `to`, whether the
  /// link loses it on purpose (counted as lost), before the link's random faults and without
  /// drawing from the random stream: loss aimed at particular datagrams (a sender's first
  /// message, its first ack). nullptr stops it.
  void set_drop_filter(std::function<bool(std::size_t from, std::size_t to, std::span<const std::uint8_t>)> f) {
    drop_filter_ = std::move(f);
  }

  // --- running ----------------------------------------------------------------------------

  /// Process every event due at or before `t_ns`, then set now to `t_ns`. Returns false when
  /// it stopped early at the event limit (Config::max_events_per_run).
  bool run_until(std::uint64_t t_ns);
  /// Process events until none is left (idle) or the next one lies beyond `max_t_ns`, or the
  /// event limit is hit. Returns true iff the network went idle: no datagram in flight, no
  /// scheduled send or call, no armed stage timer.
  bool run_until_idle(std::uint64_t max_t_ns);
  [[nodiscard]] std::uint64_t now_ns() const noexcept { return now_ns_; }
  [[nodiscard]] bool idle() const noexcept;
  [[nodiscard]] std::uint64_t events_processed() const noexcept { return events_processed_; }
  [[nodiscard]] std::size_t pending_events() const noexcept;

  // --- observing --------------------------------------------------------------------------

  [[nodiscard]] const std::vector<Delivery>& deliveries(std::size_t member) const;
  [[nodiscard]] const std::vector<RecordedEvent>& events(std::size_t member) const;
  [[nodiscard]] const std::vector<SentMessage>& sent(std::size_t member) const;
  /// Counters of the member's current pipeline (those of previous incarnations are kept
  /// in previous_counters()). Empty while the member is down.
  [[nodiscard]] CounterSnapshot counters(std::size_t member) const;
  [[nodiscard]] const std::vector<CounterSnapshot>& previous_counters(std::size_t member) const;
  /// Gauges of the member's current pipeline, read now (Stage::read_gauges); empty while
  /// the member is down. Not part of fingerprint(): reading them changes nothing.
  [[nodiscard]] GaugeSnapshot gauges(std::size_t member) const;
  [[nodiscard]] std::size_t held_packets(std::size_t member) const;
  [[nodiscard]] std::uint32_t pool_in_use(std::size_t member) const;
  /// Bytes the member's pool holds in large packets (messages above one datagram); 0 down.
  [[nodiscard]] std::uint64_t pool_large_bytes(std::size_t member) const;
  [[nodiscard]] const LinkStats& link_stats(std::size_t member) const;  ///< inbound to member
  [[nodiscard]] LinkStats total_link_stats() const;
  /// The member's pipeline (for white-box tests); nullptr while down.
  [[nodiscard]] Pipeline* pipeline(std::size_t member);

  /// A 64-bit hash of everything observable: per member its deliveries, events, sends,
  /// counters and link stats, plus the current time. Equal seeds and calls give equal values.
  [[nodiscard]] std::uint64_t fingerprint() const;

  /// Write one line per network event (send, drop, arrival, delivery, timer) to `out`, or
  /// stop tracing with nullptr. For replaying a failing seed by hand.
  void set_trace(std::ostream* out) noexcept { trace_ = out; }

  /// Called with fingerprint() when the network is destroyed (after everything it ran):
  /// lets a test harness pin the fingerprints of fixed seeds without touching scenarios.
  void set_fingerprint_sink(std::function<void(std::uint64_t)> sink) { fingerprint_sink_ = std::move(sink); }

 private:
  struct Member;
  class Sink;
  struct QueuedEvent;
  enum class EventKind : std::uint8_t { arrival, timer, app_send, call };

  Member& member(std::size_t i);
  const Member& member(std::size_t i) const;
  void build(Member& m);
  void start(std::size_t i);
  void push(QueuedEvent ev);
  void process(QueuedEvent& ev);
  void rearm(std::size_t i);
  void on_transmit(std::size_t i, Packet* p) noexcept;
  void route(std::size_t from, std::size_t to, const std::uint8_t* bytes, std::size_t n);
  void on_arrival(QueuedEvent& ev);
  void on_deliver(std::size_t i, Packet* p) noexcept;
  void on_event(std::size_t i, const Event& e) noexcept;
  bool do_send(std::size_t i, const std::uint8_t* bytes, std::size_t n, std::uint16_t flags,
               std::uint64_t lifetime_ns = 0);

  struct Partition {
    std::uint64_t from_ns = 0;
    std::uint64_t until_ns = kForever;
    std::vector<int> group_of;  ///< per member index; -1 = unaffected
    std::vector<std::pair<std::size_t, std::size_t>> cuts;  ///< directed pairs
  };

  Config config_;
  Rng rng_;
  std::uint64_t now_ns_ = 0;
  std::uint64_t next_order_ = 0;
  std::uint64_t events_processed_ = 0;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<QueuedEvent> queue_;  ///< a binary heap, earliest (time, order) on top
  std::map<std::pair<std::size_t, std::size_t>, LinkParams> pair_links_;
  std::map<std::size_t, LinkParams> to_links_;
  std::map<std::size_t, LinkParams> from_links_;
  std::vector<Partition> partitions_;
  LinkStats unroutable_;  ///< unicast datagrams that found no member
  std::ostream* trace_ = nullptr;
  std::function<void(std::uint64_t)> fingerprint_sink_;
  std::function<void(std::size_t, std::span<const std::uint8_t>)> tap_;
  std::function<void(std::size_t, std::span<const std::uint8_t>)> arrival_tap_;
  std::function<bool(std::size_t, std::size_t, std::span<const std::uint8_t>)> drop_filter_;
};

}  // namespace tmc::sim
