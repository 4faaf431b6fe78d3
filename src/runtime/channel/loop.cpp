// The channel on the loop thread: its libuv handles (async wake-up, timers, the socket's
// poll), the callbacks that take the exec lock and run the pipeline, and the loop's side
// of inline receive (standing aside while an application thread reads the socket).
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"

namespace tmc::detail {

void ChannelCore::attach() {
  uv_async_init(loop_.uv(), &async_, &ChannelCore::on_async_cb);
  async_.data = this;
  uv_timer_init(loop_.uv(), &timer_);
  timer_.data = this;
  uv_timer_init(loop_.uv(), &aside_timer_);
  aside_timer_.data = this;
  uv_idle_init(loop_.uv(), &ack_idle_);
  ack_idle_.data = this;
  uv_idle_init(loop_.uv(), &turn_idle_);
  turn_idle_.data = this;
  loop_acks_.reserve(64);
  acking_.reserve(64);
  open_handles_ = 5;
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
  start_publishing();
  loop_.add_poller(this);
  loop_.channels.fetch_add(1);
}

// The poll phase of a polling runtime (see runtime_loop.hpp): what on_async_cb and
// on_poll_cb do, without waiting for epoll to report it. try_lock: an application thread
// sending inline holds the lock for a moment; the next round comes soon.
void ChannelCore::poll_once() noexcept {
  if (!exec_mu_.try_lock()) return;
  loop_holds_exec_ = true;
  if (pipeline_ && !life_.detached.load(std::memory_order_relaxed)) {
    if (!loop_acks_.empty()) apply_loop_acks();
    if (send_.poked.load(std::memory_order_relaxed) && send_.poked.exchange(false, std::memory_order_acquire)) {
      drain();
    } else if (submit_ring_.pushed() != submit_ring_.popped() && !poll_writable_) {
      drain();
    }
    if (transport_ && receiving_ && pipeline_) {
      std::uint64_t now = 0;
      bool any = poll_socket(false, now);
      // The unicast socket carries what is addressed to this member alone (acks, NAKs,
      // repairs), rarely on the latency path: one round in kUnicastEvery, so that an idle
      // round costs one system call per channel and the group socket is read sooner.
      if (transport_->unicast_fd() >= 0 && ++poll_rounds_ % kUnicastEvery == 0 && poll_socket(true, now)) any = true;
      if (any) after_input(now);
    }
  }
  loop_holds_exec_ = false;
  exec_mu_.unlock();
}

bool ChannelCore::poll_socket(bool unicast, std::uint64_t& now) noexcept {
  bool any = false;
  for (int round = 0; round < 16; ++round) {
    if (!any) take_returns();
    const int n = unicast ? transport_->receive_unicast(*pool_, rx_batch_.data(), static_cast<int>(rx_batch_.size()))
                          : transport_->receive(*pool_, rx_batch_.data(), static_cast<int>(rx_batch_.size()));
    if (n == 0) break;
    if (!any) now = RuntimeLoop::now_ns();
    any = true;
    if (n < 0) continue;
    feed_batch(n, now);
    dispatch();
    if (transport_->tx_pending() > 0) flush_tx();  // handlers' replies, at once
  }
  return any;
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
    if (rx_.wake_fd >= 0) (void)transport_->enable_blocking_wait(kHotWaitUs);
    if (transport_->unicast_fd() >= 0) {
      upoll_ = new uv_poll_t;
      if (uv_poll_init(loop_.uv(), upoll_, transport_->unicast_fd()) != 0) {
        delete upoll_;
        upoll_ = nullptr;
      } else {
        upoll_->data = this;
        ++open_handles_;
      }
    }
  }
  // While the loop stands aside for an inline receiver it does not poll readable: the
  // level-triggered poll would wake it (and spin) for datagrams it must not read.
  const int events = (receiving_ && !rx_aside_ ? UV_READABLE : 0) | (writable && upoll_ == nullptr ? UV_WRITABLE : 0);
  if (events == 0) {
    uv_poll_stop(poll_);
  } else {
    uv_poll_start(poll_, events, &ChannelCore::on_poll_cb);
  }
  if (upoll_ != nullptr) {
    uv_poll_start(upoll_, UV_READABLE | (writable ? UV_WRITABLE : 0), &ChannelCore::on_unicast_cb);
  }
  poll_writable_ = writable;
}

void ChannelCore::stop_poll() noexcept {
  if (upoll_ != nullptr) {
    uv_poll_stop(upoll_);
    uv_close(reinterpret_cast<uv_handle_t*>(upoll_), &ChannelCore::on_handle_closed);
    upoll_ = nullptr;
  }
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
  if (--self->open_handles_ > 0 || !self->life_.detached.load()) return;
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

void ChannelCore::on_turn_idle_cb(uv_idle_t* h) {
  uv_idle_stop(h);
  auto* self = static_cast<ChannelCore*>(h->data);
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
  // libuv stops a poll handle that reported an error: poll again (a connected socket's
  // peer that was not running yet must not leave the channel deaf).
  if (status < 0 && self->poll_ != nullptr) self->start_poll(self->poll_writable_);
  if ((events & UV_READABLE) != 0 && self->receiving_) {
    // An application thread blocked in receive() reads this socket itself: leave the
    // datagram to it, and stop polling until it is gone (see "Inline receive"). With a
    // handler set it leaves soon, but a read it is in must still be the only one.
    if (self->rx_.receiver.load() && (!self->handler_set_.message.load() || self->rx_.reading.load() != 0)) {
      self->step_aside();
    } else {
      self->on_readable();
    }
  }
}

void ChannelCore::on_unicast_cb(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  if (!self->pipeline_) return;
  if (status < 0) events = UV_READABLE;  // an ICMP error; reading clears it
  if ((events & UV_WRITABLE) != 0) self->on_writable();
  if (status < 0 && self->poll_ != nullptr) self->start_poll(self->poll_writable_);  // libuv stopped it
  if ((events & UV_READABLE) != 0) self->on_unicast_readable();
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
  if (d <= now_ns) {
    // Due already: what waits for the end of this turn (pacing.coalesce under 'coalesce
    // turn', a stage catching up) is ticked on the loop's next turn, before it polls again,
    // instead of through a timer (a timerfd set and read, an extra epoll round).
    uv_idle_start(&turn_idle_, &ChannelCore::on_turn_idle_cb);
    return;
  }
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
// rx_.exits, clears rx_.receiver, then reads rx_.aside_armed; the timer clears
// rx_.aside_armed, then reads rx_.receiver and rx_.exits (all sequentially consistent).
// So either the timer sees the receiver leave and keeps ticking, or the receiver sees the
// timer stopped and pokes the loop (check_aside restarts it): the loop never stands aside
// forever for a receiver that is gone.
void ChannelCore::step_aside() noexcept {
  if (rx_aside_) return;
  rx_aside_ = true;
  rx_.loop_aside.store(true);
  ++shell_.loop_stepped_aside;
  start_poll(poll_writable_);
  check_aside();
}

void ChannelCore::resume_reading() noexcept {
  if (!rx_aside_) return;
  rx_aside_ = false;
  rx_.loop_aside.store(false);
  rx_.aside_armed.store(false);
  uv_timer_stop(&aside_timer_);
  start_poll(poll_writable_);  // level triggered: what arrived meanwhile is read at once
}

void ChannelCore::check_aside() noexcept {
  if (!rx_aside_ || rx_.aside_armed.load() || life_.detached.load()) return;
  aside_seen_exits_ = rx_.exits.load();
  rx_.aside_armed.store(true);
  uv_timer_start(&aside_timer_, &ChannelCore::on_aside_timer_cb, 1, 1);
}

void ChannelCore::on_aside_timer_cb(uv_timer_t* h) {
  auto* self = static_cast<ChannelCore*>(h->data);
  ExecGuard exec(*self);
  if (!self->rx_aside_ || self->life_.detached.load()) {
    self->rx_.aside_armed.store(false);
    uv_timer_stop(h);
    return;
  }
  const std::uint64_t exits = self->rx_.exits.load();
  if (exits == self->aside_seen_exits_) {
    if (!self->rx_.receiver.load()) {
      // Nobody has been in receive() for a whole tick: the loop reads again.
      self->resume_reading();
      return;
    }
    // The receiver has been blocked for a whole tick (an idle channel): stop ticking; its
    // exit pokes the loop. Re-check after clearing the flag (the handshake above).
    self->rx_.aside_armed.store(false);
    if (self->rx_.receiver.load() && self->rx_.exits.load() == exits) {
      uv_timer_stop(h);
      return;
    }
    self->rx_.aside_armed.store(true);
  }
  self->aside_seen_exits_ = self->rx_.exits.load();
}

}  // namespace tmc::detail
