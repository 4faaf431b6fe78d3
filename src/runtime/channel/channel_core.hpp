// The channel behind a tmc::Channel handle: the hand-off between application threads and
// the loop thread, the pipeline, and the transport.
//
// Files (src/runtime/channel/)
//   open.cpp (open, prepare, install, update, close, detach), loop.cpp (libuv handles,
//   timers, standing aside), send.cpp (send() and the submit ring), receive.cpp (reading,
//   dispatch, the receive queue), inline_receive.cpp, events.cpp (events and delivery
//   outcomes), stats.cpp, view.cpp (membership view, manifest, plan, name), handle.cpp
//   (tmc::Channel and tmc::Message), publish.cpp (live counters for `tmc stat`);
//   message_policy.hpp decides what a per-message manifest may ask of the channel's traits.
//
// Threads
//   App threads touch only: the two rings, the receive queue (under rq_.mu), the atomics,
//   and the copies of manifest/plan under state_.mu. Everything marked "loop" below is
//   touched only on the runtime's loop thread (or, after close() finished, by the thread
//   that closed it).
//
// Send path (no allocation in steady state)
//   The loop keeps free_ring_ stocked with empty pool packets. send() pops one, copies the
//   payload into it (the one copy), pushes it onto submit_ring_ and pokes the channel's
//   uv_async_t. On wake-up the loop drains submit_ring_ through the pipeline; datagrams
//   collect in the transport's queue and go out in sendmmsg batches at the end of the
//   drain. The loop hands out at most `send_slots_` packets at a time (free + submitted),
//   so submit_ring_ can never overflow.
//   Inline sends skip the wake-up (a thread hand-off per message, the bulk of a ping-pong
//   round trip): an application thread that takes exec_mu_ with try_lock (the loop is not
//   in this channel) drains submit_ring_ and flushes itself; a send from inside a handler
//   (the loop holds exec_mu_) drains the ring through the pipeline at once and the loop
//   flushes right after the handler returns, batching the replies of one dispatch. Work
//   that needs libuv (timers, write polling) or the loop (handlers for what a send made
//   stages deliver or report) is left to the loop via the async handle.
//
// The exec lock
//   exec_mu_ guards everything marked "exec" below: the pipeline, the transport, the pool
//   and the loop state they touch. The loop takes it (ExecGuard) in every callback of this
//   channel and keeps it while handlers run, so a handler's send() on its own channel
//   proceeds without locking (loop_holds_exec_). Application threads only ever try_lock
//   it and never wait for anything while holding it.
//
// Receive path (no copy)
//   recvmmsg into pool packets -> pipeline -> delivered packets become Messages, either
//   handed to the on_message handler or queued for receive(). A Message returns its
//   packet through BufferHome's lock-free stack, which the loop empties into the pool.
//   Setting a handler hands it what the queue holds first (messages delivered between
//   open and on_message), so a handler sees every message from the first.
//
// Inline receive (latency: one thread wake-up and one system call per datagram, like a
// plain blocking recv())
//   A receive() on an application thread that finds the queue empty, with no on_message
//   handler set, becomes the channel's inline receiver (at most one thread at a time,
//   rx_.receiver). It reads the socket itself: under exec_mu_ (a blocking lock, held only
//   for one bounded round of pipeline work, never while waiting) it runs the pipeline on
//   what it read, ticks stage deadlines that are due and queues the deliveries. It waits
//   without the lock, in one of two ways:
//   - hot: a blocking recvmmsg(MSG_WAITFORONE) into its own buffers (rx_.own, armed under
//     the lock), which waits and reads in one system call, as a raw recv() does. The
//     socket's SO_RCVTIMEO (kHotWaitUs) bounds it, so a wake-up request that cannot
//     interrupt it (a new on_message handler, messages the loop queued) is seen within
//     about that long. Socket changes do interrupt it: before update() or close() closes a
//     socket, release_reader() shuts its receive side down (which wakes a blocked read
//     and makes the next one return at once) and waits until the read has returned, so
//     the receiver never reads a closed (or reused) descriptor; rx_.gen tells it that
//     what it read belongs to a socket that is gone. rx_.reading says where the receiver
//     is (2: in the read, 1: holding datagrams not yet given to the pipeline); while it
//     is not 0 nobody else reads the socket (the loop stands aside even with a handler
//     set, try_receive() leaves it), so datagrams enter the pipeline in socket order.
//   - cold: once a hot wait has timed out within one receive() (an idle channel), or when
//     a stage deadline or the caller's timeout is nearer than kHotWaitUs, it sleeps in
//     ppoll() on the socket and rx_.wake_fd, with the pipeline's next deadline as the
//     timeout, and reads without blocking when the socket is ready. rx_.wake_fd (an
//     eventfd) is written by whoever changes what the receiver waits for: the loop
//     queueing messages (timers, handlers' sends), update() swapping the socket, close(),
//     a new on_message handler. So an idle receive() costs one timed-out hot wait and
//     then sleeps until something happens: no polling.
//   While rx_.receiver is set the loop never reads the socket: its readable callback steps
//   aside instead (stops polling readable, rx_aside_), so it neither steals the datagram
//   nor spins on the level-triggered poll. It resumes polling once the receiver has been
//   gone for a whole tick of aside_timer_ (1 ms; the timer stops while the receiver sits
//   blocked, and the receiver's exit pokes the loop to restart it), so try_receive(),
//   handlers and stages that need incoming packets (acks, heartbeats) are served by the
//   loop again within about 2 ms. While the loop stands aside, try_receive() reads the
//   socket itself (try_lock), unless the receiver is in a blocking read. Work that needs
//   the loop (libuv timers moved earlier, write polling, event handlers) is handed to it
//   through the async handle, as for inline sends.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/channel/traits_cell.hpp"
#include "runtime/loop/mpmc_ring.hpp"
#include "runtime/loop/runtime_loop.hpp"
#include "runtime/pipeline.hpp"
#include "runtime/transport/udp_transport.hpp"
#include "tmc/channel.hpp"

namespace tmc::detail {

/// The pools of one channel, and the way back into them for Messages on other threads.
/// Shared by the channel and every Message it delivered, so buffers stay valid after the
/// channel closes.
class BufferHome {
 public:
  /// Any thread: give a packet back (lock-free push). On the thread that holds the
  /// channel's exec lock while its handlers run (see DirectReturn), straight into the pool.
  void give_back(Packet* p) noexcept {
    if (direct_ == this) {
      p->release();
      return;
    }
    Packet* head = returned_.load(std::memory_order_relaxed);
    do {
      p->next = head;
    } while (!returned_.compare_exchange_weak(head, p, std::memory_order_release, std::memory_order_relaxed));
  }
  /// Loop: take every returned packet (a list linked through Packet::next).
  Packet* take_all() noexcept {
    // A load first: the loop asks every poll round, and mostly nothing came back.
    if (returned_.load(std::memory_order_relaxed) == nullptr) return nullptr;
    return returned_.exchange(nullptr, std::memory_order_acquire);
  }

  /// For the scope of a dispatch: this thread holds the channel's exec lock, which guards
  /// the pools, so a Message the handler lets go of (the usual case: it reads the payload
  /// and returns) goes straight back into its pool, instead of through the lock-free stack
  /// and take_returns() (an atomic exchange and a cache miss per message at a million
  /// messages a second). Messages kept past the handler and released later, on any thread,
  /// still take the stack.
  class DirectReturn {
   public:
    explicit DirectReturn(BufferHome& h) noexcept : saved_(direct_) { direct_ = &h; }
    ~DirectReturn() { direct_ = saved_; }
    DirectReturn(const DirectReturn&) = delete;
    DirectReturn& operator=(const DirectReturn&) = delete;

   private:
    BufferHome* saved_;
  };
  /// Cold: a new pool owned by this home.
  PacketPool* add_pool(std::uint32_t buffer_bytes, std::uint32_t initial, std::uint32_t max_packets) {
    std::lock_guard<std::mutex> lock(mu_);
    pools_.push_back(std::make_unique<PacketPool>(buffer_bytes, initial, max_packets));
    return pools_.back().get();
  }

 private:
  inline static thread_local BufferHome* direct_ = nullptr;  ///< see DirectReturn
  std::atomic<Packet*> returned_{nullptr};
  std::mutex mu_;
  std::vector<std::unique_ptr<PacketPool>> pools_;
};

class ChannelCore final : public PipelineSink, public Poller, public std::enable_shared_from_this<ChannelCore> {
 public:
  static Status open(const Manifest& manifest, const OpenOptions& options, std::shared_ptr<ChannelCore>& out);
  ~ChannelCore();

  Status send(const std::uint8_t* data, std::size_t n, const MessageManifest* per_message,
              std::future<DeliveryOutcome>* outcome = nullptr, std::uint64_t* token_out = nullptr);
  /// Channel::acknowledge: any thread; on the loop thread it joins the turn's batch
  /// (apply_loop_acks()), from other threads the loop takes it on its next drain().
  Status acknowledge(std::uint64_t token, std::string_view member);
  /// Channel::forget: under the exec lock, messages send() queued enter the pipeline first
  /// (so they can be forgotten too), then every stage's on_forget.
  Status forget(std::uint64_t token, ForgetScope scope);
  /// Channel::hint_load: stored for load() (any thread).
  Status hint_load(double fraction);
  Status update(const Manifest& manifest);
  Status update(const Value& changes);
  Status receive(Message& out, std::chrono::nanoseconds timeout);
  bool try_receive(Message& out);
  void set_message_handler(Channel::MessageHandler h);
  void set_event_handler(Channel::EventHandler h);
  std::vector<std::string> members();
  std::vector<MemberStatus> view();
  Status wait_for_members(std::size_t count, std::chrono::nanoseconds timeout);
  ChannelStats stats();
  Plan plan() const;
  Manifest manifest() const;
  std::string name() const;
  std::uint32_t sender_id() const noexcept { return config_.sender_id.load(); }
  bool is_open() const noexcept { return !life_.closed.load(); }
  void close() noexcept;

  // PipelineSink (loop thread)
  void transmit(Packet* p) noexcept override;
  void deliver(Packet* p) noexcept override;
  void on_event(const Event& e) noexcept override;
  /// max(hint_load, receive queue fill counted full at half its size: the other half is
  /// room for what is in flight when the window closes); exec.
  double load() const noexcept override;

  // Poller (the loop thread of a polling runtime, every round)
  void poll_once() noexcept override;

 private:
  /// Everything prepare() builds on the caller's thread for open() and update().
  struct Prepared {
    Manifest manifest;
    Plan plan;
    std::string name;
    std::uint32_t sender = 0;
    std::uint32_t max_payload = 0;

    PacketPool* pool = nullptr;
    std::unique_ptr<Pipeline> pipeline;
    std::unique_ptr<UdpTransport> transport;  ///< null: keep the current socket
    TransportSpec spec;
    std::unordered_map<std::uint32_t, std::string> names;
  };

  ChannelCore(std::shared_ptr<Runtime> runtime, const OpenOptions& options);
  Status prepare(const Manifest& m, bool reuse_socket_if_possible, Prepared& out);
  void install(Prepared& p);  // loop: make `p` the channel's state

  /// Loop thread: holds exec_mu_ for the scope, unless an enclosing guard already does.
  class ExecGuard {
   public:
    explicit ExecGuard(ChannelCore& c) noexcept : c_(c), owns_(!c.loop_holds_exec_) {
      if (owns_) {
        c_.exec_mu_.lock();
        c_.loop_holds_exec_ = true;
      }
    }
    ~ExecGuard() {
      if (owns_) {
        c_.loop_holds_exec_ = false;
        c_.exec_mu_.unlock();
      }
    }
    ExecGuard(const ExecGuard&) = delete;
    ExecGuard& operator=(const ExecGuard&) = delete;

   private:
    ChannelCore& c_;
    bool owns_;
  };

  // --- send() on an application thread (or a handler), in the order it runs ---------------
  /// The streaming state and clock reading of one send() (see read_send_clock()).
  struct SendClock {
    bool streaming = false;     ///< messages are queued ahead of this one: no clock, no inline send
    bool after_stream = false;  ///< the first send after a stream
    std::uint64_t sent_ns = 0;  ///< now, unless streaming
    std::uint64_t prev_ns = 0;  ///< the previous send()'s time, unless streaming
  };
  Status check_may_send() const;  // closed, or a receive-only member
  // 'max message bytes' and one datagram's payload; a large message gets its buffer here.
  Status check_size(const ChannelTraits& traits, std::uint32_t max, std::size_t n, Packet*& large);
  // The buffer of a large message, within the pool's large budget; may wait for room.
  Status take_large(std::size_t n, Packet*& out);
  // A free-ring packet big enough for n bytes (or to carry a large one); may wait for one.
  Status take_slot(std::size_t n, bool large, bool on_loop, Packet*& out);
  // Copies the payload into the carrier, or into `large` chained behind it; returns the
  // packet that holds it.
  static Packet* fill(Packet* carrier, Packet* large, const std::uint8_t* data, std::size_t n) noexcept;
  std::future<DeliveryOutcome> track_outcome(std::uint64_t token, std::uint32_t fragments);
  SendClock read_send_clock(bool on_loop) noexcept;
  void hand_over(bool on_loop, const SendClock& c) noexcept;  // inline through the pipeline, or poke the loop
  static Status wait_outcome(std::future<DeliveryOutcome>& tracked);  // sync reliable send
  void wait_flushed(std::uint64_t pos);                               // sync send: until it left

  // --- exec (exec_mu_ held; loop thread unless noted) ---------------------------------------
  bool pump_submitted(std::uint64_t now_ns, bool on_loop) noexcept;
  /// Exec: whether `p`, just out of the submit ring, was forgotten while it waited there
  /// (see forget_queued_); if so it is released unsent and its outcome is `forgotten`.
  bool drop_forgotten(Packet* p) noexcept;
  bool send_inline(bool on_loop, bool flush) noexcept;  // any thread; true: poke the loop
  void attach();
  void drain() noexcept;
  void after_input(std::uint64_t now_ns) noexcept;
  void flush_tx() noexcept;
  void refill_free() noexcept;
  void take_returns() noexcept;
  void dispatch() noexcept;
  void on_readable() noexcept;
  void on_unicast_readable() noexcept;
  void on_writable() noexcept;
  bool poll_socket(bool unicast, std::uint64_t& now) noexcept;  // exec: read rounds; true: read any
  static constexpr unsigned kUnicastEvery = 4;  ///< poll_once(): rounds per read of the unicast socket
  unsigned poll_rounds_ = 0;                     ///< loop
  void rearm_timer(std::uint64_t now_ns) noexcept;
  void start_poll(bool writable) noexcept;
  void stop_poll() noexcept;
  void start_pipeline() noexcept;
  void flush_pipeline() noexcept;
  void retire_pipeline() noexcept;
  void detach() noexcept;
  void note_delivery(const Packet& p) noexcept;
  int read_batch(std::uint64_t& now_ns) noexcept;       // exec: one recvmmsg into the pipeline
  void feed_batch(int n, std::uint64_t& now_ns) noexcept;  // exec: rx_batch_[0, n) into the pipeline
  std::size_t queue_deliveries(bool from_loop) noexcept;  // exec: to_deliver_ -> receive queue
  Message make_message(Packet* p);                        // exec
  bool pop_queued(Message& out) noexcept;                // any thread: take the queue's head
  void hand_queued_to_handler() noexcept;                // loop, exec: the queue -> a new handler
  // Inline receive (see "Inline receive" above).
  bool receive_inline(Message& out, std::chrono::steady_clock::time_point deadline);
  // exec, app thread: one read/tick round; true = poke the loop. `pre_read` datagrams the
  // inline receiver's blocking read placed in rx_batch_ go into the pipeline first.
  bool inline_round(std::uint64_t now_ns, bool read, int pre_read = 0) noexcept;
  void release_reader() noexcept;  // exec: before transport_ is closed or replaced
  void leave_inline() noexcept;
  void wake_inline() noexcept;  // any thread
  void step_aside() noexcept;   // loop
  void resume_reading() noexcept;  // loop
  void check_aside() noexcept;     // loop
  void settle_outcome(const Event& e) noexcept;              // exec: a delivery event's promise
  void abandon_outcomes(std::uint64_t up_to_token) noexcept;  // any thread
  /// Any thread: every tracked outcome of a token in (after, through] becomes `state`.
  void settle_outcomes(std::uint64_t after, std::uint64_t through, DeliveryOutcome::State state) noexcept;
  std::string name_of(std::uint32_t sender) const;            // exec
  ChannelStats build_stats() const;
  void set_flushed(std::uint64_t pos) noexcept;
  bool is_own_old_packet(const Packet& p) const noexcept;

  static void on_async_cb(uv_async_t* h);
  static void on_timer_cb(uv_timer_t* h);
  static void on_fine_timer_cb(uv_poll_t* h, int status, int events);
  void tick_now() noexcept;
  static void on_aside_timer_cb(uv_timer_t* h);
  static void on_poll_cb(uv_poll_t* h, int status, int events);
  static void on_unicast_cb(uv_poll_t* h, int status, int events);
  static void on_handle_closed(uv_handle_t* h);
  // Live counters (publish.cpp): the loop publishes into the process's stat file.
  void start_publishing() noexcept;  // loop, from attach()
  void stop_publishing() noexcept;   // loop, from detach()
  void publish_stats() noexcept;     // loop
  static void on_stat_timer_cb(uv_timer_t* h);

  // --- fixed at construction ---------------------------------------------------------------
  std::shared_ptr<Runtime> runtime_;
  RuntimeLoop& loop_;
  OpenOptions options_;
  std::shared_ptr<BufferHome> home_;
  MpmcRing<Packet*> free_ring_;
  MpmcRing<Packet*> submit_ring_;
  std::uint32_t send_slots_;

  // --- shared between threads ------------------------------------------------------------
  // Each group below belongs to one concern. The locks, outermost first; a thread holding
  // one takes only locks further down the list, never one above it:
  //   update_mu_    one update() at a time. Held by the updating thread across prepare()
  //                 and the swap it waits for on the loop (which takes exec_mu_ there).
  //   exec_mu_      the pipeline, the transport, the pool and the loop state marked "exec"
  //                 (see "The exec lock" above). Its holder may take any lock below.
  //   outcomes_.mu, rq_.mu, waits_.mu, state_.mu, and BufferHome's pool lock
  //                 leaves: each held for a few instructions around its own data, never
  //                 while taking another lock (a condition variable waits on its own only).

  std::mutex update_mu_;
  std::mutex exec_mu_;           ///< see "The exec lock" above
  bool loop_holds_exec_ = false;  ///< loop thread only

  /// What the application reads back (manifest(), plan(), name()); install() replaces it.
  struct Published {
    mutable std::mutex mu;  ///< leaf; guards the three below
    Manifest manifest;
    Plan plan;
    std::string name;
  } state_;

  /// What send() checks each message against: install() stores each field on the loop,
  /// application threads load them without a lock.
  struct SendConfig {
    std::atomic<std::uint32_t> sender_id{0};
    std::atomic<std::uint32_t> max_payload{0};
    TraitsCell traits;                            ///< the current plan's traits
    std::atomic<PacketPool*> large_pool{nullptr};  ///< where send() allocates large messages
    std::atomic<std::uint8_t> duplexity{0};
    std::atomic<std::uint8_t> synchronicity{0};
  } config_;

  /// The channel's life, as every thread sees it.
  struct Lifecycle {
    std::atomic<bool> closed{false};     ///< close() began: send() refuses new messages
    std::atomic<bool> detached{false};   ///< detach() finished: the loop no longer runs this channel
    std::atomic<int> active_senders{0};  ///< send() calls between their closed check and push
  } life_;
  std::shared_future<void> closed_future_;  ///< ready when every handle is closed

  /// send()'s own state, shared by every sending thread.
  struct SendState {
    std::atomic<std::uint64_t> next_token{1};    ///< Packet::token of the next message
    std::atomic<std::uint64_t> last_send_ns{0};  ///< time of the latest send() (inline heuristic)
    std::atomic<bool> stream_tail{false};        ///< sends since then went without a clock (streaming)
    std::atomic<std::uint32_t> abandoned{0};     ///< free-ring packets send() handed back unused
    std::atomic<std::uint64_t> waited_for_memory{0};  ///< sends that waited for large-message room
    /// A polling runtime: the loop has work from a send (instead of uv_async_send, a
    /// system call, the loop's poll phase looks at this flag).
    std::atomic<bool> poked{false};
    /// Stream detection (see hand_over()): messages receive()/try_receive() returned, the
    /// count the latest send() saw, and when the latest inline send of a sender that
    /// received nothing in between ended.
    std::atomic<std::uint64_t> receives{0};
    std::atomic<std::uint64_t> receives_seen{0};
    std::atomic<std::uint64_t> last_end_ns{0};
  } send_;

  /// Senders that wait: for a free slot (a full send queue) or, on sync channels, until
  /// their message has left. The loop wakes them (refill_free(), set_flushed()).
  struct SendWaits {
    std::mutex mu;  ///< leaf; only for cv
    std::condition_variable cv;
    std::atomic<int> waiters{0};                ///< threads in cv (sync sends, full queue)
    std::atomic<int> slot{0};                   ///< of those, senders waiting for a free slot
    std::atomic<int> large{0};                  ///< of those, senders waiting for large-message room
    std::atomic<int> flush{0};                  ///< of those, sync senders waiting for a flush
    std::atomic<std::uint64_t> flushed_pos{0};  ///< submit positions below this are done
  } waits_;

  /// Outcomes the application waits for (send with an outcome, sync reliable sends), by
  /// token. Filled by send() on any thread, settled by delivery events under exec.
  struct Tracked {
    std::promise<DeliveryOutcome> promise;
    std::uint32_t remaining = 1;        ///< fragments (each reliable on its own) not yet met
    MemberSet acked;                    ///< members that acked every fragment met so far
    bool any_met = false;               ///< whether `acked` holds a first fragment's set yet
  };
  struct Outcomes {
    std::mutex mu;  ///< leaf; guards by_token
    std::unordered_map<std::uint64_t, Tracked> by_token;
    std::atomic<std::size_t> count{0};  ///< by_token.size(), readable without mu
  } outcomes_;

  /// Acknowledgments the application made on members' behalf (Channel::acknowledge) from
  /// threads other than the loop's, for the loop to hand to the pipeline.
  struct AppAck {
    std::uint64_t token = 0;
    std::uint32_t sender = 0;  ///< the member's wire id
  };
  struct AppAcks {
    static constexpr std::size_t kMaxPending = 4096;
    std::mutex mu;  ///< leaf; guards pending
    std::vector<AppAck> pending;
    std::atomic<std::size_t> count{0};  ///< pending.size(), readable without mu
  } app_acks_;
  void take_app_acks(std::uint64_t now_ns) noexcept;  // exec
  /// Acknowledgments made on the loop thread (in handlers: a reply arrived), applied once
  /// per loop turn as one batch: one exec lock, one pipeline call, one flush, and the
  /// events they cause dispatched then, not through a wake-up. An idle handle runs
  /// apply_loop_acks() on the loop's next turn (a polling runtime's poll_once() sooner).
  std::vector<Pipeline::AppAckRecord> loop_acks_;  // loop thread
  std::vector<Pipeline::AppAckRecord> acking_;     // loop thread; the batch being applied
  uv_idle_t ack_idle_{};
  static void on_ack_idle_cb(uv_idle_t* h);
  /// A pipeline deadline that is due already when the timer is re-armed (pacing.coalesce
  /// with 'coalesce turn' waits only for the end of the turn) is ticked by this idle handle
  /// on the loop's next turn, before it polls again: no timer, no system call.
  uv_idle_t turn_idle_{};
  static void on_turn_idle_cb(uv_idle_t* h);
  void apply_loop_acks() noexcept;  // loop thread

  /// Delivered messages waiting for receive(): a ring of receive_queue_messages slots.
  struct ReceiveQueue {
    std::mutex mu;  ///< leaf; guards everything here but `ready`
    std::condition_variable cv;
    std::vector<Message> slots;
    std::size_t head = 0;
    std::size_t count = 0;
    int waiters = 0;                    ///< receive() calls asleep on cv
    std::atomic<std::size_t> ready{0};  ///< count, readable without mu (spinning)
    std::atomic<std::uint64_t> expired{0};  ///< messages dropped from the queue: lifetime over
  } rq_;

  /// Channel::hint_load's fraction in millionths (any thread writes, the pipeline reads).
  std::atomic<std::uint32_t> load_hint_ppm_{0};

  /// Whether handlers are set, for other threads (the handlers themselves are loop state).
  struct HandlersSet {
    std::atomic<bool> message{false};
    std::atomic<bool> event{false};
  } handler_set_;

  /// Inline receive (see above): the application thread that reads the socket itself,
  /// and the loop standing aside for it.
  struct InlineReceive {
    int wake_fd = -1;                   ///< eventfd; -1: inline receive off
    std::atomic<bool> receiver{false};  ///< an app thread is the inline receiver
    std::atomic<std::uint64_t> exits{0};   ///< inline receives finished
    std::atomic<bool> loop_aside{false};   ///< rx_aside_, readable by app threads
    std::atomic<bool> aside_armed{false};  ///< aside_timer_ is ticking
    // The inline receiver's blocking reads (hot waits; see above).
    std::atomic<int> reading{0};  ///< 2: in a blocking read; 1: holding its datagrams; 0: neither
    std::uint64_t gen = 0;        ///< exec: bumped whenever transport_ is closed or replaced
    RxBuffers own;                ///< the inline receiver's (handed over through `receiver`)
    std::uint64_t own_gen = 0;    ///< the inline receiver's: gen when `own` was armed
  } rx_;

  // --- loop thread; also exec (under exec_mu_) for the pipeline, transport and pool -------
  uv_async_t async_{};
  uv_timer_t timer_{};
  /// Stage deadlines closer than kFineTimerNs: libuv's timers count whole milliseconds,
  /// too coarse for a 200 us coalescing delay or a 500 us ack delay, so those go to a
  /// timerfd (nanoseconds, one timerfd_settime per change) polled by the loop.
  static constexpr std::uint64_t kFineTimerNs = 5'000'000;
  int fine_fd_ = -1;
  bool fine_on_ = false;  ///< fine_poll_ is started: deadlines may use fine_fd_
  uv_poll_t* fine_poll_ = nullptr;
  uv_timer_t aside_timer_{};  ///< while the loop stands aside for an inline receiver
  /// Live counters: this channel's slot in the stat file (-1: not publishing), the timer
  /// that publishes into it, and the plan text, rendered again only after an update.
  int stat_slot_ = -1;
  uv_timer_t stat_timer_{};
  std::uint64_t stat_plan_updates_ = ~std::uint64_t{0};
  std::string stat_plan_;
  bool rx_aside_ = false;     ///< the loop stopped polling readable (inline receiver)
  std::uint64_t aside_seen_exits_ = 0;
  uv_poll_t* poll_ = nullptr;  // heap: replaced when update() changes the socket
  // The transport's unicast socket (UdpTransport::unicast_fd(), when it has one): always
  // read by the loop, also while an inline receiver reads the group socket, and polled for
  // writable instead of poll_, since every datagram leaves from it.
  uv_poll_t* upoll_ = nullptr;
  bool poll_writable_ = false;
  /// The pipeline's send backlog reached the send queue's size: pump_submitted() leaves the
  /// submit ring alone until the stages make room (after_input() looks again).
  bool backpressured_ = false;
  int open_handles_ = 0;
  std::promise<void> closed_promise_;
  std::shared_ptr<ChannelCore> keepalive_;  // while handles close after close() from a handler
  PacketPool* pool_ = nullptr;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<UdpTransport> transport_;
  bool receiving_ = true;
  std::uint32_t outstanding_ = 0;  // packets in free_ring_ + submit_ring_
  std::uint64_t timer_deadline_ns_ = 0;
  std::uint64_t now_ns_ = 0;  ///< time of the input being processed
  std::vector<Packet*> rx_batch_;
  std::vector<Packet*> to_deliver_;
  std::vector<Packet*> delivering_;
  std::vector<ChannelEvent> events_;
  std::uint64_t entered_token_ = 0;  ///< exec: highest token the current pipeline was given
  /// Exec: forget() of messages still in the submit ring (the pipeline has not seen them,
  /// e.g. while it is back-pressured): tokens forgotten one by one, and the highest token
  /// forgotten with everything before it. Their outcomes say `forgotten` at once; each
  /// buffer is let go as it leaves the ring, before any stage numbers it: nothing is sent
  /// and no receiver sees a hole.
  std::vector<std::uint64_t> forget_queued_;
  std::uint64_t forget_through_ = 0;
  Channel::MessageHandler handler_;
  Channel::EventHandler event_handler_;
  std::unordered_map<std::uint32_t, std::string> names_;  // loop copy: sender id -> name
  std::vector<std::uint32_t> heard_order_;
  std::unordered_set<std::uint32_t> heard_;
  std::vector<std::uint32_t> own_old_epochs_;
  struct SeqTrack {
    std::uint64_t first = 0;
    std::uint64_t highest = 0;
    std::uint64_t delivered = 0;
  };
  std::unordered_map<std::uint64_t, SeqTrack> seq_;
  // Per delivered message, the same sender and epoch as the one before, almost always:
  // remembered so that note_delivery() and make_message() skip the hash lookups and the
  // name lookup (seq_ never erases, so the pointer stays valid; names change only with
  // install() or a new view, which the key includes).
  std::uint32_t last_heard_ = 0;
  bool any_heard_ = false;
  std::uint64_t last_track_key_ = 0;
  SeqTrack* last_track_ = nullptr;
  std::uint32_t name_cache_sender_ = 0;
  std::uint64_t name_cache_view_ = 0;
  const void* name_cache_pipeline_ = nullptr;
  std::string name_cache_;
  std::uint64_t last_rx_ns_ = 0;
  double send_latency_ns_ = 0;
  double interarrival_ns_ = 0;
  double jitter_ns_ = 0;
  std::vector<std::pair<std::string, std::uint64_t>> carried_;  // counters of retired pipelines
  TransportCounters tx_carried_;                                // of retired transports
  struct ShellCounters {
    std::uint64_t delivered_messages = 0;
    std::uint64_t delivered_bytes = 0;
    std::uint64_t receive_queue_full = 0;
    std::uint64_t own_old_epoch = 0;
    std::uint64_t handler_exceptions = 0;
    std::uint64_t updates = 0;
    std::uint64_t final_ticks = 0;
    std::uint64_t send_only_discarded = 0;  ///< deliveries of a send-only member, dropped
    std::uint64_t inline_received = 0;  ///< messages receive() took straight off the socket
    std::uint64_t loop_stepped_aside = 0;
    std::uint64_t forgotten_unsent = 0;  ///< messages forgotten in the submit ring, never sent
  } shell_;
  ChannelStats final_stats_;  // taken by detach()
};

}  // namespace tmc::detail
