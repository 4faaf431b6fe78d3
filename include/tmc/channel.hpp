// Channels: the application's handle on one multicast group with declared guarantees
// (the paper's Listing 1 and §3.1).
//
//   auto c = tmc::Channel::open(tmc::ManifestBuilder("2PC").group("239.0.0.2").build());
//   c.send("hello");
//   c.update(tmc::Value(tmc::Value::Map{{"error checking", true}}));
//   if (auto m = c.receive(std::chrono::seconds(1))) use(m->payload());
//   c.close();  // flushes queued sends, then leaves the group
//
// Terms
//   Runtime   one libuv event loop on its own thread. Several channels share one runtime
//             (by default the process-wide Runtime::default_runtime()); every socket,
//             pipeline and stage of those channels lives on that thread.
//   Channel   one manifest compiled into a Plan and a pipeline of stages, plus one UDP
//             socket. Moving a Channel moves the handle; the channel itself stays put.
//
// Threads (what may be called from where)
//   - send, receive, try_receive, update, on_message, on_event, members, stats, plan,
//     manifest and close may be called from any thread, concurrently. Calls from several
//     threads on one channel are serialised internally.
//   - Pipelines and sockets are driven by the loop thread, except that send() may run the
//     pipeline and the sendmmsg itself on the calling thread when the loop is not busy
//     with the channel (see OpenOptions::inline_send), and a blocked receive() reads the
//     socket and runs the pipeline itself (OpenOptions::inline_receive); a channel's lock
//     makes sure no two of them run it at the same time, so stages still see one caller
//     at a time.
//   - Handlers (on_message, on_event) run on the runtime's loop thread, one at a time.
//     They must not block for long: every channel of the runtime waits while they run.
//   - From inside a handler: send() queues and returns (a sync send does not wait there,
//     because the loop cannot wait for itself; it returns WOULD_BLOCK when the send queue
//     is full instead of blocking); update() compiles and schedules the swap, which
//     happens right after the handler returns; close() marks the channel closed and
//     returns at once; the flush and the leave happen after the handler returns; stats()
//     and members() answer directly.
//   - A Channel object itself (the handle) is not meant to be moved or destroyed while
//     another thread is using it, like any C++ object.
//
// Failure promise (from libuv): when a call fails it has no effect — a send that returns
// an error queued nothing, an update that returns an error left the old pipeline in place.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tmc/capabilities.hpp"
#include "tmc/manifest.hpp"
#include "tmc/message.hpp"
#include "tmc/module_repository.hpp"
#include "tmc/plan.hpp"
#include "tmc/stage.hpp"
#include "tmc/status.hpp"

namespace tmc {


namespace detail {
class RuntimeLoop;
class ChannelCore;
}  // namespace detail

/// What a runtime's loop thread does when it has nothing to do (Aeron's idle strategies).
///   block  sleep in epoll until a socket, timer or send wakes it (the default): no CPU
///          while idle; each wake-up costs a thread wake-up (tens of microseconds on a VM).
///   yield  poll every socket and the send queues without sleeping, calling sched_yield()
///          between rounds: a whole core while a channel is open, but it gives way to any
///          other runnable thread at once.
///   spin   poll without sleeping or yielding (a pause instruction between rounds): the
///          lowest latency, at the price of one core kept at 100% while a channel is open.
///          A channel of a spinning runtime receives on the loop thread (no inline receive),
///          and receive() waits for the loop's delivery by polling, not by sleeping.
/// yield and spin poll only while the runtime has channels open; without any they sleep.
enum class IdleStrategy : std::uint8_t { block, yield, spin };
/// "block", "yield", "spin".
std::string_view idle_strategy_name(IdleStrategy s) noexcept;
/// The inverse of idle_strategy_name(); false for anything else.
bool parse_idle_strategy(std::string_view text, IdleStrategy& out) noexcept;

/// How a runtime's loop thread runs.
struct RuntimeOptions {
  IdleStrategy idle = IdleStrategy::block;
  /// Pin the loop thread to this CPU (sched_setaffinity); -1 = leave it to the scheduler.
  /// Useful with spin on a machine with a core to spare; on a busy machine a pinned
  /// spinner competes with everything else scheduled on that core.
  int cpu = -1;
  /// SO_BUSY_POLL on the channels' sockets, in microseconds (0 = off): a read that finds
  /// nothing polls the device queue that long (drivers with busy-poll support only; the
  /// kernel may need CAP_NET_ADMIN for values above net.core.busy_read).
  int busy_poll_us = 0;
};

/// One event loop thread shared by channels (the process model: several channels per
/// process share one runtime; several processes on one host may join the same group).
class Runtime {
 public:
  /// The process-wide runtime, started on first use. After fork() the child gets a fresh
  /// one on its first call (the parent's loop thread does not exist in the child).
  static std::shared_ptr<Runtime> default_runtime();
  /// The process-wide runtime of an idle strategy (one per strategy, each started on first
  /// use); default_runtime() is default_runtime(IdleStrategy::block).
  static std::shared_ptr<Runtime> default_runtime(IdleStrategy idle);
  /// A new runtime with its own loop thread (e.g. to keep channels apart, or in tests to
  /// stand in for separate processes).
  static std::shared_ptr<Runtime> create();
  static std::shared_ptr<Runtime> create(const RuntimeOptions& options);
  /// How this runtime's loop thread runs.
  [[nodiscard]] const RuntimeOptions& options() const noexcept;

  /// Stops the loop and joins its thread. Channels keep their runtime alive, so this runs
  /// after the last channel using it is closed and destroyed.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// Channels currently open on this runtime.
  [[nodiscard]] std::size_t channel_count() const noexcept;
  /// Whether the calling thread is this runtime's loop thread (i.e. inside a handler).
  [[nodiscard]] bool on_loop_thread() const noexcept;

  /// For the runtime's own use.
  [[nodiscard]] detail::RuntimeLoop& loop() noexcept { return *loop_; }

 private:
  explicit Runtime(const RuntimeOptions& options);
  std::unique_ptr<detail::RuntimeLoop> loop_;
};

/// How a channel is opened beyond its manifest.
struct OpenOptions {
  /// What the host NIC and network offer; the compiler places stages from it.
  Capabilities caps = Capabilities::defaults();
  /// The loop to run on; null = Runtime::default_runtime(idle_strategy or block).
  std::shared_ptr<Runtime> runtime;
  /// The idle strategy of the runtime this channel runs on (see IdleStrategy): with
  /// `runtime` null, the process-wide runtime of that strategy; with `runtime` set, it must
  /// be that runtime's strategy (INVALID_ARGUMENT otherwise). Unset = block, or whatever
  /// `runtime` runs.
  std::optional<IdleStrategy> idle_strategy;
  /// Delivered messages waiting for receive(). When full, the newest arrival is dropped
  /// and counted as shell.receive_queue_full (like a full socket buffer). Unused while an
  /// on_message handler is set.
  std::uint32_t receive_queue_messages = 4096;
  /// Messages handed to send() that the loop has not yet taken (rounded up to a power of
  /// two). Their buffers are preallocated, so send allocates nothing in steady state.
  std::uint32_t send_queue_messages = 1024;
  /// When the send queue is full: true = send() waits for room; false = it returns
  /// Code::WOULD_BLOCK at once.
  bool send_blocks_when_full = true;
  /// Upper bound on packet buffers of this channel (send queue, receive queue, stage
  /// buffers, messages the application holds). 0 = chosen from the sizes above.
  std::uint32_t max_buffers = 0;
  /// Most bytes this channel's large messages (those longer than one datagram's payload:
  /// being sent, being reassembled, or held by the application) may take at once. A send()
  /// that finds it used up waits for room like one that finds the send queue full; a
  /// message that could never fit is refused with MESSAGE_TOO_LARGE. 0 = 256 MiB.
  std::uint64_t large_message_bytes = 0;
  /// SO_RCVBUF / SO_SNDBUF asked of the kernel (it may grant less); 0 = kernel default.
  int socket_buffer_bytes = 4 * 1024 * 1024;
  /// Inline sends (latency): when send() on an application thread finds the loop not busy
  /// with this channel and at least `inline_send_min_gap_ns` passed since the previous
  /// send() began (since it returned, for a sender that received nothing in between, so
  /// that a stream of back-to-back sends is batched however long each one takes),
  /// it runs the pipeline and hands the datagrams to the kernel itself, on the calling
  /// thread (under the channel's lock, so never at the same time as the loop), instead of
  /// waking the loop thread for it. Closer-spaced sends (a stream) go through the loop,
  /// which batches them into few sendmmsg calls. false = always through the loop. The
  /// order of messages and every other guarantee are the same either way.
  bool inline_send = true;
  std::uint32_t inline_send_min_gap_ns = 5'000;
  /// A receive() that finds the queue empty polls it for up to this long (a busy wait
  /// with a pause instruction) before sleeping, which saves a thread wake-up when the
  /// next message is about to arrive. 0 = sleep at once.
  std::uint32_t receive_spin_ns = 2'000;
  /// Inline receive (latency): a receive() that finds the queue empty (and no on_message
  /// handler set) reads the socket and runs the pipeline itself, on the calling thread,
  /// waiting in a blocking read of the socket (at most about 2 ms at a time, then in
  /// poll()), instead of waiting for the loop thread to hand it the message: one thread
  /// wake-up and one system call per message, as a plain recv(). Meanwhile the loop stops
  /// reading the channel's socket; it resumes about 1-2 ms after the last receive()
  /// returned. Timers of stages still fire, other threads may send, and try_receive()
  /// reads the socket itself while the loop stands aside (unless a receive() is reading
  /// it right then). false = always through the loop.
  bool inline_receive = true;
  /// Live counters: publish this channel's counters, gauges, plan and member view every
  /// 100 ms into the process's shared-memory stat file, where `tmc stat` (and any other
  /// process) reads them; see docs/operations.md. The loop thread publishes from a timer,
  /// so sends and receives do nothing for it. false = this channel stays out of the file.
  bool publish_stats = true;
  /// Loaded modules (tmc/modules.hpp): their stage kinds and congestion controllers join
  /// the built-ins for this channel. A manifest's `modules:` must name modules in it, and
  /// its `stages:` and `congestion control:` may use what they provide. null = built-ins only.
  std::shared_ptr<const ModuleSet> modules;
  /// Where the manifest's `modules:` come from when `modules` is null: a signed module
  /// repository. Opening the channel verifies it (tmc/module_repository.hpp) and loads the
  /// modules the manifest names; a refusal fails the open with MODULE_ERROR. Empty = none.
  ModuleRepository module_repository;
  /// The group key file for a manifest with `security` (docs/security.md), used when the
  /// manifest names none, so that the manifest need not say where the keys are.
  std::string key_file;
};

/// A snapshot of one channel's counters and estimates. Totals cover the channel's whole
/// life, across update()s.
struct ChannelStats {
  std::uint64_t messages_sent = 0;        ///< accepted by the pipeline from send()
  std::uint64_t bytes_sent = 0;           ///< payload bytes of those
  std::uint64_t datagrams_sent = 0;       ///< handed to the kernel (sendmmsg)
  std::uint64_t datagram_bytes_sent = 0;  ///< their bytes, headers included
  std::uint64_t datagrams_received = 0;   ///< read from the socket
  std::uint64_t datagram_bytes_received = 0;
  std::uint64_t messages_delivered = 0;   ///< to receive() or the handler
  std::uint64_t bytes_delivered = 0;      ///< payload bytes of those
  /// Drops by reason, indexed by DropReason (drop_reason_name() names them); pipeline and
  /// stage drops together.
  std::array<std::uint64_t, kDropReasonCount> drops{};
  std::uint64_t receive_queue_full = 0;  ///< delivered but dropped: receive queue full
  /// This member's own datagrams, looped back by IP_MULTICAST_LOOP for the other members on
  /// this host and ignored. With the fields above, every datagram received is accounted
  /// for: datagrams_received = messages_delivered + own_datagrams + the sum of drops
  /// (while nothing is held in a stage and no error occurred).
  std::uint64_t own_datagrams = 0;
  std::uint64_t send_errors = 0;         ///< datagrams the kernel refused (errno counted)
  std::uint64_t receive_errors = 0;      ///< failed reads, truncated datagrams

  /// Latency and loss estimates, as the paper's runtime keeps them (§3.1). An EWMA with
  /// weight 1/16, like TCP's SRTT. 0 until there is a sample.
  double send_latency_ns = 0;    ///< send() call to datagram handed to the kernel
  double interarrival_ns = 0;    ///< between consecutive datagrams received
  double interarrival_jitter_ns = 0;  ///< mean deviation of the above
  /// Messages never delivered / messages expected, from gaps in per-sender sequence
  /// numbers; -1 when the plan carries no sequence numbers (no ordering.seq stage).
  /// It counts network loss and ordering drops together.
  double loss_ratio = -1;

  /// Every counter by name: "pipeline.*", "drops.*", "wire.*", each stage's own, and the
  /// shell's "shell.*".
  std::vector<std::pair<std::string, std::uint64_t>> counters;
  /// One counter by name; 0 if absent.
  [[nodiscard]] std::uint64_t counter(std::string_view name) const noexcept;
  /// Every stage's gauges by name, read when the snapshot was taken: what the stages hold
  /// right now ("congestion.window_bytes", "reliability.srtt_ns", ...; docs/stages.md
  /// lists each stage's). They describe the current pipeline only (update() starts afresh)
  /// and are empty once the channel is closed.
  std::vector<std::pair<std::string, double>> gauges;
  /// One gauge by name; NaN if absent (the plan has no such stage).
  [[nodiscard]] double gauge(std::string_view name) const noexcept;
  [[nodiscard]] std::uint64_t drop_count(DropReason r) const noexcept {
    return drops[static_cast<std::size_t>(r)];
  }
};

/// What became of one reliable message (send(bytes, per_message, &outcome)).
struct DeliveryOutcome {
  enum class State : std::uint8_t {
    met,         ///< every required member acknowledged (as the manifest's 'reliability' says)
    failed,      ///< the retry budget ran out, or a required member failed or left
    unreliable,  ///< the message was not reliable: it was handed to the network, nothing more is known
    abandoned,   ///< the channel closed or was updated before the outcome was known
    forgotten,   ///< the application forgot it (Channel::forget) before the outcome was known
    expired,     ///< its lifetime ran out before the outcome was known (manifest 'lifetime')
  };
  State state = State::unreliable;
  std::vector<std::string> acked;    ///< members that acknowledged it
  std::vector<std::string> missing;  ///< with failed: the required members that never did
  [[nodiscard]] bool ok() const noexcept { return state == State::met || state == State::unreliable; }
};
std::string_view delivery_state_name(DeliveryOutcome::State s) noexcept;

/// A stage event with names resolved (a handler taking `const Event&` works too).
struct ChannelEvent : Event {
  std::string sender_name;           ///< the member `sender` names, or its id in hex
  std::vector<std::string> members;  ///< Event::members as names (who joined, failed, acked...)
  std::string detail;                ///< Event::detail, copied (module_fault: module and call)
};

/// A member as the channel's membership view sees it (Channel::view()).
struct MemberStatus {
  std::string name;
  MemberState state = MemberState::expected;
  bool self = false;
  bool receives = true;
  std::uint32_t sender_id = 0;
  std::uint32_t epoch = 0;
};

/// Names one message sent on a channel, for Channel::forget() and Channel::acknowledge():
/// send() with a token pointer fills it. Tokens of one channel grow with every send() (across update()s), so "this
/// message and every one before it" means every token up to this one. 0 names no message.
using MessageToken = std::uint64_t;

class Channel {
 public:
  using MessageHandler = std::function<void(Message&&)>;
  using EventHandler = std::function<void(const ChannelEvent&)>;

  /// A handle that is not open; every call returns Code::CLOSED (or nothing).
  Channel() noexcept;
  /// Closes the channel (see close()).
  ~Channel();
  Channel(Channel&& other) noexcept;
  Channel& operator=(Channel&& other) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // --- opening ---------------------------------------------------------------------------
  /// Compile the manifest, build its pipeline, open and join. Throws tmc::Error whose
  /// status names the problem: INVALID_MANIFEST / NOT_AVAILABLE (compiler), BAD_ADDRESS
  /// (group not in 224.0.0.0/4, bad peer), NO_SUCH_INTERFACE, ADDRESS_IN_USE,
  /// PERMISSION_DENIED, IO_ERROR.
  static Channel open(const Manifest& manifest, const OpenOptions& options = {});
  /// From a map (the Python dict spelling; keys as the paper writes them).
  static Channel open(const Value& map, const OpenOptions& options = {});
  /// From a YAML manifest file.
  static Channel open_yaml_file(const std::string& path, const OpenOptions& options = {});
  /// The non-throwing forms: on error `out` is left closed and the status says why.
  static Status try_open(const Manifest& manifest, const OpenOptions& options, Channel& out) noexcept;
  static Status try_open(const Value& map, const OpenOptions& options, Channel& out) noexcept;
  static Status try_open_yaml_file(const std::string& path, const OpenOptions& options, Channel& out) noexcept;

  // --- sending ---------------------------------------------------------------------------
  /// Send one message to the group. The bytes are copied once, into a packet buffer.
  /// Async channels return once the message is queued for the loop; sync channels
  /// (synchronicity: sync) return once the loop has run it through the pipeline and handed
  /// the resulting datagrams to the kernel (sendmmsg returned), and for a reliable message
  /// once the acknowledgments the manifest asks for arrived (DELIVERY_FAILED if they never
  /// did). A message larger than one datagram is fragmented (when 'max message bytes'
  /// allows it) and copied once more, into a buffer of its own.
  /// Errors: CLOSED, NOT_PERMITTED_BY_DUPLEXITY (receive-only member), MESSAGE_TOO_LARGE
  /// (more than the manifest's 'max message bytes'; the message names both sizes),
  /// WOULD_BLOCK (queue full, or no room for a large message (OpenOptions::
  /// large_message_bytes), and send_blocks_when_full is false, or inside a handler).
  Status send(std::span<const std::uint8_t> bytes);
  Status send(std::string_view text);
  /// With a per-message manifest (the paper's `c.send(msg, {'reliability': True})`): its
  /// properties travel in the header flags for this message only. Asking for a property
  /// whose stage is not in this channel's plan fails with NOT_AVAILABLE.
  Status send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message);
  Status send(std::string_view text, const MessageManifest& per_message);
  /// The same, and `*outcome` becomes ready when the message's fate is known: for a
  /// reliable message, met or failed (naming the members), for another one, unreliable as
  /// soon as it is queued. Sync channels (synchronicity: sync) wait for a reliable
  /// message's outcome in every send() and return DELIVERY_FAILED when it failed (from a
  /// handler they cannot wait and return at once).
  Status send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message,
              std::future<DeliveryOutcome>* outcome);
  /// The same, and `*token` names the message for forget() and acknowledge() (outcome may be
  /// null).
  Status send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message,
              std::future<DeliveryOutcome>* outcome, MessageToken* token);

  // --- application-guided decisions -------------------------------------------------------
  /// Forget a message that is not settled yet: the application no longer needs it
  /// delivered (ForgetScope::message), or no longer needs it or any message sent before it
  /// (ForgetScope::and_earlier). What is still held for it is let go: reliability stops
  /// repairing it and no longer waits for its acknowledgments, flow and congestion control
  /// stop holding it back, and its outcome becomes DeliveryOutcome::State::forgotten
  /// (delivery_forgotten). Receivers that missed it are told to stop waiting: reliability
  /// announces the new trailing edge, and ordering moves past the hole with a gap_skipped
  /// event whose cause says the sender released it. A message already settled (met,
  /// failed, expired) or never reliable is not affected; forgetting is idempotent.
  /// Errors: CLOSED, INVALID_ARGUMENT (a token this channel never gave).
  Status forget(MessageToken token, ForgetScope scope = ForgetScope::message);
  /// A load hint: how full the application is, in [0, 1] (e.g. its own event queue's fill),
  /// for an application that takes messages off the receive queue at once and queues them
  /// itself. With 'flow control' (and 'load hints', the default) this member's advertised
  /// window shrinks with max(hint, receive queue fill), to 0 at 1, so senders slow down
  /// before anything is dropped. The hint stays until the next call (0 clears it).
  /// Errors: CLOSED, INVALID_ARGUMENT (not a number in [0, 1]).
  Status hint_load(double fraction);

  /// The same without an outcome: `*token` names the message for acknowledge() and forget().
  Status send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message, MessageToken* token);

  // --- acknowledgment by reply ------------------------------------------------------------
  /// Acknowledge on `member`'s behalf the reliable message named by `token` (from
  /// send(bytes, per_message, &token)): the application learned from that member's own
  /// reply, on this channel or any other, that the member has it. The reliability stage
  /// counts it as the member's ack (RTT sample included), so the message is settled
  /// without an ack datagram and the retransmission timeout follows the replies. With
  /// 'reliability: {acks: application}' these are the only acks (request/response):
  /// receivers send none, a message is retransmitted until its replies came, and a
  /// receiver delivers a retransmitted message again so that it answers again. Unknown tokens
  /// (settled already, unreliable) and members outside the view are ignored. From the
  /// loop thread (a handler) it is applied with the turn's other acknowledgments as one
  /// batch before the loop waits again (its RTT sample taken at the call), from another
  /// thread on the loop's next turn. Errors: CLOSED, NOT_AVAILABLE (no reliability in the plan), WOULD_BLOCK
  /// (4096 acknowledgments from other threads wait for the loop already).
  Status acknowledge(MessageToken token, std::string_view member);

  // --- changing the manifest -------------------------------------------------------------
  /// Replace the manifest for good: compile, build the new pipeline, swap it in on the loop.
  /// Messages queued by send() and not yet taken by the loop go through the new pipeline.
  /// Packets the old pipeline's stages hold (reorder buffers, delayed or paced packets)
  /// are flushed first: the old stages get final ticks as if their deadlines had passed,
  /// so what they would release later goes out or up now; anything still held after that
  /// is released with the old pipeline (counted in its drops). The new pipeline starts
  /// with a new epoch, so receivers restart this sender's sequence cleanly. A new group,
  /// port or interface re-opens the socket (leave, then join). Returns once the swap is
  /// done (from a handler: once it is scheduled). Errors as for open(); on error nothing
  /// changed.
  Status update(const Manifest& manifest);
  /// Apply a partial map on top of the current manifest (`c.update({'error checking': True})`).
  Status update(const Value& changes);

  // --- receiving -------------------------------------------------------------------------
  /// Wait up to `timeout` for the next delivered message. nullopt on timeout or when closed.
  std::optional<Message> receive(std::chrono::nanoseconds timeout);
  /// The same with a reason: OK, TIMED_OUT, CLOSED (closed and the queue is empty),
  /// NOT_PERMITTED_BY_DUPLEXITY (send-only member).
  Status receive(Message& out, std::chrono::nanoseconds timeout);
  /// The next queued message without waiting.
  std::optional<Message> try_receive();
  /// Deliver messages to `handler` on the loop thread instead of the receive queue: first
  /// the ones already queued (delivered since open, before any handler was set), in order,
  /// then every later one, so a handler set right after open misses none. An empty
  /// function returns to the queue. The handler owns the Message it is given (move it to
  /// keep it).
  void on_message(MessageHandler handler);
  /// Stage events (gap skipped, members joined/failed/left, delivery met/failed, ...) on
  /// the loop thread.
  void on_event(EventHandler handler);

  // --- inspecting ------------------------------------------------------------------------
  /// With the membership stage in the plan (reliability, flow control or group ordering):
  /// this member and every member the view holds alive. Without it: the manifest's members
  /// plus every sender heard from (its name when the manifest lists it, else its id in hex
  /// "0x..."), then this member; nobody is ever removed then.
  [[nodiscard]] std::vector<std::string> members() const;
  /// The membership view, every slot (expected, alive, failed, left), self first. Empty
  /// without the membership stage.
  [[nodiscard]] std::vector<MemberStatus> view() const;
  /// Wait until the view holds at least `count` alive members besides this one (e.g.
  /// before the first reliable send, so that "ack from all" means the members you expect).
  /// OK, TIMED_OUT, CLOSED, or NOT_AVAILABLE without the membership stage.
  Status wait_for_members(std::size_t count, std::chrono::nanoseconds timeout) const;
  [[nodiscard]] ChannelStats stats() const;
  /// The plan in force (a copy: update() may replace it at any time).
  [[nodiscard]] Plan plan() const;
  [[nodiscard]] Manifest manifest() const;
  /// This member's name and wire id (FNV-1a of the name).
  [[nodiscard]] std::string name() const;
  [[nodiscard]] std::uint32_t sender_id() const noexcept;
  [[nodiscard]] bool is_open() const noexcept;

  // --- closing ---------------------------------------------------------------------------
  /// Flush: every message send() accepted is run through the pipeline and handed to the
  /// kernel; then leave the group, close the socket and detach from the loop. Waiting
  /// receive() calls return CLOSED; queued messages can still be taken with receive().
  /// Idempotent. From a handler it returns at once and the rest happens right after.
  void close() noexcept;

 private:
  explicit Channel(std::shared_ptr<detail::ChannelCore> core) noexcept;
  std::shared_ptr<detail::ChannelCore> core_;
};

}  // namespace tmc
