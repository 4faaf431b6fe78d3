// tmc::Channel, tmc::Message and the channel core that drives one pipeline on the loop.
// See channel_core.hpp for the threading and buffer design.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "runtime/channel/message_policy.hpp"
#include "runtime/channel_core.hpp"
#include "tmc/channel.hpp"
#include "tmc/wire.hpp"

namespace tmc {

// --- Message ---------------------------------------------------------------------------------

Message::Message(Packet* p, std::shared_ptr<detail::BufferHome> home) noexcept : packet_(p), home_(std::move(home)) {}

Message::Message(Message&& other) noexcept
    : sender(std::move(other.sender)),
      sender_id(other.sender_id),
      epoch(other.epoch),
      seq(other.seq),
      has_seq(other.has_seq),
      flags(other.flags),
      received_ns(other.received_ns),
      packet_(std::exchange(other.packet_, nullptr)),
      home_(std::move(other.home_)) {}

Message& Message::operator=(Message&& other) noexcept {
  if (this != &other) {
    reset();
    sender = std::move(other.sender);
    sender_id = other.sender_id;
    epoch = other.epoch;
    seq = other.seq;
    has_seq = other.has_seq;
    flags = other.flags;
    received_ns = other.received_ns;
    packet_ = std::exchange(other.packet_, nullptr);
    home_ = std::move(other.home_);
  }
  return *this;
}

void Message::reset() noexcept {
  if (packet_ != nullptr) {
    home_->give_back(packet_);
    packet_ = nullptr;
  }
  home_.reset();
}

std::span<const std::uint8_t> Message::payload() const noexcept {
  if (packet_ == nullptr) return {};
  return {packet_->payload(), packet_->payload_len};
}

std::string_view Message::text() const noexcept {
  const auto p = payload();
  return {reinterpret_cast<const char*>(p.data()), p.size()};
}

std::vector<std::uint8_t> Message::to_vector() const {
  const auto p = payload();
  return {p.begin(), p.end()};
}

std::uint64_t ChannelStats::counter(std::string_view name) const noexcept {
  for (const auto& [n, v] : counters) {
    if (n == name) return v;
  }
  return 0;
}

namespace detail {
namespace {

constexpr double kEwmaGain = 1.0 / 16.0;  // TCP's SRTT gain
constexpr std::uint64_t kNoPosition = ~std::uint64_t{0};
// The longest an inline receiver waits in a blocking read (SO_RCVTIMEO; the kernel rounds
// it up to a scheduler tick) before it falls back to ppoll() on the socket and its
// eventfd. It bounds how late a receiver in a hot wait sees a new handler or messages
// the loop queued; an idle receive() pays one such timed-out wait per call.
constexpr int kHotWaitUs = 2'000;

std::atomic<unsigned> g_name_counter{0};

/// One iteration of a busy wait: tells the CPU (and a hyperthread sibling) we are spinning.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::string generated_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "host");
  return std::string(host) + "-" + std::to_string(getpid()) + "-" + std::to_string(g_name_counter.fetch_add(1) + 1);
}

std::uint32_t name_hash(const std::string& s) { return wire::channel_hash(s.data(), s.size()); }

std::uint32_t random_nonzero_u32() {
  std::random_device rd;
  std::uint32_t v = 0;
  while (v == 0) v = rd();
  return v;
}

/// A message larger than a pool buffer travels through the submit ring as a pool packet
/// (which keeps the ring's slot accounting exact) whose `next` points at the large packet
/// holding the bytes; the loop swaps them here.
Packet* unwrap_large(Packet* p) noexcept {
  Packet* large = p->next;
  if (large == nullptr) return p;
  p->next = nullptr;
  p->release();
  return large;
}

std::string hex_id(std::uint32_t id) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x00000000";
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(9 - i)] = digits[(id >> (4 * i)) & 0xF];
  return s;
}

std::string member_name(const std::string& entry) {
  const auto at = entry.find('@');
  return at == std::string::npos ? entry : entry.substr(0, at);
}

/// Largest payload one datagram can carry when the compiler left it unset: MTU minus
/// IPv4 and UDP headers, our base header, a CRC trailer and room for extensions.
std::uint32_t effective_max_payload(const TransportPlan& t) {
  if (t.max_payload_bytes != 0) return t.max_payload_bytes;
  const std::uint32_t overhead = 20 + 8 + static_cast<std::uint32_t>(wire::kBaseHeaderBytes + wire::kTrailerBytes) + 64;
  return t.mtu_bytes > overhead ? t.mtu_bytes - overhead : 0;
}

void add_counters(TransportCounters& into, const TransportCounters& c) {
  into.datagrams_sent += c.datagrams_sent;
  into.datagram_bytes_sent += c.datagram_bytes_sent;
  into.send_errors += c.send_errors;
  into.datagrams_received += c.datagrams_received;
  into.datagram_bytes_received += c.datagram_bytes_received;
  into.receive_errors += c.receive_errors;
  into.truncated += c.truncated;
  into.rx_pool_exhausted += c.rx_pool_exhausted;
  into.tx_overflow += c.tx_overflow;
  into.gso_sends += c.gso_sends;
  into.gso_refused += c.gso_refused;
}

void add_named(std::vector<std::pair<std::string, std::uint64_t>>& into, const std::string& name, std::uint64_t v) {
  for (auto& [n, x] : into) {
    if (n == name) {
      x += v;
      return;
    }
  }
  into.emplace_back(name, v);
}

}  // namespace

// --- open / prepare ------------------------------------------------------------------------

ChannelCore::ChannelCore(std::shared_ptr<Runtime> runtime, const OpenOptions& options)
    : runtime_(std::move(runtime)),
      loop_(runtime_->loop()),
      options_(options),
      home_(std::make_shared<BufferHome>()),
      free_ring_(std::max<std::uint32_t>(options.send_queue_messages, 2)),
      submit_ring_(std::max<std::uint32_t>(options.send_queue_messages, 2)),
      send_slots_(static_cast<std::uint32_t>(free_ring_.capacity())) {
  rq_.resize(std::max<std::uint32_t>(options.receive_queue_messages, 1));
  to_deliver_.reserve(1024);
  delivering_.reserve(1024);
  events_.reserve(64);
  closed_future_ = closed_promise_.get_future().share();
  // Without an eventfd the inline receiver could not be woken for close() or update():
  // receive() then always waits for the loop.
  if (options.inline_receive) rx_wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

ChannelCore::~ChannelCore() {
  // close() ran (Channel's destructor calls it) or the channel never attached; either way
  // the loop no longer knows this core. Queued messages give their buffers back to home_.
  if (rx_wake_fd_ >= 0) ::close(rx_wake_fd_);
  rx_own_.release_all();  // the pools live in home_, which outlives this body
}

Status ChannelCore::open(const Manifest& manifest, const OpenOptions& options, std::shared_ptr<ChannelCore>& out) {
  std::shared_ptr<Runtime> rt = options.runtime ? options.runtime : Runtime::default_runtime();
  std::shared_ptr<ChannelCore> core(new ChannelCore(rt, options));
  Prepared p;
  if (Status s = core->prepare(manifest, false, p); !s) return s;
  core->loop_.call([&core, &p] {
    ExecGuard exec(*core);
    core->install(p);
    core->attach();
    core->start_pipeline();
  });
  out = std::move(core);
  return Status::ok();
}

Status ChannelCore::prepare(const Manifest& m, bool reuse_socket_if_possible, Prepared& out) {
  Plan plan;
  if (Status s = compile(m, options_.caps, Registry::builtin(), plan); !s) return s;
  if (plan.channel_hash == 0) plan.channel_hash = wire::channel_hash(m.id.data(), m.id.size());
  if (plan.channel_id.empty()) plan.channel_id = m.id;
  // A generated name is the member's identity for the channel's whole life: update() keeps
  // it (a new name would look like a new member, and the old one would be seen leaving).
  std::string current;
  if (reuse_socket_if_possible && m.name.empty()) current = name();
  out.name = !plan.member.empty() ? plan.member
             : !m.name.empty()    ? m.name
             : !current.empty()   ? current
                                  : generated_name();
  plan.member = out.name;
  out.sender = name_hash(out.name);
  out.max_payload = effective_max_payload(plan.transport);
  if (out.max_payload == 0) {
    return {Code::INVALID_ARGUMENT, "channel '" + m.id + "': an MTU of " + std::to_string(plan.transport.mtu_bytes) +
                                        " bytes leaves no room for a payload"};
  }
  plan.transport.max_payload_bytes = out.max_payload;

  // One pool buffer holds a whole received datagram, or a payload with the headroom in
  // front for header and extensions and a CRC trailer behind.
  std::uint32_t need = kHeadroom + std::max(plan.transport.mtu_bytes, out.max_payload + 64) + 64;
  need = (need + 63) & ~std::uint32_t{63};
  const std::uint32_t batch = std::max<std::uint32_t>(plan.transport.batch, 1);
  const std::uint32_t default_max_buffers = send_slots_ + static_cast<std::uint32_t>(rq_.size()) + 8 * batch + 4096;
  if (pool_ != nullptr && pool_->buffer_bytes() >= need) {
    out.pool = pool_;
  } else {
    const std::uint32_t max_buffers = options_.max_buffers != 0 ? options_.max_buffers : default_max_buffers;
    out.pool = home_->add_pool(need, send_slots_ + 2 * batch, max_buffers);
  }

  StageEnv env;
  env.channel = plan.channel_hash;
  env.sender = out.sender;
  env.epoch = random_nonzero_u32();
  env.seed = (static_cast<std::uint64_t>(m.faults.seed) << 32) ^ out.sender;
  env.max_payload_bytes = out.max_payload;
  if (Status s = Pipeline::build(plan, Registry::builtin(), env, *out.pool, *this, out.pipeline); !s) {
    return {s.code(), "channel '" + m.id + "': building the pipeline: " + s.message()};
  }
  // The ceiling above covers the queues and batches; full stage windows (reliability's
  // copies, reorder buffers) come on top, or a full window would starve the send path of
  // buffers and every retransmission would fail for want of one. An explicit max_buffers
  // is the application's word and stays as given.
  if (options_.max_buffers == 0) {
    const std::size_t want = std::size_t{default_max_buffers} + out.pipeline->max_held_packets();
    out.pool->raise_max_packets(static_cast<std::uint32_t>(std::min<std::size_t>(want, 1u << 22)));
  }

  out.spec.plan = plan.transport;
  out.spec.self_name = out.name;
  out.spec.members = m.members;
  // A send-only member still reads the socket when the plan has a membership stage: it
  // must hear heartbeats, acknowledgments and flow credit (messages it is given are discarded).
  out.spec.receive = plan.duplexity != Duplexity::send_only || plan.traits.membership;
  out.spec.socket_buffer_bytes = options_.socket_buffer_bytes;
  if (!reuse_socket_if_possible || transport_ == nullptr || !transport_->same_socket(out.spec)) {
    if (Status s = UdpTransport::open(out.spec, out.transport); !s) {
      return {s.code(), "channel '" + m.id + "': " + s.message()};
    }
  }
  for (const auto& e : m.members) {
    const std::string n = member_name(e);
    if (!n.empty()) out.names[name_hash(n)] = n;
  }
  out.names[out.sender] = out.name;
  out.manifest = m;
  out.plan = std::move(plan);
  return Status::ok();
}

void ChannelCore::install(Prepared& p) {
  pool_ = p.pool;
  pipeline_ = std::move(p.pipeline);
  if (p.transport) {
    if (transport_) {
      transport_->flush_blocking(500);
      stop_poll();
      add_counters(tx_carried_, transport_->counters());
      release_reader();
    }
    transport_ = std::move(p.transport);
  } else {
    (void)transport_->apply(p.spec);  // TTL / loopback on the live socket
  }
  receiving_ = p.spec.receive;
  rx_batch_.assign(std::max<std::uint32_t>(p.plan.transport.batch, 1), nullptr);
  names_ = std::move(p.names);
  name_cache_.clear();  // make_message() looks the names up again
  sender_id_.store(p.sender);
  max_payload_.store(p.max_payload);
  traits_.store(p.plan.traits);
  large_pool_.store(p.pool);
  entered_token_ = 0;
  duplexity_.store(static_cast<std::uint8_t>(p.plan.duplexity));
  synchronicity_.store(static_cast<std::uint8_t>(p.plan.synchronicity));
  std::lock_guard<std::mutex> lock(state_mu_);
  manifest_ = std::move(p.manifest);
  plan_ = std::move(p.plan);
  plan_.transport.interface_address = transport_->plan().interface_address;
  name_ = std::move(p.name);
}

// --- loop thread: wiring ----------------------------------------------------------------------

void ChannelCore::attach() {
  uv_async_init(loop_.uv(), &async_, &ChannelCore::on_async_cb);
  async_.data = this;
  uv_timer_init(loop_.uv(), &timer_);
  timer_.data = this;
  uv_timer_init(loop_.uv(), &aside_timer_);
  aside_timer_.data = this;
  open_handles_ = 3;
  // Without a timerfd (it cannot fail short of fd exhaustion) deadlines use timer_ alone.
  fine_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fine_fd_ >= 0) {
    fine_poll_ = new uv_poll_t;
    if (uv_poll_init(loop_.uv(), fine_poll_, fine_fd_) != 0) {
      delete fine_poll_;
      fine_poll_ = nullptr;
      ::close(fine_fd_);
      fine_fd_ = -1;
    } else {
      fine_poll_->data = this;
      ++open_handles_;
      fine_on_ = uv_poll_start(fine_poll_, UV_READABLE, &ChannelCore::on_fine_timer_cb) == 0;
    }
  }
  start_poll(false);
  refill_free();
  loop_.channels.fetch_add(1);
}

void ChannelCore::start_poll(bool writable) noexcept {
  if (!transport_) return;
  if (poll_ == nullptr) {
    poll_ = new uv_poll_t;
    if (uv_poll_init(loop_.uv(), poll_, transport_->fd()) != 0) {
      delete poll_;
      poll_ = nullptr;
      return;
    }
    poll_->data = this;
    ++open_handles_;
    // uv_poll_init made the socket non-blocking; the inline receiver's hot waits need it
    // blocking (every other read and write passes MSG_DONTWAIT).
    if (rx_wake_fd_ >= 0) (void)transport_->enable_blocking_wait(kHotWaitUs);
  }
  // While the loop stands aside for an inline receiver it does not poll readable: the
  // level-triggered poll would wake it (and spin) for datagrams it must not read.
  const int events = (receiving_ && !rx_aside_ ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  if (events == 0) {
    uv_poll_stop(poll_);
  } else {
    uv_poll_start(poll_, events, &ChannelCore::on_poll_cb);
  }
  poll_writable_ = writable;
}

void ChannelCore::stop_poll() noexcept {
  if (poll_ == nullptr) return;
  uv_poll_stop(poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), &ChannelCore::on_handle_closed);
  poll_ = nullptr;
  poll_writable_ = false;
}

void ChannelCore::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  if (h->type == UV_POLL) {
    auto* poll = reinterpret_cast<uv_poll_t*>(h);
    if (poll == self->fine_poll_) {
      ::close(self->fine_fd_);
      self->fine_fd_ = -1;
      self->fine_poll_ = nullptr;
    }
    delete poll;
  }
  if (--self->open_handles_ > 0 || !self->detached_.load()) return;
  // The last handle is closed: nothing on the loop refers to this core any more.
  // close() from an application thread holds a reference and waits for the promise: once
  // it is set, the core may be gone. close() from a handler left `keepalive_` instead,
  // which may be the last reference: then the core dies at the end of this function.
  std::shared_ptr<ChannelCore> keep = std::move(self->keepalive_);
  {
    ExecGuard exec(*self);
    self->release_reader();
    self->transport_.reset();  // leaves the group and closes the socket
  }
  self->closed_promise_.set_value();
}

void ChannelCore::on_async_cb(uv_async_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  self->drain();
  self->check_aside();
}

void ChannelCore::on_timer_cb(uv_timer_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  self->tick_now();
}

void ChannelCore::on_fine_timer_cb(uv_poll_t* h, int status, int events) {
  (void)events;
  auto* self = static_cast<ChannelCore*>(h->data);
  std::uint64_t expirations = 0;
  if (status < 0 || ::read(self->fine_fd_, &expirations, sizeof expirations) != sizeof expirations) return;
  ExecGuard exec(*self);
  self->tick_now();
}

void ChannelCore::tick_now() noexcept {
  if (!pipeline_) return;
  timer_deadline_ns_ = 0;
  const std::uint64_t now = RuntimeLoop::now_ns();
  take_returns();
  pipeline_->tick(now);
  after_input(now);
}

void ChannelCore::on_poll_cb(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  if (!self->pipeline_) return;
  if (status < 0) {
    // The socket reported an error (e.g. an ICMP error for a unicast peer); reading it
    // clears it, and recvmmsg counts it.
    events = UV_READABLE;
  }
  if ((events & UV_WRITABLE) != 0) self->on_writable();
  if ((events & UV_READABLE) != 0 && self->receiving_) {
    // An application thread blocked in receive() reads this socket itself: leave the
    // datagram to it, and stop polling until it is gone (see "Inline receive"). With a
    // handler set it leaves soon, but a read it is in must still be the only one.
    if (self->rx_inline_.load() && (!self->has_handler_.load() || self->rx_reading_.load() != 0)) {
      self->step_aside();
    } else {
      self->on_readable();
    }
  }
}

// --- loop thread: the hot paths ------------------------------------------------------------------

void ChannelCore::take_returns() noexcept {
  Packet* p = home_->take_all();
  while (p != nullptr) {
    Packet* next = p->next;
    p->release();
    p = next;
  }
  const std::uint32_t gone = abandoned_.exchange(0);
  outstanding_ = gone > outstanding_ ? 0 : outstanding_ - gone;
}

void ChannelCore::refill_free() noexcept {
  bool added = false;
  bool dry = false;  // the pool ran out: no quarter of the queue may come soon
  while (outstanding_ < send_slots_) {
    Packet* p = pool_->alloc();
    if (p == nullptr) {
      dry = true;
      break;
    }
    if (!free_ring_.try_push(p)) {
      p->release();
      break;
    }
    ++outstanding_;
    added = true;
  }
  if (added && slot_waiters_.load() > 0) {
    // A sender waits for free slots (the send queue was full). Waking it costs a futex
    // call on both sides, so it is woken for a quarter of the queue at a time, not for
    // every few slots the loop frees: the loop still has the rest of the submit ring to
    // work on meanwhile. When the submit ring has run empty the loop is about to idle, so
    // then it is woken whatever the count, and so it is when the pool ran dry (the
    // sender's wait also times out after 2 ms).
    const std::uint64_t free_now = free_ring_.pushed() - free_ring_.popped();
    const std::uint64_t queued = submit_ring_.pushed() - submit_ring_.popped();
    if (free_now >= send_slots_ / 4 || queued == 0 || dry) {
      std::lock_guard<std::mutex> lock(wait_mu_);
      wait_cv_.notify_all();
    }
  }
}

bool ChannelCore::pump_submitted(std::uint64_t now, bool on_loop) noexcept {
  // Returns whether the loop must come back: a full budget means senders may be ahead of
  // us (let other events run first); off the loop, a full socket needs the loop's write
  // polling.
  const std::size_t batch = rx_batch_.size();
  std::uint32_t budget = send_slots_;
  Packet* p = nullptr;
  // Backpressure: messages a stage queued for want of room (a full reliability window,
  // no flow credit) count against the send queue. Looked at every 16 messages, so the
  // backlog stays within the send queue's size + 16 and the check costs little per message.
  const std::size_t max_backlog = std::max<std::size_t>(send_slots_, 64);
  std::uint32_t until_check = 0;
  backpressured_ = false;
  while (!poll_writable_) {
    if (budget == 0) return true;
    if (until_check == 0) {
      if (pipeline_->send_backlog() >= max_backlog) {
        backpressured_ = true;
        return false;  // after_input() resumes when the stages have made room
      }
      until_check = 16;
    }
    --until_check;
    if (transport_->tx_pending() >= batch && !transport_->flush()) {
      if (!on_loop) return true;
      start_poll(true);
      return false;
    }
    if (!submit_ring_.try_pop(p)) break;
    --budget;
    --outstanding_;
    p = unwrap_large(p);
    if (p->token > entered_token_) entered_token_ = p->token;
    pipeline_->send(p, now);
  }
  return false;
}

bool ChannelCore::send_inline(bool on_loop, bool flush) noexcept {
  if (!pipeline_ || !transport_ || detached_.load()) return true;
  take_returns();
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  bool need_loop = pump_submitted(now, on_loop);
  if (flush) {
    if (on_loop) {
      flush_tx();
    } else if (transport_->flush()) {
      set_flushed(submit_ring_.popped());
    } else {
      need_loop = true;  // the socket is full: the loop polls for writable
    }
    refill_free();
    if (on_loop) {
      rearm_timer(now);
    } else if (pipeline_->next_deadline_ns() != timer_deadline_ns_) {
      need_loop = true;  // libuv timers belong to the loop thread
    }
  }
  // Deliveries and events a send produced go to handlers, which run on the loop only, and
  // never from inside another handler's dispatch.
  if (!to_deliver_.empty() || !events_.empty()) need_loop = true;
  return need_loop;
}

void ChannelCore::drain() noexcept {
  if (!pipeline_ || detached_.load()) return;
  take_returns();
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  const bool more = pump_submitted(now, true);
  after_input(now);
  if (more) uv_async_send(&async_);
}

void ChannelCore::flush_tx() noexcept {
  if (!transport_) return;
  if (!transport_->flush()) {
    if (!poll_writable_) start_poll(true);
    return;
  }
  if (poll_writable_) start_poll(false);
  set_flushed(submit_ring_.popped());
}

void ChannelCore::set_flushed(std::uint64_t pos) noexcept {
  flushed_pos_.store(pos);
  // Only synchronous senders wait for a position (senders waiting for a free slot are
  // woken by refill_free()); detaching wakes everyone.
  if (flush_waiters_.load() > 0 || (detached_.load() && waiters_.load() > 0)) {
    std::lock_guard<std::mutex> lock(wait_mu_);
    wait_cv_.notify_all();
  }
}

void ChannelCore::after_input(std::uint64_t now_ns) noexcept {
  // Acks or a tick may have opened a window that held the senders back.
  if (backpressured_ && pipeline_ && pipeline_->send_backlog() < std::max<std::size_t>(send_slots_, 64) / 2) {
    if (pump_submitted(now_ns, true)) uv_async_send(&async_);
  }
  flush_tx();
  dispatch();
  // Replies that handlers sent during dispatch went through the pipeline at once
  // (send_inline); they leave here, in one sendmmsg.
  if (transport_ && transport_->tx_pending() > 0) flush_tx();
  refill_free();
  rearm_timer(now_ns);
}

void ChannelCore::rearm_timer(std::uint64_t now_ns) noexcept {
  if (!pipeline_) return;
  const std::uint64_t d = pipeline_->next_deadline_ns();
  if (d == 0) {
    if (timer_deadline_ns_ != 0) uv_timer_stop(&timer_);
    timer_deadline_ns_ = 0;
    return;
  }
  if (d == timer_deadline_ns_) return;
  timer_deadline_ns_ = d;
  if (fine_on_ && d < now_ns + kFineTimerNs) {
    // uv_hrtime() is CLOCK_MONOTONIC, as the timerfd: arm it at the absolute deadline (a
    // past one fires at once; 0 would disarm it). A stale expiry from an earlier setting
    // only costs a tick that finds nothing due.
    uv_timer_stop(&timer_);
    itimerspec its{};
    const std::uint64_t at = std::max<std::uint64_t>(d, 1);
    its.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000);
    its.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000);
    if (::timerfd_settime(fine_fd_, TFD_TIMER_ABSTIME, &its, nullptr) == 0) return;
  }
  // libuv timers count whole milliseconds; round up so the tick does not come early.
  const std::uint64_t ms = d > now_ns ? (d - now_ns + 999'999) / 1'000'000 : 0;
  uv_timer_start(&timer_, &ChannelCore::on_timer_cb, ms, 0);
}

void ChannelCore::on_writable() noexcept {
  if (!transport_->flush()) return;  // still full; stay subscribed to writable
  start_poll(false);
  set_flushed(submit_ring_.popped());
  drain();
}

// The loop's side of inline receive. Handshake with leave_inline(): the receiver bumps
// rx_inline_exits_, clears rx_inline_, then reads aside_armed_; the timer clears
// aside_armed_, then reads rx_inline_ and rx_inline_exits_ (all sequentially consistent).
// So either the timer sees the receiver leave and keeps ticking, or the receiver sees the
// timer stopped and pokes the loop (check_aside restarts it): the loop never stands aside
// forever for a receiver that is gone.
void ChannelCore::step_aside() noexcept {
  if (rx_aside_) return;
  rx_aside_ = true;
  loop_aside_.store(true);
  ++shell_.loop_stepped_aside;
  start_poll(poll_writable_);
  check_aside();
}

void ChannelCore::resume_reading() noexcept {
  if (!rx_aside_) return;
  rx_aside_ = false;
  loop_aside_.store(false);
  aside_armed_.store(false);
  uv_timer_stop(&aside_timer_);
  start_poll(poll_writable_);  // level triggered: what arrived meanwhile is read at once
}

void ChannelCore::check_aside() noexcept {
  if (!rx_aside_ || aside_armed_.load() || detached_.load()) return;
  aside_seen_exits_ = rx_inline_exits_.load();
  aside_armed_.store(true);
  uv_timer_start(&aside_timer_, &ChannelCore::on_aside_timer_cb, 1, 1);
}

void ChannelCore::on_aside_timer_cb(uv_timer_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  if (!self->rx_aside_ || self->detached_.load()) {
    self->aside_armed_.store(false);
    uv_timer_stop(h);
    return;
  }
  const std::uint64_t exits = self->rx_inline_exits_.load();
  if (exits == self->aside_seen_exits_) {
    if (!self->rx_inline_.load()) {
      // Nobody has been in receive() for a whole tick: the loop reads again.
      self->resume_reading();
      return;
    }
    // The receiver has been blocked for a whole tick (an idle channel): stop ticking; its
    // exit pokes the loop. Re-check after clearing the flag (the handshake above).
    self->aside_armed_.store(false);
    if (self->rx_inline_.load() && self->rx_inline_exits_.load() == exits) {
      uv_timer_stop(h);
      return;
    }
    self->aside_armed_.store(true);
  }
  self->aside_seen_exits_ = self->rx_inline_exits_.load();
}

bool ChannelCore::is_own_old_packet(const Packet& p) const noexcept {
  if (own_old_epochs_.empty() || p.len < wire::kBaseHeaderBytes) return false;
  const std::uint8_t* d = p.data();
  if (wire::get_u16(d) != wire::kMagic) return false;
  const std::uint64_t key = (std::uint64_t{wire::get_u32(d + 12)} << 32) | wire::get_u32(d + 16);
  return std::find(own_old_epochs_.begin(), own_old_epochs_.end(), key) != own_old_epochs_.end();
}

int ChannelCore::read_batch(std::uint64_t& now) noexcept {
  const int n = transport_->receive(*pool_, rx_batch_.data(), static_cast<int>(rx_batch_.size()));
  feed_batch(n, now);
  return n;
}

void ChannelCore::feed_batch(int n, std::uint64_t& now) noexcept {
  if (n > 0) {
    now = RuntimeLoop::now_ns();
    now_ns_ = now;
    if (last_rx_ns_ != 0 && now > last_rx_ns_) {
      const double sample = static_cast<double>(now - last_rx_ns_) / n;
      const double err = sample - interarrival_ns_;
      interarrival_ns_ = interarrival_ns_ == 0 ? sample : interarrival_ns_ + kEwmaGain * err;
      jitter_ns_ += kEwmaGain * ((err < 0 ? -err : err) - jitter_ns_);
    }
    last_rx_ns_ = now;
    for (int i = 0; i < n; ++i) {
      Packet* p = rx_batch_[static_cast<std::size_t>(i)];
      if (is_own_old_packet(*p)) {
        // Our own datagram from before an update(), looped back by the kernel.
        ++shell_.own_old_epoch;
        p->release();
        continue;
      }
      pipeline_->receive(p, now);
    }
  }
}

void ChannelCore::on_readable() noexcept {
  take_returns();
  std::uint64_t now = RuntimeLoop::now_ns();
  // Bounded rounds keep one busy channel from starving the others; the poll is level
  // triggered, so whatever is left wakes us again.
  for (int round = 0; round < 16; ++round) {
    const int n = read_batch(now);
    if (n == 0) break;
    if (n < 0) continue;
    dispatch();
    if (transport_->tx_pending() > 0) flush_tx();  // handlers' replies, without waiting for more rounds
  }
  after_input(now);
}

// --- PipelineSink ------------------------------------------------------------------------------

void ChannelCore::transmit(Packet* p) noexcept {
  if (p->rx_ns != 0 && now_ns_ >= p->rx_ns) {
    // On the send path the shell keeps the send() time in rx_ns (see send()).
    const double sample = static_cast<double>(now_ns_ - p->rx_ns);
    send_latency_ns_ = send_latency_ns_ == 0 ? sample : send_latency_ns_ + kEwmaGain * (sample - send_latency_ns_);
  }
  if (!transport_) {
    p->release();
    return;
  }
  (void)transport_->enqueue(p);
}

void ChannelCore::deliver(Packet* p) noexcept {
  if (static_cast<Duplexity>(duplexity_.load(std::memory_order_relaxed)) == Duplexity::send_only) {
    ++shell_.send_only_discarded;
    p->release();
    return;
  }
  if (to_deliver_.size() == to_deliver_.capacity() && to_deliver_.size() >= 65536) {
    // A stage released an enormous burst at once; bound the shell's memory.
    ++shell_.receive_queue_full;
    p->release();
    return;
  }
  to_deliver_.push_back(p);
}

void ChannelCore::on_event(const Event& e) noexcept {
  if ((e.type == EventType::delivery_met || e.type == EventType::delivery_failed) && tracked_.load() > 0) {
    settle_outcome(e);
  }
  if (!has_event_handler_.load(std::memory_order_relaxed) || events_.size() >= 4096) return;
  try {
    ChannelEvent ce;
    static_cast<Event&>(ce) = e;
    if (e.sender != 0) ce.sender_name = name_of(e.sender);
    if (e.members != 0 && pipeline_) {
      const Group& g = pipeline_->group();
      for (std::size_t i = 0; i < g.slots(); ++i) {
        if ((e.members & slot_bit(static_cast<int>(i))) != 0) ce.members.push_back(g.member(static_cast<int>(i)).name);
      }
    }
    events_.push_back(std::move(ce));
  } catch (...) {
    // Out of memory: the event is lost to the handler; counters still count what happened.
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

void ChannelCore::settle_outcome(const Event& e) noexcept {
  // A fragmented message is several reliable packets under one token: it is met when every
  // fragment is, and failed as soon as one fails.
  try {
    // Looked up first: a default-constructed std::promise allocates its shared state, and
    // most met events belong to messages nobody waits on.
    std::optional<std::promise<DeliveryOutcome>> promise;
    MemberMask members = e.members;
    {
      std::lock_guard<std::mutex> lock(outcome_mu_);
      auto it = outcomes_.find(e.token);
      if (it == outcomes_.end()) return;
      if (e.type == EventType::delivery_met) {
        it->second.acked &= e.members;
        if (--it->second.remaining > 0) return;
        members = it->second.acked;
      }
      promise.emplace(std::move(it->second.promise));
      outcomes_.erase(it);
      tracked_.fetch_sub(1);
    }
    DeliveryOutcome o;
    o.state = e.type == EventType::delivery_met ? DeliveryOutcome::State::met : DeliveryOutcome::State::failed;
    if (pipeline_) {
      const Group& g = pipeline_->group();
      for (std::size_t i = 1; i < g.slots(); ++i) {
        if ((members & slot_bit(static_cast<int>(i))) == 0) continue;
        (o.state == DeliveryOutcome::State::met ? o.acked : o.missing).push_back(g.member(static_cast<int>(i)).name);
      }
    }
    promise->set_value(std::move(o));
  } catch (...) {
  }
}

void ChannelCore::abandon_outcomes(std::uint64_t up_to_token) noexcept {
  try {
    std::vector<Tracked> gone;
    {
      std::lock_guard<std::mutex> lock(outcome_mu_);
      for (auto it = outcomes_.begin(); it != outcomes_.end();) {
        if (it->first <= up_to_token) {
          gone.push_back(std::move(it->second));
          it = outcomes_.erase(it);
          tracked_.fetch_sub(1);
        } else {
          ++it;
        }
      }
    }
    for (auto& t : gone) {
      DeliveryOutcome o;
      o.state = DeliveryOutcome::State::abandoned;
      t.promise.set_value(std::move(o));
    }
  } catch (...) {
  }
}

void ChannelCore::note_delivery(const Packet& p) noexcept {
  if (!any_heard_ || p.sender != last_heard_) {
    if (heard_.insert(p.sender).second) heard_order_.push_back(p.sender);
    last_heard_ = p.sender;
    any_heard_ = true;
  }
  if (p.ext(wire::Ext::seq) == nullptr) return;
  const std::uint64_t key = (std::uint64_t{p.sender} << 32) | p.epoch;
  if (last_track_ == nullptr || key != last_track_key_) {
    last_track_ = &seq_[key];
    last_track_key_ = key;
  }
  SeqTrack& t = *last_track_;
  if (t.delivered == 0) {
    t.first = t.highest = p.seq;
  } else if (p.seq > t.highest) {
    t.highest = p.seq;
  } else if (p.seq < t.first) {
    t.first = p.seq;
  }
  ++t.delivered;
}

void ChannelCore::dispatch() noexcept {
  // Handlers run here, outside every pipeline call, so a handler may call back into the
  // channel (send, update, close) without re-entering a stage.
  if (!events_.empty()) {
    std::vector<ChannelEvent> events;
    events.swap(events_);
    if (event_handler_) {
      for (const ChannelEvent& e : events) {
        try {
          event_handler_(e);
        } catch (...) {
          ++shell_.handler_exceptions;
        }
      }
    }
    events.clear();
    if (events_.empty()) events_.swap(events);  // keep the capacity
  }
  if (to_deliver_.empty()) return;
  if (!handler_) {
    (void)queue_deliveries(true);
    return;
  }
  delivering_.swap(to_deliver_);
  // We hold the exec lock (the loop's ExecGuard): what the handler lets go of goes
  // straight back into the pool.
  const BufferHome::DirectReturn direct(*home_);
  const std::size_t n = delivering_.size();
  for (std::size_t i = 0; i < n; ++i) {
    Packet* p = delivering_[i];
    // Packets that an ordering stage held while a repair was on its way have gone cold
    // (at 1 % loss nearly every message waits behind some gap): fetch the packet a few
    // ahead and the payload of the one after next, so that the handler does not wait on
    // memory for each.
    if (i + 4 < n) __builtin_prefetch(delivering_[i + 4]);
    if (i + 2 < n) {
      const Packet* q = delivering_[i + 2];
      __builtin_prefetch(q->buf + q->payload_off);
    }
    note_delivery(*p);
    ++shell_.delivered_messages;
    shell_.delivered_bytes += p->payload_len;
    try {
      handler_(make_message(p));
    } catch (...) {
      ++shell_.handler_exceptions;
    }
  }
  delivering_.clear();
}

Message ChannelCore::make_message(Packet* p) {
  Message m(p, home_);
  m.sender_id = p->sender;
  m.epoch = p->epoch;
  m.seq = p->seq;
  m.has_seq = p->ext(wire::Ext::seq) != nullptr;
  m.flags = p->flags;
  m.received_ns = p->rx_ns;
  const std::uint64_t view = pipeline_ ? pipeline_->group().view_id() : 0;
  if (name_cache_.empty() || p->sender != name_cache_sender_ || view != name_cache_view_ ||
      pipeline_.get() != name_cache_pipeline_) {
    name_cache_ = name_of(p->sender);
    name_cache_sender_ = p->sender;
    name_cache_view_ = view;
    name_cache_pipeline_ = pipeline_.get();
  }
  m.sender = name_cache_;
  return m;
}

std::size_t ChannelCore::queue_deliveries(bool from_loop) noexcept {
  if (to_deliver_.empty()) return 0;
  delivering_.swap(to_deliver_);
  std::size_t added = 0;
  bool waiting = false;
  {
    std::lock_guard<std::mutex> lock(rq_mu_);
    for (Packet* p : delivering_) {
      note_delivery(*p);
      if (rq_count_ == rq_.size()) {
        // Drop-newest, like a full socket buffer: what is queued stays in order.
        ++shell_.receive_queue_full;
        p->release();
        continue;
      }
      ++shell_.delivered_messages;
      shell_.delivered_bytes += p->payload_len;
      rq_[(rq_head_ + rq_count_) % rq_.size()] = make_message(p);
      ++rq_count_;
      ++added;
    }
    rq_ready_.store(rq_count_, std::memory_order_release);
    waiting = rq_waiters_ > 0;
  }
  delivering_.clear();
  // Only a sleeping receive() needs the (costly) wake-up; a spinning one sees rq_ready_.
  if (added != 0 && waiting) rq_cv_.notify_all();
  // An inline receiver sleeps in poll(), not on rq_cv_ (a stage timer, or a send, made
  // the loop deliver while the receiver waits on the socket).
  if (added != 0 && from_loop && rx_inline_.load()) wake_inline();
  return added;
}

bool ChannelCore::pop_queued(Message& out) noexcept {
  std::lock_guard<std::mutex> lock(rq_mu_);
  if (rq_count_ == 0) return false;
  out = std::move(rq_[rq_head_]);
  rq_head_ = (rq_head_ + 1) % rq_.size();
  --rq_count_;
  rq_ready_.store(rq_count_, std::memory_order_relaxed);
  return true;
}

// --- cold paths on the loop -------------------------------------------------------------------

void ChannelCore::start_pipeline() noexcept {
  if (!pipeline_) return;
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  pipeline_->start(now);
  after_input(now);
}

void ChannelCore::flush_pipeline() noexcept {
  // Stages hold packets for later (reorder buffers, delayed or paced packets). Let them
  // say goodbye (on_stop), then give them their final ticks now, as if each deadline had
  // passed, so they release what they hold.
  std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  if (pipeline_) pipeline_->stop(now);
  for (int round = 0; round < 16 && pipeline_; ++round) {
    const std::uint64_t d = pipeline_->next_deadline_ns();
    if (d == 0) break;
    now = std::max(now, d);
    pipeline_->tick(now);
    ++shell_.final_ticks;
    if (transport_ && transport_->tx_pending() >= rx_batch_.size()) transport_->flush_blocking(1000);
  }
  if (transport_) transport_->flush_blocking(1000);
  dispatch();
}

void ChannelCore::retire_pipeline() noexcept {
  if (!pipeline_) return;
  try {
    const CounterSnapshot snap = pipeline_->counters();
    for (std::size_t i = 0; i < snap.names.size(); ++i) add_named(carried_, snap.names[i], snap.values[i]);
    own_old_epochs_.push_back((std::uint64_t{pipeline_->env().sender} << 32) | pipeline_->env().epoch);
  } catch (...) {
    // Out of memory while copying names: the counters of this pipeline are lost, nothing else.
  }
  pipeline_.reset();  // stages release whatever they still hold
  // Reliable messages the old pipeline still held will never be settled.
  if (tracked_.load() > 0) abandon_outcomes(entered_token_);
  entered_token_ = 0;
}

void ChannelCore::detach() noexcept {
  if (detached_.load()) return;
  ExecGuard exec(*this);
  closed_.store(true);
  // A send() that passed its closed check is still pushing; let it finish so that every
  // message send() accepted is flushed below.
  while (active_senders_.load() != 0) std::this_thread::yield();
  take_returns();
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  Packet* p = nullptr;
  while (submit_ring_.try_pop(p)) {
    --outstanding_;
    p = unwrap_large(p);
    if (pipeline_) {
      pipeline_->send(p, now);
    } else {
      p->release();
    }
    if (transport_ && transport_->tx_pending() >= rx_batch_.size()) transport_->flush_blocking(1000);
  }
  flush_pipeline();
  while (free_ring_.try_pop(p)) p->release();
  outstanding_ = 0;
  retire_pipeline();
  abandon_outcomes(~std::uint64_t{0});
  for (Packet* q : to_deliver_) q->release();
  to_deliver_.clear();
  try {
    final_stats_ = build_stats();
  } catch (...) {
  }
  handler_ = nullptr;
  event_handler_ = nullptr;
  detached_.store(true);
  set_flushed(kNoPosition);
  {
    std::lock_guard<std::mutex> lock(rq_mu_);
  }
  rq_cv_.notify_all();
  wake_inline();  // an inline receiver sees detached_ and returns CLOSED
  release_reader();  // ... also from a hot wait, at once
  uv_timer_stop(&timer_);
  uv_timer_stop(&aside_timer_);
  aside_armed_.store(false);
  stop_poll();
  fine_on_ = false;
  if (fine_poll_ != nullptr) {
    uv_poll_stop(fine_poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(fine_poll_), &ChannelCore::on_handle_closed);
    // on_handle_closed deletes it and closes fine_fd_.
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &ChannelCore::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&aside_timer_), &ChannelCore::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), &ChannelCore::on_handle_closed);
  loop_.channels.fetch_sub(1);
}

ChannelStats ChannelCore::build_stats() const {
  ChannelStats s;
  s.counters = carried_;
  if (pipeline_) {
    const CounterSnapshot snap = pipeline_->counters();
    for (std::size_t i = 0; i < snap.names.size(); ++i) add_named(s.counters, snap.names[i], snap.values[i]);
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
      {"shell.datagrams_received", t.datagrams_received},
      {"shell.datagram_bytes_received", t.datagram_bytes_received},
      {"shell.receive_errors", t.receive_errors},
      {"shell.truncated", t.truncated},
      {"shell.rx_pool_exhausted", t.rx_pool_exhausted},
      {"shell.delivered_messages", shell_.delivered_messages},
      {"shell.delivered_bytes", shell_.delivered_bytes},
      {"shell.receive_queue_full", shell_.receive_queue_full},
      {"shell.own_old_epoch", shell_.own_old_epoch},
      {"shell.handler_exceptions", shell_.handler_exceptions},
      {"shell.updates", shell_.updates},
      {"shell.final_ticks", shell_.final_ticks},
      {"shell.send_only_discarded", shell_.send_only_discarded},
      {"shell.inline_received", shell_.inline_received},
      {"shell.loop_stepped_aside", shell_.loop_stepped_aside},
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

// --- application threads --------------------------------------------------------------------

Status ChannelCore::send(const std::uint8_t* data, std::size_t n, const MessageManifest* per_message,
                         std::future<DeliveryOutcome>* outcome) {
  if (data == nullptr && n != 0) return {Code::INVALID_ARGUMENT, "send: null data with a non-zero size"};
  // Counted from here until the packet is pushed, so that close() can wait for this send
  // to finish and then flush it (see detach()).
  class Active {
   public:
    explicit Active(std::atomic<int>& n) : n_(&n) { n_->fetch_add(1); }
    ~Active() { leave(); }
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;
    void leave() noexcept {
      if (n_ != nullptr) n_->fetch_sub(1);
      n_ = nullptr;
    }

   private:
    std::atomic<int>* n_;
  } active(active_senders_);
  if (closed_.load()) return {Code::CLOSED, "send: the channel is closed"};
  if (static_cast<Duplexity>(duplexity_.load()) == Duplexity::receive_only) {
    return {Code::NOT_PERMITTED_BY_DUPLEXITY,
            "send: member '" + name() + "' of channel '" + plan().channel_id + "' is receive-only (duplexity)"};
  }
  const ChannelTraits traits = traits_.load();
  MessageFlags flags;
  if (Status s = message_flags(traits, per_message, flags); !s) return s;
  const std::uint32_t max = max_payload_.load();
  Packet* large = nullptr;
  if (n > traits.max_message_bytes) {
    return {Code::MESSAGE_TOO_LARGE, "send: a message of " + std::to_string(n) +
                                         " bytes is larger than the channel's 'max message bytes' (" +
                                         std::to_string(traits.max_message_bytes) + ")"};
  }
  if (n > max) {
    if (!traits.fragments()) {
      return {Code::MESSAGE_TOO_LARGE, "send: a message of " + std::to_string(n) +
                                           " bytes is larger than the largest payload one datagram of this channel "
                                           "carries (" +
                                           std::to_string(max) + " bytes) and 'max message bytes' is " +
                                           std::to_string(traits.max_message_bytes)};
    }
    PacketPool* lp = large_pool_.load();
    large = lp != nullptr ? lp->alloc_large(static_cast<std::uint32_t>(n)) : nullptr;
    if (large == nullptr) {
      return {Code::WOULD_BLOCK, "send: no memory for a message of " + std::to_string(n) +
                                     " bytes (large messages in flight use the pool's large budget)"};
    }
  }
  // Frees the large buffer on every early return below.
  struct LargeGuard {
    Packet*& p;
    ~LargeGuard() {
      if (p != nullptr) p->release();
    }
  } large_guard{large};
  const bool reliable = flags.reliable;
  const bool on_loop = loop_.on_loop_thread();
  Packet* p = nullptr;
  for (;;) {
    if (free_ring_.try_pop(p)) {
      // A large message only needs the packet as its carrier (see unwrap_large()).
      if (large != nullptr || p->cap >= kHeadroom + n + wire::kTrailerBytes + 64) break;
      // A buffer from a smaller pool of before an update(): hand it back and take another.
      home_->give_back(p);
      abandoned_.fetch_add(1);
      continue;
    }
    if (closed_.load()) return {Code::CLOSED, "send: the channel is closed"};
    uv_async_send(&async_);  // the loop restocks the free ring when it drains
    if (on_loop || !options_.send_blocks_when_full) {
      return {Code::WOULD_BLOCK, on_loop ? "send: the send queue is full and a handler cannot wait for the loop"
                                         : "send: the send queue is full (send_blocks_when_full is false)"};
    }
    waiters_.fetch_add(1);
    slot_waiters_.fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(wait_mu_);
      wait_cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
    slot_waiters_.fetch_sub(1);
    waiters_.fetch_sub(1);
  }
  const std::uint64_t token = next_token_.fetch_add(1, std::memory_order_relaxed);
  Packet* carrier = p;
  if (large != nullptr) {
    p->reset_for_send(0);
    p->next = large;  // unwrap_large() swaps them on the loop
    p = large;
    large = nullptr;
  } else {
    p->reset_for_send(static_cast<std::uint32_t>(n));
  }
  if (n != 0) std::memcpy(p->payload(), data, n);
  p->flags = flags.wire;
  p->token = token;
  p->wants_outcome = reliable && (outcome != nullptr || (static_cast<Synchronicity>(synchronicity_.load()) ==
                                                          Synchronicity::sync &&
                                                      !on_loop));
  // Outcomes: a reliable message's promise is settled by its delivery event; the sync
  // wait below needs one too.
  const bool sync = static_cast<Synchronicity>(synchronicity_.load()) == Synchronicity::sync && !on_loop;
  std::future<DeliveryOutcome> tracked;
  if (reliable && (outcome != nullptr || sync)) {
    Tracked t;
    tracked = t.promise.get_future();
    const std::uint32_t frag = traits.fragment_bytes;
    if (n > max && frag > 0) t.remaining = static_cast<std::uint32_t>((n + frag - 1) / frag);
    std::lock_guard<std::mutex> lock(outcome_mu_);
    outcomes_.emplace(token, std::move(t));
    tracked_.fetch_add(1);
  } else if (outcome != nullptr) {
    std::promise<DeliveryOutcome> promise;
    promise.set_value(DeliveryOutcome{});
    *outcome = promise.get_future();
  }
  // Messages the loop has not taken yet: this send is part of a stream (the loop is poked
  // already and will take this one with them), so it can neither go inline nor needs the
  // clock, which on a virtual machine costs about as much as the rest of send(). Such
  // messages give no send latency sample (rx_ns 0); the first of each stream does.
  // The send right after such a stream has no clock reading to measure its gap against:
  // it counts as close (not inline), as it would have been with one.
  const bool streaming = !on_loop && submit_ring_.pushed() != submit_ring_.popped();
  bool after_stream = false;
  if (streaming) {
    if (!stream_tail_.load(std::memory_order_relaxed)) stream_tail_.store(true, std::memory_order_relaxed);
  } else if (stream_tail_.load(std::memory_order_relaxed)) {
    after_stream = stream_tail_.exchange(false, std::memory_order_relaxed);
  }
  const std::uint64_t sent_ns = streaming ? 0 : RuntimeLoop::now_ns();
  p->rx_ns = sent_ns;  // send() time, for the send latency estimate
  const std::uint64_t prev_ns = streaming ? 0 : last_send_ns_.exchange(sent_ns, std::memory_order_relaxed);
  std::uint64_t pos = 0;
  p = carrier;
  if (!submit_ring_.try_push(p, &pos)) {
    // Cannot happen: the loop never hands out more packets than the ring holds.
    home_->give_back(p);
    abandoned_.fetch_add(1);
    return {Code::INTERNAL, "send: the submit ring overflowed"};
  }
  // Hand the message to the pipeline on this thread when we can (see "Inline sends" in
  // channel_core.hpp); otherwise wake the loop for it.
  bool poke = true;
  if (on_loop) {
    if (loop_holds_exec_) {
      // Inside one of this channel's callbacks (a handler): through the pipeline now; the
      // loop flushes right after the handler returns.
      poke = send_inline(true, false);
    } else if (exec_mu_.try_lock()) {
      loop_holds_exec_ = true;
      poke = send_inline(true, true);
      loop_holds_exec_ = false;
      exec_mu_.unlock();
    }
  } else if (!streaming && !after_stream && options_.inline_send &&
             (prev_ns >= sent_ns || sent_ns - prev_ns >= options_.inline_send_min_gap_ns)) {
    if (exec_mu_.try_lock()) {
      poke = send_inline(false, true);
      exec_mu_.unlock();
    }
  }
  if (poke) uv_async_send(&async_);
  active.leave();
  if (sync && tracked.valid()) {
    // Settled (met, failed, or abandoned by close/update) by the loop; never waits forever,
    // because the retry budget bounds every reliable message.
    DeliveryOutcome o = tracked.get();
    if (o.state == DeliveryOutcome::State::failed) {
      std::string who;
      for (const auto& m : o.missing) who += (who.empty() ? "" : ", ") + m;
      return {Code::DELIVERY_FAILED, "send: not acknowledged by " + (who.empty() ? std::string("?") : who)};
    }
    if (o.state == DeliveryOutcome::State::abandoned) {
      return {Code::CLOSED, "send: the channel closed or was updated before the message was acknowledged"};
    }
    return Status::ok();
  }
  if (tracked.valid() && outcome != nullptr) *outcome = std::move(tracked);
  if (sync) {
    waiters_.fetch_add(1);
    flush_waiters_.fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(wait_mu_);
      wait_cv_.wait(lock, [&] { return flushed_pos_.load() > pos || detached_.load(); });
    }
    flush_waiters_.fetch_sub(1);
    waiters_.fetch_sub(1);
  }
  return Status::ok();
}

Status ChannelCore::update(const Manifest& m) {
  if (closed_.load()) return {Code::CLOSED, "update: the channel is closed"};
  std::lock_guard<std::mutex> serial(update_mu_);
  auto p = std::make_shared<Prepared>();
  // Reading pool_ and transport_ here is safe: only install() changes them, on the loop,
  // under update_mu_ held by this thread or during open().
  if (Status s = prepare(m, true, *p); !s) return s;
  auto swap = [this, p]() -> Status {
    ExecGuard exec(*this);
    if (detached_.load()) return {Code::CLOSED, "update: the channel closed meanwhile"};
    take_returns();
    flush_pipeline();
    retire_pipeline();
    const bool new_socket = p->transport != nullptr;
    // With a new pool, free buffers of the old one stay in the free ring; send() uses
    // those that are large enough and hands back the others.
    install(*p);
    if (new_socket) start_poll(false);
    start_pipeline();
    ++shell_.updates;
    timer_deadline_ns_ = 0;
    uv_timer_stop(&timer_);
    refill_free();
    drain();  // messages queued before the swap go through the new pipeline
    // An inline receiver may sleep in poll() on the old socket (closed by install()).
    wake_inline();
    return Status::ok();
  };
  if (loop_.on_loop_thread()) {
    // Inside a handler: deliveries of the old pipeline are being dispatched; swap after.
    loop_.post([swap] { (void)swap(); });
    return Status::ok();
  }
  return loop_.call(swap);
}

Status ChannelCore::update(const Value& changes) {
  Manifest current = manifest();
  Manifest next;
  Diagnostics diag;
  if (!update_manifest(current, changes, next, diag)) {
    return {Code::INVALID_MANIFEST, diag.to_string()};
  }
  return update(next);
}

Status ChannelCore::receive(Message& out, std::chrono::nanoseconds timeout) {
  if (static_cast<Duplexity>(duplexity_.load()) == Duplexity::send_only) {
    return {Code::NOT_PERMITTED_BY_DUPLEXITY,
            "receive: member '" + name() + "' of channel '" + plan().channel_id + "' is send-only (duplexity)"};
  }
  // Waits longer than a year are "forever" (and cannot overflow the clock).
  const auto limit = std::chrono::hours(24 * 365);
  const auto wait = timeout > limit ? std::chrono::nanoseconds(limit) : timeout;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool tried_inline = false;
  if (rx_wake_fd_ >= 0 && rq_ready_.load(std::memory_order_acquire) == 0 && !has_handler_.load() &&
      !detached_.load() && !loop_.on_loop_thread()) {
    // Read the socket on this thread (see "Inline receive" in channel_core.hpp); one
    // thread at a time, the others wait on the queue below.
    bool expected = false;
    if (rx_inline_.compare_exchange_strong(expected, true)) {
      const bool got = receive_inline(out, deadline);
      leave_inline();
      if (got) return Status::ok();
      tried_inline = true;  // timed out, closed, or a handler was set: the queue path decides
    }
  }
  if (!tried_inline && options_.receive_spin_ns != 0 && rq_ready_.load(std::memory_order_relaxed) == 0) {
    // Bounded busy wait: a message that arrives within it costs no thread wake-up.
    const auto spin = std::min<std::chrono::nanoseconds>(wait, std::chrono::nanoseconds(options_.receive_spin_ns));
    const std::uint64_t until_ns = RuntimeLoop::now_ns() + static_cast<std::uint64_t>(spin.count());
    while (rq_ready_.load(std::memory_order_acquire) == 0 && !detached_.load(std::memory_order_relaxed) &&
           RuntimeLoop::now_ns() < until_ns) {
      cpu_relax();
    }
  }
  std::unique_lock<std::mutex> lock(rq_mu_);
  if (rq_count_ == 0 && !detached_.load()) {
    ++rq_waiters_;
    rq_cv_.wait_until(lock, deadline, [&] { return rq_count_ > 0 || detached_.load(); });
    --rq_waiters_;
  }
  if (rq_count_ > 0) {
    out = std::move(rq_[rq_head_]);
    rq_head_ = (rq_head_ + 1) % rq_.size();
    --rq_count_;
    rq_ready_.store(rq_count_, std::memory_order_relaxed);
    return Status::ok();
  }
  if (detached_.load() || closed_.load()) return {Code::CLOSED, "receive: the channel is closed and its queue is empty"};
  return {Code::TIMED_OUT, "receive: no message within the timeout"};
}

bool ChannelCore::try_receive(Message& out) {
  if (pop_queued(out)) return true;
  // While the loop stands aside for an inline receiver nobody else reads the socket:
  // read it here, if the channel's lock is free. (Never on the loop thread, which may
  // hold the lock already.)
  if (!loop_aside_.load() || has_handler_.load() || loop_.on_loop_thread()) return false;
  bool poke = false;
  {
    std::unique_lock<std::mutex> exec(exec_mu_, std::try_to_lock);
    // rx_reading_: the inline receiver is in a blocking read (or holds what it read), and
    // reading here too could put datagrams into the pipeline out of socket order.
    if (!exec.owns_lock() || detached_.load() || !pipeline_ || !transport_ || !receiving_ ||
        rx_reading_.load() != 0) {
      return false;
    }
    poke = inline_round(RuntimeLoop::now_ns(), true);
  }
  if (poke) uv_async_send(&async_);
  return pop_queued(out);
}

// --- inline receive (see channel_core.hpp) -----------------------------------------------------

bool ChannelCore::receive_inline(Message& out, std::chrono::steady_clock::time_point deadline) {
  // Hot waits first (a blocking read: waiting and reading in one system call), cold waits
  // (ppoll on the socket and the eventfd) once a hot wait timed out; see "Inline receive"
  // in channel_core.hpp.
  bool hot = true;
  bool read = false;  // cold: ppoll saw the socket ready (or a hot wait was not possible)
  int got = 0;        // what the last hot wait returned
  for (;;) {
    int fd = -1;
    int armed = 0;
    std::uint64_t due_ns = 0;
    bool poke = false;
    bool popped = false;
    bool timed_out = false;
    std::chrono::nanoseconds wait{0};
    {
      // A blocking lock, unlike send(): the holder (the loop, or an inline send) only runs
      // bounded work under it and never waits for this thread.
      std::lock_guard<std::mutex> exec(exec_mu_);
      const bool usable = !detached_.load() && pipeline_ && transport_ && receiving_;
      int pre_read = 0;
      if (rx_reading_.load() != 0) {
        // Back from a hot wait. What it read belongs to the pipeline, in socket order,
        // unless its socket is gone (rx_gen_ moved on): then it is dropped with the socket.
        if (got > 0 && usable && rx_own_gen_ == rx_gen_) {
          // (rx_batch_ holds a whole read: an update() that changes the batch size opens a
          // new socket, which moves rx_gen_ on.)
          got = std::min(got, static_cast<int>(rx_batch_.size()));
          pre_read = transport_->take(rx_own_, got, rx_batch_.data());
          // A full batch: more may be waiting; read on without blocking.
          if (static_cast<std::size_t>(got) == rx_batch_.size()) read = true;
        }
        rx_reading_.store(0);
      }
      if (!usable || (pre_read == 0 && has_handler_.load())) return false;
      poke = inline_round(RuntimeLoop::now_ns(), read, pre_read);
      read = false;
      popped = pop_queued(out);
      const auto now = std::chrono::steady_clock::now();
      timed_out = now >= deadline;
      if (!popped && !timed_out && !has_handler_.load()) {
        wait = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        due_ns = pipeline_->next_deadline_ns();
        if (due_ns != 0) {
          // The pipeline's next stage deadline: inline_round ticks it when we wake.
          const std::uint64_t t = RuntimeLoop::now_ns();
          wait = std::min(wait, std::chrono::nanoseconds(due_ns > t ? due_ns - t : 0));
        }
        fd = transport_->fd();
        // A hot wait only when it cannot overrun the caller's timeout or a stage deadline
        // (SO_RCVTIMEO is fixed per socket: changing it would cost a system call).
        if (hot && transport_->blocking_wait() && wait >= std::chrono::microseconds(kHotWaitUs)) {
          armed = transport_->arm(rx_own_, *pool_, static_cast<int>(rx_batch_.size()));
          if (armed > 0) {
            rx_own_gen_ = rx_gen_;
            rx_reading_.store(2);  // from here until the read returns, release_reader() waits
          }
        }
      }
    }
    if (poke) uv_async_send(&async_);
    if (popped) return true;
    if (armed == 0 && (timed_out || has_handler_.load())) return false;
    if (armed > 0) {
      got = UdpTransport::wait_read(fd, rx_own_, armed);
      const int err = got < 0 ? errno : 0;
      rx_reading_.store(1);  // the read is over; the descriptor may be closed now
      // Timed out (EAGAIN): an idle channel; wait in ppoll from now on. A socket that was
      // shut down returns at once with nothing (or an empty datagram): the next round sees
      // why (closed, or a new socket) under the lock.
      if (got < 0 && err != EINTR) hot = false;
      continue;
    }
    hot = false;  // once cold, stay cold for the rest of this receive()
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(wait.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(wait.count() % 1'000'000'000);
    pollfd fds[2] = {{fd, POLLIN, 0}, {rx_wake_fd_, POLLIN, 0}};
    const int r = ::ppoll(fds, 2, &ts, nullptr);
    read = r < 0 || fds[0].revents != 0;
    if (r > 0 && (fds[1].revents & POLLIN) != 0) {
      // Reset the eventfd before looking at the state again (next round, under the lock),
      // so a wake-up sent after that look is never lost.
      std::uint64_t v = 0;
      if (::read(rx_wake_fd_, &v, sizeof v) < 0) {
        // EAGAIN: another reader took it; nothing to do.
      }
    }
  }
}

bool ChannelCore::inline_round(std::uint64_t now, bool read, int pre_read) noexcept {
  take_returns();
  now_ns_ = now;
  if (pre_read != 0) feed_batch(pre_read, now);
  // Read until something is delivered or the socket is empty (own datagrams and drops
  // deliver nothing); bounded like on_readable. A short batch means the socket is empty.
  for (int round = 0; read && round < 16 && to_deliver_.empty(); ++round) {
    const int n = read_batch(now);
    if (n == 0 || (n > 0 && static_cast<std::size_t>(n) < rx_batch_.size())) break;
  }
  const std::uint64_t due = pipeline_->next_deadline_ns();
  if (due != 0 && due <= RuntimeLoop::now_ns()) {
    now = RuntimeLoop::now_ns();
    now_ns_ = now;
    pipeline_->tick(now);
  }
  shell_.inline_received += queue_deliveries(false);
  // What this thread cannot do goes to the loop: handlers for events, write polling for a
  // full socket, and the libuv timer when a stage deadline moved earlier than the loop's
  // (it must fire even after this thread leaves receive()).
  bool poke = !events_.empty();
  if (transport_->tx_pending() > 0) {
    if (transport_->flush()) {
      set_flushed(submit_ring_.popped());
    } else {
      poke = true;
    }
  }
  const std::uint64_t d = pipeline_->next_deadline_ns();
  if (d != 0 && (timer_deadline_ns_ == 0 || d < timer_deadline_ns_)) poke = true;
  return poke;
}

void ChannelCore::release_reader() noexcept {
  // The inline receiver may be in (or just before) a blocking read of this socket. Shut
  // its receive side down: that wakes the read, and a read that starts later returns at
  // once. Wait until it has returned before the descriptor is closed, so it is never
  // read after close (or after the number is reused). Bounded: a few microseconds, and
  // at worst the read's SO_RCVTIMEO.
  ++rx_gen_;
  if (rx_reading_.load() != 2 || !transport_) return;
  (void)::shutdown(transport_->fd(), SHUT_RD);
  while (rx_reading_.load() == 2) std::this_thread::yield();
}

void ChannelCore::leave_inline() noexcept {
  rx_inline_exits_.fetch_add(1);
  rx_inline_.store(false);
  // The loop stopped its aside timer while we were blocked: have it start again, so it
  // resumes reading if we do not come back (see on_aside_timer_cb for the handshake).
  if (loop_aside_.load() && !aside_armed_.load() && !detached_.load()) uv_async_send(&async_);
}

void ChannelCore::wake_inline() noexcept {
  if (rx_wake_fd_ < 0) return;
  const std::uint64_t one = 1;
  if (::write(rx_wake_fd_, &one, sizeof one) < 0) {
    // EAGAIN: the counter is saturated, so the receiver is woken anyway.
  }
}

void ChannelCore::set_message_handler(Channel::MessageHandler h) {
  if (detached_.load()) return;
  has_handler_.store(static_cast<bool>(h));
  // Always posted, never inline: a handler replacing itself must not destroy the function
  // that is running.
  loop_.post([this, h = std::move(h)]() mutable {
    if (detached_.load()) return;
    ExecGuard exec(*this);
    handler_ = std::move(h);
    // Handlers run on the loop: it reads the socket again.
    if (handler_) resume_reading();
  });
  // An inline receiver sees has_handler_ and goes back to waiting on the queue.
  wake_inline();
}

void ChannelCore::set_event_handler(Channel::EventHandler h) {
  if (detached_.load()) return;
  loop_.post([this, h = std::move(h)]() mutable {
    if (detached_.load()) return;
    event_handler_ = std::move(h);
    has_event_handler_.store(static_cast<bool>(event_handler_));
  });
}

std::vector<MemberStatus> ChannelCore::view() {
  if (detached_.load() || !traits_.load().membership) return {};
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
  if (!traits_.load().membership) {
    return {Code::NOT_AVAILABLE, "wait_for_members: the channel's plan has no membership stage (it comes with "
                                 "reliability, flow control or group ordering)"};
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (detached_.load()) return {Code::CLOSED, "wait_for_members: the channel is closed"};
    const std::size_t alive = loop_.call([this] {
      ExecGuard exec(*this);
      return pipeline_ ? static_cast<std::size_t>(mask_count(pipeline_->group().alive())) : std::size_t{0};
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
  if (traits_.load().membership && !detached_.load()) {
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
  if (detached_.load()) return compute();
  return loop_.call([this, &compute] {
    ExecGuard exec(*this);  // heard_order_ and names_ change under exec (inline receive too)
    return compute();
  });
}

ChannelStats ChannelCore::stats() {
  if (detached_.load()) return final_stats_;
  return loop_.call([this] {
    ExecGuard exec(*this);
    return detached_.load() ? final_stats_ : build_stats();
  });
}

Plan ChannelCore::plan() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return plan_;
}

Manifest ChannelCore::manifest() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return manifest_;
}

std::string ChannelCore::name() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return name_;
}

void ChannelCore::close() noexcept {
  const bool first = !closed_.exchange(true);
  if (waiters_.load() > 0) {
    std::lock_guard<std::mutex> lock(wait_mu_);
    wait_cv_.notify_all();
  }
  if (loop_.on_loop_thread()) {
    // From a handler: the loop cannot wait for itself. Detach after this callback.
    if (first) {
      try {
        // Nobody waits for this close, so the core keeps itself alive until its last
        // handle is closed (on_handle_closed drops the reference).
        loop_.post([self = shared_from_this()] {
          self->keepalive_ = self;
          self->detach();
        });
      } catch (...) {
      }
    }
    return;
  }
  try {
    if (first) loop_.post([this] { detach(); });
    closed_future_.wait();
  } catch (...) {
  }
}

}  // namespace detail

// --- Channel ---------------------------------------------------------------------------------

Channel::Channel() noexcept = default;
Channel::Channel(std::shared_ptr<detail::ChannelCore> core) noexcept : core_(std::move(core)) {}
Channel::~Channel() { close(); }
Channel::Channel(Channel&& other) noexcept = default;
Channel& Channel::operator=(Channel&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
  }
  return *this;
}

Status Channel::try_open(const Manifest& manifest, const OpenOptions& options, Channel& out) noexcept {
  try {
    std::shared_ptr<detail::ChannelCore> core;
    Status s = detail::ChannelCore::open(manifest, options, core);
    if (!s) return s;
    out = Channel(std::move(core));
    return Status::ok();
  } catch (const Error& e) {
    return e.status();
  } catch (const std::exception& e) {
    return {Code::INTERNAL, std::string("opening channel '") + manifest.id + "': " + e.what()};
  }
}

Status Channel::try_open(const Value& map, const OpenOptions& options, Channel& out) noexcept {
  try {
    if (!map.is_map()) {
      return {Code::INVALID_MANIFEST, "a manifest given as a value must be a map of properties, not a " +
                                          std::string(map.type_name()) +
                                          " (for a YAML file use Channel::open_yaml_file)"};
    }
    Manifest m;
    Diagnostics diag;
    if (!manifest_from_value(map, m, diag)) return {Code::INVALID_MANIFEST, diag.to_string()};
    return try_open(m, options, out);
  } catch (const std::exception& e) {
    return {Code::INTERNAL, std::string("opening channel from a map: ") + e.what()};
  }
}

Status Channel::try_open_yaml_file(const std::string& path, const OpenOptions& options, Channel& out) noexcept {
  try {
    Manifest m;
    Diagnostics diag;
    if (!load_manifest(path, m, diag)) return {Code::INVALID_MANIFEST, diag.to_string()};
    return try_open(m, options, out);
  } catch (const std::exception& e) {
    return {Code::INTERNAL, "opening channel from '" + path + "': " + e.what()};
  }
}

Channel Channel::open(const Manifest& manifest, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open(manifest, options, c); !s) throw Error(std::move(s));
  return c;
}

Channel Channel::open(const Value& map, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open(map, options, c); !s) throw Error(std::move(s));
  return c;
}

Channel Channel::open_yaml_file(const std::string& path, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open_yaml_file(path, options, c); !s) throw Error(std::move(s));
  return c;
}

namespace {
Status closed_status() { return {Code::CLOSED, "the channel is not open"}; }
}  // namespace

Status Channel::send(std::span<const std::uint8_t> bytes) {
  return core_ ? core_->send(bytes.data(), bytes.size(), nullptr) : closed_status();
}
Status Channel::send(std::string_view text) {
  return core_ ? core_->send(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), nullptr)
               : closed_status();
}
Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message) : closed_status();
}
Status Channel::send(std::string_view text, const MessageManifest& per_message) {
  return core_ ? core_->send(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), &per_message)
               : closed_status();
}

Status Channel::update(const Manifest& manifest) { return core_ ? core_->update(manifest) : closed_status(); }
Status Channel::update(const Value& changes) { return core_ ? core_->update(changes) : closed_status(); }

std::optional<Message> Channel::receive(std::chrono::nanoseconds timeout) {
  Message m;
  if (!core_ || !core_->receive(m, timeout)) return std::nullopt;
  return m;
}
Status Channel::receive(Message& out, std::chrono::nanoseconds timeout) {
  return core_ ? core_->receive(out, timeout) : closed_status();
}
std::optional<Message> Channel::try_receive() {
  Message m;
  if (!core_ || !core_->try_receive(m)) return std::nullopt;
  return m;
}
void Channel::on_message(MessageHandler handler) {
  if (core_) core_->set_message_handler(std::move(handler));
}
void Channel::on_event(EventHandler handler) {
  if (core_) core_->set_event_handler(std::move(handler));
}
std::vector<std::string> Channel::members() const { return core_ ? core_->members() : std::vector<std::string>{}; }
std::vector<MemberStatus> Channel::view() const { return core_ ? core_->view() : std::vector<MemberStatus>{}; }
Status Channel::wait_for_members(std::size_t count, std::chrono::nanoseconds timeout) const {
  return core_ ? core_->wait_for_members(count, timeout) : closed_status();
}
Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message,
                     std::future<DeliveryOutcome>* outcome) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message, outcome) : closed_status();
}

std::string_view delivery_state_name(DeliveryOutcome::State s) noexcept {
  switch (s) {
    case DeliveryOutcome::State::met: return "met";
    case DeliveryOutcome::State::failed: return "failed";
    case DeliveryOutcome::State::unreliable: return "unreliable";
    case DeliveryOutcome::State::abandoned: return "abandoned";
  }
  return "?";
}
ChannelStats Channel::stats() const { return core_ ? core_->stats() : ChannelStats{}; }
Plan Channel::plan() const { return core_ ? core_->plan() : Plan{}; }
Manifest Channel::manifest() const { return core_ ? core_->manifest() : Manifest{}; }
std::string Channel::name() const { return core_ ? core_->name() : std::string(); }
std::uint32_t Channel::sender_id() const noexcept { return core_ ? core_->sender_id() : 0; }
bool Channel::is_open() const noexcept { return core_ && core_->is_open(); }
void Channel::close() noexcept {
  if (core_) core_->close();
}

}  // namespace tmc
