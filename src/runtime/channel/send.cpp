// The send path: send() on any thread puts the message into a pool packet and onto the
// submit ring; the loop (or the sender itself, inline) drains the ring through the
// pipeline into the transport. See "Send path" in channel_core.hpp.
#include <algorithm>
#include <cstring>
#include <utility>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/message_policy.hpp"
#include "runtime/channel/shell_helpers.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail {

namespace {

/// Counts a send() from its closed check until its packet is pushed, so that close() can
/// wait for it to finish and then flush it (see detach()).
class ActiveSend {
 public:
  explicit ActiveSend(std::atomic<int>& n) noexcept : n_(&n) { n_->fetch_add(1); }
  ~ActiveSend() { leave(); }
  ActiveSend(const ActiveSend&) = delete;
  ActiveSend& operator=(const ActiveSend&) = delete;
  void leave() noexcept {
    if (n_ != nullptr) n_->fetch_sub(1);
    n_ = nullptr;
  }

 private:
  std::atomic<int>* n_;
};

/// A large message's buffer until the packet carrying it is filled: released on every
/// early return.
class LargeBuffer {
 public:
  LargeBuffer() = default;
  ~LargeBuffer() {
    if (p_ != nullptr) p_->release();
  }
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;
  Packet*& slot() noexcept { return p_; }
  [[nodiscard]] bool held() const noexcept { return p_ != nullptr; }
  Packet* take() noexcept { return std::exchange(p_, nullptr); }

 private:
  Packet* p_ = nullptr;
};

}  // namespace

Status ChannelCore::send(const std::uint8_t* data, std::size_t n, const MessageManifest* per_message,
                         std::future<DeliveryOutcome>* outcome, std::uint64_t* token_out) {
  if (data == nullptr && n != 0) return {Code::INVALID_ARGUMENT, "send: null data with a non-zero size"};
  ActiveSend active(life_.active_senders);
  if (Status s = check_may_send(); !s) return s;
  const ChannelTraits traits = config_.traits.load();
  MessageFlags flags;
  if (Status s = message_flags(traits, per_message, flags); !s) return s;
  const std::uint32_t max = config_.max_payload.load();
  LargeBuffer large;
  if (Status s = check_size(traits, max, n, large.slot()); !s) return s;
  const bool on_loop = loop_.on_loop_thread();
  Packet* carrier = nullptr;
  if (Status s = take_slot(n, large.held(), on_loop, carrier); !s) return s;

  const std::uint64_t token = send_.next_token.fetch_add(1, std::memory_order_relaxed);
  Packet* p = fill(carrier, large.take(), data, n);
  p->flags = flags.wire;
  p->token = token;
  p->lifetime_ns = flags.lifetime_ns;
  if (token_out != nullptr) *token_out = token;
  // Outcomes: a reliable message's promise is settled by its delivery event; the sync
  // wait below needs one too.
  const bool sync = static_cast<Synchronicity>(config_.synchronicity.load()) == Synchronicity::sync && !on_loop;
  p->wants_outcome = flags.reliable && (outcome != nullptr || sync);
  std::future<DeliveryOutcome> tracked;
  if (p->wants_outcome) {
    const std::uint32_t frag = traits.fragment_bytes;
    tracked = track_outcome(token, n > max && frag > 0 ? static_cast<std::uint32_t>((n + frag - 1) / frag) : 1);
  } else if (outcome != nullptr) {
    std::promise<DeliveryOutcome> promise;  // nothing to wait for: met at once
    promise.set_value(DeliveryOutcome{});
    *outcome = promise.get_future();
  }
  const SendClock clock = read_send_clock(on_loop);
  p->rx_ns = clock.sent_ns;  // send() time, for the send latency estimate

  std::uint64_t pos = 0;
  if (!submit_ring_.try_push(carrier, &pos)) {
    // Cannot happen: the loop never hands out more packets than the ring holds.
    home_->give_back(carrier);
    send_.abandoned.fetch_add(1);
    return {Code::INTERNAL, "send: the submit ring overflowed"};
  }
  hand_over(on_loop, clock);
  active.leave();
  if (sync && tracked.valid()) return wait_outcome(tracked);
  if (tracked.valid() && outcome != nullptr) *outcome = std::move(tracked);
  if (sync) wait_flushed(pos);
  return Status::ok();
}

Status ChannelCore::check_may_send() const {
  if (life_.closed.load()) return {Code::CLOSED, "send: the channel is closed"};
  if (static_cast<Duplexity>(config_.duplexity.load()) == Duplexity::receive_only) {
    return {Code::NOT_PERMITTED_BY_DUPLEXITY,
            "send: member '" + name() + "' of channel '" + plan().channel_id + "' is receive-only (duplexity)"};
  }
  return Status::ok();
}

Status ChannelCore::check_size(const ChannelTraits& traits, std::uint32_t max, std::size_t n, Packet*& large) {
  if (n > traits.max_message_bytes) {
    return {Code::MESSAGE_TOO_LARGE, "send: a message of " + std::to_string(n) +
                                         " bytes is larger than the channel's 'max message bytes' (" +
                                         std::to_string(traits.max_message_bytes) + ")"};
  }
  if (n <= max) return Status::ok();
  if (!traits.fragments()) {
    return {Code::MESSAGE_TOO_LARGE, "send: a message of " + std::to_string(n) +
                                         " bytes is larger than the largest payload one datagram of this channel "
                                         "carries (" +
                                         std::to_string(max) + " bytes) and 'max message bytes' is " +
                                         std::to_string(traits.max_message_bytes)};
  }
  return take_large(n, large);
}

Status ChannelCore::take_large(std::size_t n, Packet*& out) {
  PacketPool* lp = config_.large_pool.load();
  if (lp == nullptr) return {Code::CLOSED, "send: the channel is closed"};
  const std::uint64_t need = PacketPool::large_cost(n);
  const std::uint64_t budget = lp->large_budget_bytes();
  if (need > budget) {
    return {Code::MESSAGE_TOO_LARGE, "send: a message of " + std::to_string(n) + " bytes needs " +
                                         std::to_string(need) + " bytes of large-message memory, more than the " +
                                         "channel's whole budget of " + std::to_string(budget) +
                                         " bytes (OpenOptions::large_message_bytes)"};
  }
  const bool on_loop = loop_.on_loop_thread();
  bool counted = false;
  for (;;) {
    out = lp->alloc_large(static_cast<std::uint32_t>(n));
    if (out != nullptr) return Status::ok();
    if (life_.closed.load()) return {Code::CLOSED, "send: the channel is closed"};
    if (on_loop || !options_.send_blocks_when_full) {
      return {Code::WOULD_BLOCK, "send: no room for a message of " + std::to_string(n) +
                                     " bytes: large messages (being sent, reassembled or held) take " +
                                     std::to_string(lp->large_bytes()) + " of " + std::to_string(budget) + " bytes" +
                                     (on_loop ? " and a handler cannot wait" : " (send_blocks_when_full is false)")};
    }
    // Large buffers are freed by the loop (a sent message once split; drain() wakes this
    // wait) or by whichever thread lets go of a received one (the timeout covers that).
    if (!counted) send_.waited_for_memory.fetch_add(1);
    counted = true;
    waits_.waiters.fetch_add(1);
    waits_.large.fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(waits_.mu);
      waits_.cv.wait_for(lock, std::chrono::milliseconds(2));
    }
    waits_.large.fetch_sub(1);
    waits_.waiters.fetch_sub(1);
  }
}

Status ChannelCore::take_slot(std::size_t n, bool large, bool on_loop, Packet*& out) {
  for (;;) {
    Packet* p = nullptr;
    if (free_ring_.try_pop(p)) {
      // A large message only needs the packet as its carrier (see unwrap_large()).
      if (large || p->cap >= kHeadroom + n + wire::kTrailerBytes + 64) {
        out = p;
        return Status::ok();
      }
      // A buffer from a smaller pool of before an update(): hand it back and take another.
      home_->give_back(p);
      send_.abandoned.fetch_add(1);
      continue;
    }
    if (life_.closed.load()) return {Code::CLOSED, "send: the channel is closed"};
    uv_async_send(&async_);  // the loop restocks the free ring when it drains
    if (on_loop || !options_.send_blocks_when_full) {
      return {Code::WOULD_BLOCK, on_loop ? "send: the send queue is full and a handler cannot wait for the loop"
                                         : "send: the send queue is full (send_blocks_when_full is false)"};
    }
    waits_.waiters.fetch_add(1);
    waits_.slot.fetch_add(1);
    {
      std::unique_lock<std::mutex> lock(waits_.mu);
      waits_.cv.wait_for(lock, std::chrono::milliseconds(2));
    }
    waits_.slot.fetch_sub(1);
    waits_.waiters.fetch_sub(1);
  }
}

Packet* ChannelCore::fill(Packet* carrier, Packet* large, const std::uint8_t* data, std::size_t n) noexcept {
  Packet* p = carrier;
  if (large != nullptr) {
    carrier->reset_for_send(0);
    carrier->next = large;  // unwrap_large() swaps them on the loop
    p = large;
  } else {
    p->reset_for_send(static_cast<std::uint32_t>(n));
  }
  if (n != 0) std::memcpy(p->payload(), data, n);
  return p;
}

std::future<DeliveryOutcome> ChannelCore::track_outcome(std::uint64_t token, std::uint32_t fragments) {
  Tracked t;
  std::future<DeliveryOutcome> f = t.promise.get_future();
  t.remaining = fragments;
  std::lock_guard<std::mutex> lock(outcomes_.mu);
  outcomes_.by_token.emplace(token, std::move(t));
  outcomes_.count.fetch_add(1);
  return f;
}

ChannelCore::SendClock ChannelCore::read_send_clock(bool on_loop) noexcept {
  // Messages the loop has not taken yet: this send is part of a stream (the loop is poked
  // already and will take this one with them), so it can neither go inline nor needs the
  // clock, which on a virtual machine costs about as much as the rest of send(). Such
  // messages give no send latency sample (rx_ns 0); the first of each stream does.
  // The send right after such a stream has no clock reading to measure its gap against:
  // it counts as close (not inline), as it would have been with one.
  SendClock c;
  c.streaming = !on_loop && submit_ring_.pushed() != submit_ring_.popped();
  if (c.streaming) {
    if (!send_.stream_tail.load(std::memory_order_relaxed)) send_.stream_tail.store(true, std::memory_order_relaxed);
    return c;
  }
  if (send_.stream_tail.load(std::memory_order_relaxed)) {
    c.after_stream = send_.stream_tail.exchange(false, std::memory_order_relaxed);
  }
  c.sent_ns = RuntimeLoop::now_ns();
  c.prev_ns = send_.last_send_ns.exchange(c.sent_ns, std::memory_order_relaxed);
  return c;
}

void ChannelCore::hand_over(bool on_loop, const SendClock& c) noexcept {
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
  } else if (!c.streaming && !c.after_stream && options_.inline_send) {
    // What tells a stream from sparse sends is the application's own time between sends.
    // A sender that received a message since its previous send (request/response, ping-
    // pong) waited for it: sparse, measured from the previous send's start as always. A
    // sender that received nothing is measured from the end of its previous inline send,
    // which took a system call and, on a virtual network, the receivers' share of the
    // kernel's work (10-15 us across namespaces): measured from its start, back-to-back
    // sends looked sparse and went out one datagram per system call, never in a batch.
    // (The end is read only for such senders: a clock read right after the system call
    // showed in ping-pong round trips on a virtual machine.)
    const std::uint64_t receives = send_.receives.load(std::memory_order_relaxed);
    const bool publisher = send_.receives_seen.exchange(receives, std::memory_order_relaxed) == receives;
    const std::uint64_t from =
        publisher ? std::max(c.prev_ns, send_.last_end_ns.load(std::memory_order_relaxed)) : c.prev_ns;
    if ((from >= c.sent_ns || c.sent_ns - from >= options_.inline_send_min_gap_ns) && exec_mu_.try_lock()) {
      poke = send_inline(false, true);
      exec_mu_.unlock();
      if (publisher) send_.last_end_ns.store(RuntimeLoop::now_ns(), std::memory_order_relaxed);
    }
  }
  if (!poke) return;
  if (loop_.polls()) {
    send_.poked.store(true, std::memory_order_release);  // seen by poll_once() within a round
  } else {
    uv_async_send(&async_);
  }
}

Status ChannelCore::wait_outcome(std::future<DeliveryOutcome>& tracked) {
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
  if (o.state == DeliveryOutcome::State::expired) {
    return {Code::DELIVERY_FAILED, "send: the message's lifetime ran out before it was acknowledged"};
  }
  if (o.state == DeliveryOutcome::State::forgotten) {
    return {Code::DELIVERY_FAILED, "send: the message was forgotten before it was acknowledged"};
  }
  return Status::ok();
}

void ChannelCore::wait_flushed(std::uint64_t pos) {
  waits_.waiters.fetch_add(1);
  waits_.flush.fetch_add(1);
  {
    std::unique_lock<std::mutex> lock(waits_.mu);
    waits_.cv.wait(lock, [&] { return waits_.flushed_pos.load() > pos || life_.detached.load(); });
  }
  waits_.flush.fetch_sub(1);
  waits_.waiters.fetch_sub(1);
}

void ChannelCore::take_returns() noexcept {
  Packet* p = home_->take_all();
  while (p != nullptr) {
    Packet* next = p->next;
    p->release();
    p = next;
  }
  if (send_.abandoned.load(std::memory_order_relaxed) == 0) return;
  const std::uint32_t gone = send_.abandoned.exchange(0);
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
  if (added && waits_.slot.load() > 0) {
    // A sender waits for free slots (the send queue was full). Waking it costs a futex
    // call on both sides, so it is woken for a quarter of the queue at a time, not for
    // every few slots the loop frees: the loop still has the rest of the submit ring to
    // work on meanwhile. When the submit ring has run empty the loop is about to idle, so
    // then it is woken whatever the count, and so it is when the pool ran dry (the
    // sender's wait also times out after 2 ms).
    const std::uint64_t free_now = free_ring_.pushed() - free_ring_.popped();
    const std::uint64_t queued = submit_ring_.pushed() - submit_ring_.popped();
    if (free_now >= send_slots_ / 4 || queued == 0 || dry) {
      std::lock_guard<std::mutex> lock(waits_.mu);
      waits_.cv.notify_all();
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
    if (!submit_ring_.try_pop(p)) {
      // Every token forget() was given is out of the ring once it is empty and no send()
      // is between taking a token and pushing its message: what is still listed entered
      // an earlier pipeline (see forget()).
      if (!forget_queued_.empty() && life_.active_senders.load() == 0 &&
          submit_ring_.pushed() == submit_ring_.popped()) {
        forget_queued_.clear();
      }
      break;
    }
    --budget;
    --outstanding_;
    p = unwrap_large(p);
    if ((p->token <= forget_through_ || !forget_queued_.empty()) && drop_forgotten(p)) continue;
    if (p->token > entered_token_) entered_token_ = p->token;
    pipeline_->send(p, now);
  }
  return false;
}

bool ChannelCore::drop_forgotten(Packet* p) noexcept {
  bool gone = p->token != 0 && p->token <= forget_through_;
  for (auto it = forget_queued_.begin(); it != forget_queued_.end(); ++it) {
    if (*it == p->token) {
      forget_queued_.erase(it);
      gone = true;
      break;
    }
  }
  // Forgetting concerns reliable messages only (a best-effort one has no outcome to wait
  // for); a forgotten best-effort message goes as sent.
  const ChannelTraits traits = config_.traits.load();
  if (!gone || ((p->flags & wire::kFlagReliable) == 0 && traits.reliability != ReliabilityScope::all)) return false;
  const std::uint64_t token = p->token;
  p->release();
  ++shell_.forgotten_unsent;
  // Its outcome was settled when forget() was called; the event handler hears of it now.
  on_event(Event{.type = EventType::delivery_forgotten, .stage = "channel", .token = token});
  return true;
}

Status ChannelCore::forget(std::uint64_t token, ForgetScope scope) {
  if (token == 0 || token >= send_.next_token.load()) {
    return {Code::INVALID_ARGUMENT, "forget: this channel gave no message the token " + std::to_string(token)};
  }
  if (life_.closed.load()) return {Code::CLOSED, "forget: the channel is closed"};
  const bool on_loop = loop_.on_loop_thread();
  auto run = [&] {
    if (!pipeline_ || !transport_ || life_.detached.load()) return;
    take_returns();
    const std::uint64_t now = RuntimeLoop::now_ns();
    now_ns_ = now;
    (void)pump_submitted(now, on_loop);
    // A message still in the submit ring (back-pressured) is let go as it leaves it, before
    // any stage sees it; the pipeline forgets what it was given.
    if (scope == ForgetScope::and_earlier) {
      forget_through_ = std::max(forget_through_, token);
      if (token > entered_token_) settle_outcomes(entered_token_, token, DeliveryOutcome::State::forgotten);
    } else if (token > entered_token_) {
      try {
        forget_queued_.push_back(token);
      } catch (...) {
        return;  // out of memory: the message is sent as if not forgotten
      }
      settle_outcomes(token - 1, token, DeliveryOutcome::State::forgotten);
    }
    pipeline_->forget(token, scope, now);
  };
  if (on_loop && loop_holds_exec_) {
    run();  // from a handler: the loop flushes after it returns
  } else {
    std::lock_guard<std::mutex> lock(exec_mu_);
    if (on_loop) loop_holds_exec_ = true;
    run();
    if (on_loop) loop_holds_exec_ = false;
  }
  uv_async_send(&async_);  // the loop sends what it produced, delivers its events, re-arms timers
  return Status::ok();
}

bool ChannelCore::send_inline(bool on_loop, bool flush) noexcept {
  if (!pipeline_ || !transport_ || life_.detached.load()) return true;
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
  if (!pipeline_ || life_.detached.load()) return;
  take_returns();
  const std::uint64_t now = RuntimeLoop::now_ns();
  now_ns_ = now;
  if (app_acks_.count.load() > 0) take_app_acks(now);
  const bool more = pump_submitted(now, true);
  after_input(now);
  if (waits_.large.load() > 0) {
    // Sent large messages were split and their buffers freed: room for a waiting sender.
    std::lock_guard<std::mutex> lock(waits_.mu);
    waits_.cv.notify_all();
  }
  if (more) uv_async_send(&async_);
}

// --- acknowledgments on a member's behalf ---------------------------------------------------

Status ChannelCore::acknowledge(std::uint64_t id, std::string_view member) {
  if (life_.closed.load()) return {Code::CLOSED, "acknowledge: the channel is closed"};
  if (!config_.traits.load().reliable()) {
    return {Code::NOT_AVAILABLE, "acknowledge: the channel has no reliability stage; set 'reliability' in the manifest"};
  }
  const std::uint32_t sender = wire::channel_hash(member.data(), member.size());
  if (!loop_.on_loop_thread()) {
    {
      std::lock_guard<std::mutex> lock(app_acks_.mu);
      if (app_acks_.pending.size() >= AppAcks::kMaxPending) {
        return {Code::WOULD_BLOCK, "acknowledge: " + std::to_string(AppAcks::kMaxPending) +
                                       " acknowledgments wait for the loop already"};
      }
      app_acks_.pending.push_back(AppAck{id, sender});
      app_acks_.count.store(app_acks_.pending.size());
    }
    uv_async_send(&async_);
    return Status::ok();
  }
  // The loop thread (a handler, of this channel or another): queued for this turn's batch.
  // A reply's ack takes effect before the loop sleeps again; the time is the reply's.
  if (life_.detached.load()) return Status::ok();
  if (loop_acks_.size() >= AppAcks::kMaxPending) apply_loop_acks();
  if (loop_acks_.empty()) uv_idle_start(&ack_idle_, &ChannelCore::on_ack_idle_cb);
  loop_acks_.push_back(Pipeline::AppAckRecord{id, sender, RuntimeLoop::now_ns()});
  return Status::ok();
}

void ChannelCore::on_ack_idle_cb(uv_idle_t* h) { static_cast<ChannelCore*>(h->data)->apply_loop_acks(); }

void ChannelCore::apply_loop_acks() noexcept {
  uv_idle_stop(&ack_idle_);
  if (loop_acks_.empty()) return;
  ExecGuard exec(*this);
  // Swapped out first: handlers that after_input() runs may acknowledge again (the next batch).
  acking_.swap(loop_acks_);
  if (pipeline_ && !life_.detached.load()) {
    (void)pipeline_->app_acks(acking_);
    const std::uint64_t now = RuntimeLoop::now_ns();
    now_ns_ = now;
    acking_.clear();
    after_input(now);  // what the acks released leaves, their events reach the handler
    return;
  }
  acking_.clear();
}

void ChannelCore::take_app_acks(std::uint64_t now_ns) noexcept {
  std::lock_guard<std::mutex> lock(app_acks_.mu);
  for (const AppAck& a : app_acks_.pending) (void)pipeline_->app_ack(a.token, a.sender, now_ns);
  app_acks_.pending.clear();
  app_acks_.count.store(0);
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
  waits_.flushed_pos.store(pos);
  // Only synchronous senders wait for a position (senders waiting for a free slot are
  // woken by refill_free()); detaching wakes everyone.
  if (waits_.flush.load() > 0 || (life_.detached.load() && waits_.waiters.load() > 0)) {
    std::lock_guard<std::mutex> lock(waits_.mu);
    waits_.cv.notify_all();
  }
}

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

}  // namespace tmc::detail
