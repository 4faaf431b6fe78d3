// The stage interface: every primitive is a deterministic state machine.
//
// Terms
//   stage     one primitive instance in one channel's pipeline (e.g. "checksum.crc32c").
//   kind      the registered name of a stage type: "<category>.<name>".
//   pipeline  the ordered stages of a channel; index 0 is nearest the application.
//   shell     what drives a pipeline: the libuv runtime, or the simulator.
//
// Inputs:  on_send (a message from above), on_receive (a packet from below), on_tick (a
//          timer the stage armed is due), on_start, on_stop. All carry `io.now_ns()`.
// Outputs, all through StageIo: down() (toward the network), up() (toward the application),
//          drop(), arm_timer(), cancel_timer(), count(), notify(); pool packets from alloc(),
//          alloc_small(), clone(), alloc_large(); the view from group(); redirect_to_group().
//
// A stage never reads a clock, touches a socket, sleeps, spawns a thread, or uses a
// process-wide random source: time comes from `io.now_ns()` and randomness from the
// seed in StageEnv. Given the same inputs, a stage produces the same outputs, which is
// what lets the simulator replay a failing seed exactly.
//
// Lifecycle: factory() -> configure() (cold, may allocate) -> on_start() -> hot calls ->
// on_stop() -> destructor. on_send, on_receive, on_tick are hot: noexcept, nothing allocated.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tmc/group.hpp"
#include "tmc/packet.hpp"
#include "tmc/status.hpp"

namespace tmc {

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

enum class ParamType : std::uint8_t { boolean, integer, real, string, string_list };
/// "bool", "int", "real", "string", "list of strings" (the manifest schema's words).
std::string_view param_type_name(ParamType t) noexcept;

/// A resolved parameter value. A string_list travels in a plan as comma-joined text
/// ("a,b"; "" is the empty list) and reaches the stage as the list.
using ParamValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::string>>;
std::string param_value_to_string(const ParamValue& v);

/// One declared parameter of a stage kind: name, type, default, doc and what values it
/// allows, in the manifest schema's vocabulary (src/runtime/manifest/reflect.hpp's FieldMeta):
/// an integer range [min, max], a real range (lo, hi] or [lo, hi], a list of allowed words
/// for a string (or for every item of a string_list). The registry validates plan values
/// and the default against it, fills the default in, and docs/stages.md is generated from
/// it; a stage reads typed values and restates neither range nor default.
struct ParamSpec {
  std::string_view name;
  ParamType type;
  std::string_view default_value;  ///< in YAML spelling: "true", "64", "0.5", "strict", "a,b"
  std::string_view doc;
  std::int64_t min = std::numeric_limits<std::int64_t>::min();  ///< integer: smallest allowed
  std::int64_t max = std::numeric_limits<std::int64_t>::max();  ///< integer: largest allowed
  double lo = -std::numeric_limits<double>::infinity();         ///< real: lower bound
  double hi = std::numeric_limits<double>::infinity();          ///< real: upper bound
  bool lo_open = false;                                         ///< real: lo itself not allowed
  std::span<const std::string_view> one_of = {};  ///< string / list items: the allowed words
};

/// The allowed values of `p` as text: "1..65536", "at least 1", "[0, 1]", "strict | drop-stale";
/// empty when any value of its type is allowed.
std::string param_allowed_text(const ParamSpec& p);

/// A stage's configured parameters, already validated against its ParamSpecs and with
/// defaults filled in by the registry.
class Params {
 public:
  void set(std::string name, ParamValue v) { values_[std::move(name)] = std::move(v); }
  [[nodiscard]] bool has(std::string_view name) const;
  [[nodiscard]] bool get_bool(std::string_view name, bool fallback = false) const;
  [[nodiscard]] std::int64_t get_int(std::string_view name, std::int64_t fallback = 0) const;
  [[nodiscard]] double get_real(std::string_view name, double fallback = 0.0) const;
  [[nodiscard]] std::string get_string(std::string_view name, std::string fallback = {}) const;
  /// Typed reads of a declared parameter: Registry::resolve_params filled every one (with
  /// its default if the plan gave none) and checked its range, so a stage reads its value
  /// here and keeps no default of its own. An undeclared name reads as false / 0 / empty.
  [[nodiscard]] bool boolean(std::string_view name) const { return get_bool(name); }
  [[nodiscard]] std::int64_t integer(std::string_view name) const { return get_int(name); }
  [[nodiscard]] double real(std::string_view name) const { return get_real(name); }
  [[nodiscard]] const std::string& text(std::string_view name) const;
  [[nodiscard]] const std::vector<std::string>& list(std::string_view name) const;
  [[nodiscard]] const std::map<std::string, ParamValue, std::less<>>& values() const { return values_; }

 private:
  std::map<std::string, ParamValue, std::less<>> values_;
};

// ---------------------------------------------------------------------------------------
// Events a stage reports to the application (rare; cold path of the shell)
// ---------------------------------------------------------------------------------------

enum class EventType : std::uint8_t {
  gap_skipped,      ///< ordering gave up waiting for [seq, seq+count) of sender
  epoch_changed,    ///< sender restarted with a new epoch
  delivery_met,     ///< a reliable message met its acknowledgment requirement
  delivery_failed,  ///< a reliable message ran out of retries
  member_joined,    ///< a member was heard for the first time (or again after failing)
  member_left,      ///< a member said goodbye
  slow_member,      ///< flow control: `members` held the channel back too long
  member_failed,    ///< a member was not heard within the failure timeout
  member_restarted, ///< a member came back with a new epoch
  sequencer_changed,  ///< group ordering: a new sequencer took over (`sender` names it)
  member_refused,     ///< the view is full ('max members'): `sender` was heard but got no slot
  delivery_forgotten,  ///< the application forgot a message before its outcome was known
  delivery_expired,    ///< a message's lifetime ran out before its outcome was known
};
std::string_view event_type_name(EventType t) noexcept;

/// Why a gap was skipped (Event::cause of gap_skipped); none for every other event.
enum class EventCause : std::uint8_t {
  none = 0,
  timeout = 1,    ///< ordering waited its longest for the gap to fill
  released = 2,   ///< the sender settled the missing numbers without this member: it
                  ///< forgot them, they expired, or it gave up on them (its outcome says which)
  forgotten = 3,  ///< the sender said it forgot them
  expired = 4,    ///< their lifetime ran out
};
std::string_view event_cause_name(EventCause c) noexcept;

/// What Stage::on_forget() is asked to forget: one message, or it and every one before it.
enum class ForgetScope : std::uint8_t { message, and_earlier };

struct Event {
  EventType type;
  std::uint32_t sender = 0;
  std::uint32_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t count = 0;
  std::string_view stage;  ///< kind of the stage that raised it (static storage)
  /// delivery_met / delivery_failed: the Packet::token the shell gave the message at send.
  std::uint64_t token = 0;
  /// Members concerned, as Group slots: who acked (met), who never acked (failed), who
  /// is slow, who joined/left. The shell turns it into names with Group::names().
  MemberSet members{};
  /// gap_skipped: why (EventCause::none from stages that do not say).
  EventCause cause = EventCause::none;
};

// ---------------------------------------------------------------------------------------
// Drop reasons: one list, used for counters "drops.<name>"
// ---------------------------------------------------------------------------------------

#define TMC_DROP_MAP(X)                                                        \
  X(malformed, "packet failed wire validation")                              \
  X(foreign_channel, "packet belongs to another channel")                    \
  X(own_packet, "packet was sent by this endpoint (multicast loopback)")     \
  X(stale, "sequence number not newer than the last delivered")              \
  X(duplicate, "already delivered")                                          \
  X(checksum, "CRC32C mismatch")                                             \
  X(missing_checksum, "channel requires error checking; packet has none")    \
  X(buffer_full, "a bounded buffer was full")                                \
  X(pool_exhausted, "no packet buffer available")                            \
  X(injected, "fault injection")                                             \
  X(stale_epoch, "packet from a retired incarnation of its sender")          \
  X(no_receiver, "channel is send-only")                                     \
  X(too_large, "message larger than the channel allows")                     \
  X(unsupported, "packet uses a feature this endpoint lacks")                \
  X(incomplete, "message missing fragments when reassembly gave up")         \
  X(reassembly_full, "reassembly memory limit reached")                      \
  X(not_in_view, "packet from a member outside the current view")            \
  X(send_failed, "reliable message given up after its retry budget")              \
  X(auth, "datagram failed authentication (no or wrong key, tampered, replayed)")

enum class DropReason : std::uint8_t {
#define TMC_DROP_ENUM(name, text) name,
  TMC_DROP_MAP(TMC_DROP_ENUM)
#undef TMC_DROP_ENUM
      count_
};
inline constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::count_);
std::string_view drop_reason_name(DropReason r) noexcept;
std::string_view drop_reason_text(DropReason r) noexcept;

// ---------------------------------------------------------------------------------------
// The stage's view of its pipeline
// ---------------------------------------------------------------------------------------

class StageIo {
 public:
  /// Virtual time of the current input, in nanoseconds (monotonic; shell-defined epoch).
  [[nodiscard]] std::uint64_t now_ns() const noexcept { return *now_ns_; }
  /// Pass toward the network (the next stage's on_send, or the transport).
  virtual void down(Packet* p) noexcept = 0;
  /// Pass toward the application (the previous stage's on_receive, or delivery).
  virtual void up(Packet* p) noexcept = 0;
  /// Discard, counting it under drops.<reason>.
  virtual void drop(Packet* p, DropReason reason) noexcept = 0;
  /// Ask for on_tick at or after `deadline_ns`; replaces this stage's previous deadline.
  /// Any value arms the timer: a deadline of 0 is taken as 1, because a shell's clock may
  /// start at 0 (the simulator's does) and "due now" must not read as "no deadline".
  /// Use cancel_timer() to disarm.
  virtual void arm_timer(std::uint64_t deadline_ns) noexcept = 0;
  /// Disarm this stage's timer (no on_tick until the next arm_timer()).
  virtual void cancel_timer() noexcept = 0;
  /// Add `n` to this stage's counter `index` (index into its StageInfo::counters).
  virtual void count(std::size_t index, std::uint64_t n = 1) noexcept = 0;
  /// Report an event to the application.
  virtual void notify(const Event& e) noexcept = 0;
  /// A fresh packet for control traffic (acks, heartbeats) or copies; nullptr if exhausted.
  virtual Packet* alloc() noexcept = 0;
  /// A packet with a buffer of kSmallPacketBytes (no headroom) for a received message that
  /// fits; see PacketPool::alloc_small(). Never for one that will be sent.
  virtual Packet* alloc_small() noexcept { return alloc(); }
  /// A copy of `p`; nullptr if exhausted.
  virtual Packet* clone(const Packet& p) noexcept = 0;
  /// A packet whose buffer holds `payload_bytes` of payload after kHeadroom, for messages
  /// larger than a pool buffer (reassembly). Allocates (cold: once per large message);
  /// nullptr past the pool's byte budget. Release it like any packet.
  virtual Packet* alloc_large(std::uint32_t payload_bytes) noexcept = 0;
  /// The pipeline's membership view. Only the membership stage writes it.
  virtual Group& group() noexcept = 0;
  /// How full the receiving application is, in [0, 1] (a load hint): the fill of the
  /// shell's receive queue, or what the application said (Channel::hint_load), whichever
  /// is higher. 0 when the shell knows nothing. flow.credit shrinks the window it
  /// advertises with it, so senders slow down before the receiver drops.
  virtual double load() const noexcept { return 0.0; }
  /// From now on, every packet this pipeline transmits to the unicast address ip:port (host
  /// order) goes to the channel's group instead, including copies that stages below the
  /// caller keep and send again (reliability's retransmissions were addressed when they
  /// were first sent). ip 0 ends the redirection. ordering.group uses it when it gives up a
  /// network sequencer: what reliability still repairs then reaches the members directly.
  virtual void redirect_to_group(std::uint32_t ip, std::uint16_t port) noexcept {
    (void)ip;
    (void)port;
  }

 protected:
  explicit StageIo(const std::uint64_t* now_ns) noexcept : now_ns_(now_ns) {}
  ~StageIo() = default;
  const std::uint64_t* now_ns_;  ///< the shell's clock for the current input
};

/// What a stage knows about the endpoint it runs in (fixed for the pipeline's life).
struct StageEnv {
  std::uint32_t channel = 0;  ///< wire::channel_hash of the channel id
  std::uint32_t sender = 0;   ///< this endpoint's sender id
  std::uint32_t epoch = 0;    ///< this endpoint's incarnation (random on join)
  std::uint64_t seed = 0;     ///< for stages that need randomness (e.g. faults)
  /// 64 fresh random bits per incarnation, independent of `epoch` (the simulator derives
  /// them from its seed); 0 where the shell gives none. security.aead starts its nonce
  /// counter there, so that two incarnations drawing the same epoch still do not reuse nonces.
  std::uint64_t incarnation_random = 0;
  std::uint32_t max_payload_bytes = 0;  ///< largest payload one datagram may carry
  /// The shell delivers a datagram sent to a member's source address (Group's MemberInfo
  /// ip/port, learned from its heartbeats) to that member's pipeline of this channel, so a
  /// stage may address feedback to one member instead of the group.
  bool unicast_reachable = false;
};

class Stage {
 public:
  virtual ~Stage() = default;

  /// Cold. Read parameters; report every problem into `errors` (one string each, naming
  /// the parameter) and return false, or return true.
  virtual bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) = 0;

  /// Hot. A message (or packet) going toward the network. Default: pass it down.
  virtual void on_send(Packet* p, StageIo& io) noexcept { io.down(p); }
  /// Hot. A packet coming from the network. Default: pass it up.
  virtual void on_receive(Packet* p, StageIo& io) noexcept { io.up(p); }
  /// A timer armed with io.arm_timer() is due.
  virtual void on_tick(StageIo& io) noexcept { (void)io; }
  /// Once, after the pipeline is built and before any other hot call (the shell's clock
  /// is in io.now_ns()): announce yourself, arm first timers.
  virtual void on_start(StageIo& io) noexcept { (void)io; }
  /// Once, when the shell retires the pipeline (close or update): say goodbye, release
  /// what you can. Packets passed down here are still transmitted.
  virtual void on_stop(StageIo& io) noexcept { (void)io; }
  /// The application forgot the message with Packet::token `token` (scope message), or it
  /// and every message given an earlier token (scope and_earlier): a stage that keeps such
  /// messages (a retransmission copy, a queue waiting for credit or a window) lets them go
  /// now without sending them again, and reliability reports each one's outcome as
  /// delivery_forgotten. Cold; rare. Default: nothing to forget.
  virtual void on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept {
    (void)token;
    (void)scope;
    (void)io;
  }
  /// Packets held by this stage (reorder buffers, queues), for memory-bound assertions.
  [[nodiscard]] virtual std::size_t held_packets() const noexcept { return 0; }
  /// After configure(): the most pool packets this stage may hold at once when its windows
  /// and queues are full as configured (a reliability window's copies, a reorder buffer).
  /// The shell sizes the packet pool's ceiling with the sum over the pipeline, so that a
  /// full window never starves the send and receive paths of buffers. 0 = only transient.
  [[nodiscard]] virtual std::size_t max_held_packets() const noexcept { return 0; }
  /// Application messages this stage has queued on the send path because it has no room
  /// for them yet (a full sending window, no flow credit, an empty token bucket); not the
  /// copies it keeps for retransmission. The shell stops feeding the pipeline while the
  /// sum over the stages is large, so a full window pushes back on send() (which then
  /// blocks or returns WOULD_BLOCK) instead of queueing without bound inside a stage.
  [[nodiscard]] virtual std::size_t send_backlog() const noexcept { return 0; }
  /// Cold. The stage's current state as numbers: out[i] is the value of its
  /// StageInfo::gauges[i] (out.size() is their count), as of the stage's last input. The
  /// shell calls it for stats() and the live stat file, never on the hot path; a read is
  /// cheap and exact (a field or a short loop over fixed state), allocates nothing and
  /// changes nothing.
  virtual void read_gauges(std::span<double> out) const noexcept { (void)out; }
};

/// A stage kind's fixed description (Click's element doc block, as data).
struct CounterSpec {
  std::string_view name;  ///< full name, e.g. "ordering.stale_dropped"
  std::string_view doc;
};

/// Declares a stage's counters once, in its .cpp (the #define's lines continued with
/// backslashes):
///
///   #define TMC_SEQ_COUNTERS(X, P)
///     X(P, stamped, "data packets stamped on send")
///     X(P, no_room, "data packets dropped on send: no headroom for the extension")
///   TMC_STAGE_COUNTERS("ordering.seq_", TMC_SEQ_COUNTERS);
///
/// expands to `enum Counter : std::size_t { stamped, no_room }` (the indexes io.count()
/// takes) and `kCounters`, the CounterSpecs "ordering.seq_stamped", "ordering.seq_no_room"
/// in the same order, so an index and its name cannot drift apart. StageInfo::counters is
/// then counter_list(kCounters).
#define TMC_COUNTER_ENUM_(P, id, doc) id,
#define TMC_COUNTER_SPEC_(P, id, doc) ::tmc::CounterSpec{P #id, doc},
#define TMC_STAGE_COUNTERS(prefix, LIST)                        \
  enum Counter : std::size_t { LIST(TMC_COUNTER_ENUM_, prefix) }; \
  inline constexpr ::tmc::CounterSpec kCounters[] = {LIST(TMC_COUNTER_SPEC_, prefix)}

inline std::vector<CounterSpec> counter_list(std::span<const CounterSpec> specs) {
  return {specs.begin(), specs.end()};
}

/// One number a stage reports about its current state (a window, a queue's depth, an RTT
/// estimate), read by Stage::read_gauges() when the shell takes a snapshot. Unlike a counter
/// it may go down; it costs nothing on the hot path.
struct GaugeSpec {
  std::string_view name;  ///< full name, e.g. "congestion.window_bytes"
  std::string_view doc;
};

/// Declares a stage's gauges once, in its .cpp, like TMC_STAGE_COUNTERS:
///
///   #define TMC_WINDOW_GAUGES(X, P)
///     X(P, window_bytes, "the congestion window, in datagram bytes")
///     X(P, in_flight_bytes, "datagram bytes sent and not yet acknowledged")
///   TMC_STAGE_GAUGES("congestion.", TMC_WINDOW_GAUGES);
///
/// expands to `enum Gauge : std::size_t { window_bytes, in_flight_bytes }` (the indexes
/// read_gauges() fills) and `kGauges`, the GaugeSpecs "congestion.window_bytes",
/// "congestion.in_flight_bytes" in the same order. StageInfo::gauges is then
/// gauge_list(kGauges).
#define TMC_GAUGE_ENUM_(P, id, doc) id,
#define TMC_GAUGE_SPEC_(P, id, doc) ::tmc::GaugeSpec{P #id, doc},
#define TMC_STAGE_GAUGES(prefix, LIST)                        \
  enum Gauge : std::size_t { LIST(TMC_GAUGE_ENUM_, prefix) }; \
  inline constexpr ::tmc::GaugeSpec kGauges[] = {LIST(TMC_GAUGE_SPEC_, prefix)}

inline std::vector<GaugeSpec> gauge_list(std::span<const GaugeSpec> specs) { return {specs.begin(), specs.end()}; }

/// A wire extension a stage owns (docs/wire-format.md's table is generated from these).
struct WireExtension {
  std::uint8_t type = 0;           ///< wire::Ext for built-ins; 128..255 for modules
  std::string_view name = {};      ///< "seq"
  std::size_t body_bytes = 0;      ///< body length, or the largest it may be; 0: unbounded
  std::string_view carried_on = {};  ///< which packets carry it: "data", "kind heartbeat"
  std::string_view body = {};      ///< what the body holds, one line (with its length)
};

/// Where the compiler places a stage that the manifest requests by kind (`stages:`), top
/// to bottom relative to the built-ins; tmc/module_abi.h's enum tmc_layer says exactly where
/// each sits. Built-ins are placed by the compiler's canonical order and leave it `none`.
enum class StageLayer : std::uint8_t { none, ordering, message, datagram, repair, bottom };
/// "ordering", "message", "datagram", "repair", "bottom" ("" for none).
std::string_view stage_layer_name(StageLayer l) noexcept;

struct StageInfo {
  std::string_view kind = {};      ///< "ordering.fifo"
  std::string_view synopsis = {};  ///< one line
  std::string_view notes = {};     ///< a paragraph: behaviour, wire extension, caveats
  std::vector<ParamSpec> params = {};
  std::vector<CounterSpec> counters = {};
  /// What read_gauges() fills, in its order (docs/stages.md lists them).
  std::vector<GaugeSpec> gauges = {};
  std::function<std::unique_ptr<Stage>()> factory = {};

  // Placement facts: what the compiler needs to place, cost and explain the stage, so
  // that adding a stage touches its own folder and one registration line.

  /// Bytes the stage adds to every data datagram it passes down: its extension with the
  /// 2-byte extension header, or a trailer. The compiler takes them off the payload room.
  std::size_t wire_bytes_per_datagram = 0;
  /// Bytes it adds for each message a datagram carries (a batch's record header).
  std::size_t wire_bytes_per_message = 0;
  /// The manifest property (its snake_case alias) the stage serves: "reliability".
  std::string_view serves = {};
  /// Kinds that must be in the same pipeline below it (Click's ELEMENT_REQUIRES): the
  /// stages whose work it consumes, e.g. the sequence numbers ordering.fifo orders by.
  std::vector<std::string_view> requires_below = {};
  /// Kinds that must be in the same pipeline above it (whose traffic it governs).
  std::vector<std::string_view> requires_above = {};
  /// Whether it honours per-message manifests (flags a message carries in the base header).
  bool per_message = false;
  /// The wire extensions it owns.
  std::vector<WireExtension> extensions = {};
  /// Where a stage requested by kind is placed (module stages); see StageLayer.
  StageLayer layer = StageLayer::none;
  /// Where the kind comes from, for `tmc plan`: empty for a built-in, else e.g.
  /// "module fec 1.0.0, sha256 3f2a..." (set by the module loader).
  std::string_view provenance = {};
};

/// Kind name -> StageInfo. Built-ins register through register_builtin_stages(); a program
/// may build its own Registry and add() more; tmc::ModuleSet layers kinds loaded from module
/// objects over the built-ins (tmc/modules.hpp).
class Registry {
 public:
  /// A registry holding every built-in stage.
  static const Registry& builtin();

  /// Refuses a kind without a name or factory, a kind registered twice, and a parameter
  /// declared twice or whose default its own type or range rejects.
  Status add(StageInfo info);
  [[nodiscard]] const StageInfo* find(std::string_view kind) const noexcept;
  [[nodiscard]] std::vector<const StageInfo*> all() const;

  /// Check `given` (name -> YAML-spelled value) against the kind's ParamSpecs and fill
  /// defaults. An unknown name, an ill-typed value and a value outside the parameter's
  /// range or words each produce one error string naming the stage, the parameter and
  /// what it allows.
  [[nodiscard]] bool resolve_params(const StageInfo& info, const std::map<std::string, std::string, std::less<>>& given,
                                    Params& out, std::vector<std::string>& errors) const;

 private:
  std::map<std::string, StageInfo, std::less<>> kinds_;
};

/// Registers every built-in primitive (one line per stage, in src/primitives/builtin.cpp).
void register_builtin_stages(Registry& r);

/// docs/stages.md, generated from the registry: one section per kind with synopsis,
/// parameters (with their allowed values), counters, gauges, placement facts and notes.
std::string stages_markdown(const Registry& r);

/// docs/wire-format.md's extension table, generated from every kind's `extensions`.
std::string wire_extensions_markdown(const Registry& r);

}  // namespace tmc
