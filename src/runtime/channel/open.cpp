// The channel's life: open() and update() compile the manifest and prepare a pipeline, a
// pool and a socket on the caller's thread, install() swaps them in on the loop; close()
// and detach() flush what is left and give the loop's handles back.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"
#include "tmc/module_repository.hpp"
#include "tmc/modules.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail {

namespace {

std::atomic<unsigned> g_name_counter{0};

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

/// Largest payload one datagram can carry when the compiler left it unset: MTU minus
/// IPv4 and UDP headers, our base header, a CRC trailer and room for extensions.
std::uint32_t effective_max_payload(const TransportPlan& t) {
  if (t.max_payload_bytes != 0) return t.max_payload_bytes;
  const std::uint32_t overhead = 20 + 8 + static_cast<std::uint32_t>(wire::kBaseHeaderBytes + wire::kTrailerBytes) + 64;
  return t.mtu_bytes > overhead ? t.mtu_bytes - overhead : 0;
}

}  // namespace

ChannelCore::ChannelCore(std::shared_ptr<Runtime> runtime, const OpenOptions& options)
    : runtime_(std::move(runtime)),
      loop_(runtime_->loop()),
      options_(options),
      home_(std::make_shared<BufferHome>()),
      free_ring_(std::max<std::uint32_t>(options.send_queue_messages, 2)),
      submit_ring_(std::max<std::uint32_t>(options.send_queue_messages, 2)),
      send_slots_(static_cast<std::uint32_t>(free_ring_.capacity())) {
  rq_.slots.resize(std::max<std::uint32_t>(options.receive_queue_messages, 1));
  to_deliver_.reserve(1024);
  delivering_.reserve(1024);
  events_.reserve(64);
  closed_future_ = closed_promise_.get_future().share();
  // Without an eventfd the inline receiver could not be woken for close() or update():
  // receive() then always waits for the loop. A polling loop (yield, spin) reads the
  // socket within a round anyway: receive() waits for its delivery instead.
  if (options.inline_receive && !loop_.polls()) rx_.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

ChannelCore::~ChannelCore() {
  // close() ran (Channel's destructor calls it) or the channel never attached; either way
  // the loop no longer knows this core. Queued messages give their buffers back to home_.
  if (rx_.wake_fd >= 0) ::close(rx_.wake_fd);
  rx_.own.release_all();  // the pools live in home_, which outlives this body
}

Status ChannelCore::open(const Manifest& manifest, const OpenOptions& options, std::shared_ptr<ChannelCore>& out) {
  const IdleStrategy idle = options.idle_strategy.value_or(IdleStrategy::block);
  std::shared_ptr<Runtime> rt = options.runtime ? options.runtime : Runtime::default_runtime(idle);
  if (options.runtime && options.idle_strategy && options.runtime->options().idle != idle) {
    return {Code::INVALID_ARGUMENT, "channel '" + manifest.id + "': idle strategy '" + std::string(idle_strategy_name(idle)) +
                                        "' asked of a runtime whose loop is '" +
                                        std::string(idle_strategy_name(options.runtime->options().idle)) + "'"};
  }
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
  // Modules from a signed repository: verified and loaded here, once per set of names
  // (an update() naming modules the current set lacks loads a new set).
  if (!options_.module_repository.empty() && !m.modules.empty() &&
      (!options_.modules || !options_.modules->check_requested(m.modules).is_ok())) {
    auto set = std::make_shared<ModuleSet>();
    if (Status s = load_from_repository(*set, options_.module_repository, m.modules); !s) {
      return {s.code(), "channel '" + m.id + "': " + s.message()};
    }
    options_.modules = std::move(set);
  }
  const Registry& registry = options_.modules ? options_.modules->registry() : Registry::builtin();
  if (!m.modules.empty()) {
    if (!options_.modules) {
      return {Code::MODULE_ERROR, "channel '" + m.id + "': the manifest's 'modules' names modules but none are "
                                  "loaded (pass them in OpenOptions::modules)"};
    }
    if (Status s = options_.modules->check_requested(m.modules); !s) return {s.code(), "channel '" + m.id + "': " + s.message()};
  }
  Plan plan;
  // The key file: the manifest's when it names one (update() rolls keys that way), else
  // the one OpenOptions gives, so that a manifest that may be logged need not name it.
  const Manifest* keyed = &m;
  Manifest with_key;
  if (m.key_file.empty() && !options_.key_file.empty()) {
    with_key = m;
    with_key.key_file = options_.key_file;
    keyed = &with_key;
  }
  if (Status s = compile(*keyed, options_.caps, registry, plan); !s) return s;
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
  const std::uint32_t default_max_buffers =
      send_slots_ + static_cast<std::uint32_t>(rq_.slots.size()) + 8 * batch + 4096;
  if (pool_ != nullptr && pool_->buffer_bytes() >= need) {
    out.pool = pool_;
  } else {
    const std::uint32_t max_buffers = options_.max_buffers != 0 ? options_.max_buffers : default_max_buffers;
    out.pool = home_->add_pool(need, send_slots_ + 2 * batch, max_buffers);
    if (options_.large_message_bytes != 0) out.pool->set_large_budget_bytes(options_.large_message_bytes);
  }

  StageEnv env;
  env.channel = plan.channel_hash;
  env.sender = out.sender;
  env.epoch = random_nonzero_u32();
  env.seed = (static_cast<std::uint64_t>(m.faults.seed) << 32) ^ out.sender;
  env.incarnation_random = (static_cast<std::uint64_t>(random_nonzero_u32()) << 32) | random_nonzero_u32();
  env.max_payload_bytes = out.max_payload;
  // Every member's datagrams leave from a socket that is its own and that it reads: the
  // fan-out socket bound to its ip:port, or a multicast receiver's unicast socket
  // (UdpTransport). So a datagram sent to where a member's heartbeats come from reaches it.
  env.unicast_reachable = true;
  if (Status s = Pipeline::build(plan, registry, env, *out.pool, *this, out.pipeline); !s) {
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
  out.spec.busy_poll_us = loop_.options().busy_poll_us;
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
  config_.sender_id.store(p.sender);
  config_.max_payload.store(p.max_payload);
  config_.traits.store(p.plan.traits);
  config_.large_pool.store(p.pool);
  entered_token_ = 0;
  config_.duplexity.store(static_cast<std::uint8_t>(p.plan.duplexity));
  config_.synchronicity.store(static_cast<std::uint8_t>(p.plan.synchronicity));
  std::lock_guard<std::mutex> lock(state_.mu);
  state_.manifest = std::move(p.manifest);
  state_.plan = std::move(p.plan);
  state_.plan.transport.interface_address = transport_->plan().interface_address;
  state_.name = std::move(p.name);
}

Status ChannelCore::update(const Manifest& m) {
  if (life_.closed.load()) return {Code::CLOSED, "update: the channel is closed"};
  std::lock_guard<std::mutex> serial(update_mu_);
  auto p = std::make_shared<Prepared>();
  // Reading pool_ and transport_ here is safe: only install() changes them, on the loop,
  // under update_mu_ held by this thread or during open().
  if (Status s = prepare(m, true, *p); !s) return s;
  auto swap = [this, p]() -> Status {
    ExecGuard exec(*this);
    if (life_.detached.load()) return {Code::CLOSED, "update: the channel closed meanwhile"};
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
  if (outcomes_.count.load() > 0) abandon_outcomes(entered_token_);
  entered_token_ = 0;
}

void ChannelCore::close() noexcept {
  const bool first = !life_.closed.exchange(true);
  if (waits_.waiters.load() > 0) {
    std::lock_guard<std::mutex> lock(waits_.mu);
    waits_.cv.notify_all();
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

void ChannelCore::detach() noexcept {
  if (life_.detached.load()) return;
  ExecGuard exec(*this);
  life_.closed.store(true);
  // A send() that passed its closed check is still pushing; let it finish so that every
  // message send() accepted is flushed below.
  while (life_.active_senders.load() != 0) std::this_thread::yield();
  take_returns();
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  Packet* p = nullptr;
  while (submit_ring_.try_pop(p)) {
    --outstanding_;
    p = unwrap_large(p);
    if ((p->token <= forget_through_ || !forget_queued_.empty()) && drop_forgotten(p)) continue;
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
  life_.detached.store(true);
  set_flushed(kNoPosition);
  {
    std::lock_guard<std::mutex> lock(rq_.mu);
  }
  rq_.cv.notify_all();
  wake_inline();  // an inline receiver sees life_.detached and returns CLOSED
  release_reader();  // ... also from a hot wait, at once
  uv_timer_stop(&timer_);
  uv_timer_stop(&aside_timer_);
  rx_.aside_armed.store(false);
  stop_poll();
  fine_on_ = false;
  if (fine_poll_ != nullptr) {
    uv_poll_stop(fine_poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(fine_poll_), &ChannelCore::on_handle_closed);
    // on_handle_closed deletes it and closes fine_fd_.
  }
  stop_publishing();
  loop_.remove_poller(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &ChannelCore::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&aside_timer_), &ChannelCore::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), &ChannelCore::on_handle_closed);
  uv_idle_stop(&ack_idle_);
  loop_acks_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&ack_idle_), &ChannelCore::on_handle_closed);
  uv_idle_stop(&turn_idle_);
  uv_close(reinterpret_cast<uv_handle_t*>(&turn_idle_), &ChannelCore::on_handle_closed);
  loop_.channels.fetch_sub(1);
}

}  // namespace tmc::detail
