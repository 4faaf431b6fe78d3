// Inline receive: an application thread blocked in receive() reads the socket itself
// (hot waits in a blocking read, cold waits in ppoll). See "Inline receive" in
// channel_core.hpp.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"

namespace tmc::detail {

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
      const bool usable = !life_.detached.load() && pipeline_ && transport_ && receiving_;
      int pre_read = 0;
      if (rx_.reading.load() != 0) {
        // Back from a hot wait. What it read belongs to the pipeline, in socket order,
        // unless its socket is gone (rx_.gen moved on): then it is dropped with the socket.
        if (got > 0 && usable && rx_.own_gen == rx_.gen) {
          // (rx_batch_ holds a whole read: an update() that changes the batch size opens a
          // new socket, which moves rx_.gen on.)
          got = std::min(got, static_cast<int>(rx_batch_.size()));
          pre_read = transport_->take(rx_.own, got, rx_batch_.data());
          // A full batch: more may be waiting; read on without blocking.
          if (static_cast<std::size_t>(got) == rx_batch_.size()) read = true;
        }
        rx_.reading.store(0);
      }
      if (!usable || (pre_read == 0 && handler_set_.message.load())) return false;
      poke = inline_round(RuntimeLoop::now_ns(), read, pre_read);
      read = false;
      popped = pop_queued(out);
      const auto now = std::chrono::steady_clock::now();
      timed_out = now >= deadline;
      if (!popped && !timed_out && !handler_set_.message.load()) {
        wait = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        if (transport_->rx_buffered()) wait = std::chrono::nanoseconds(0);  // GRO: read, not handed out
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
          armed = transport_->arm(rx_.own, *pool_, static_cast<int>(rx_batch_.size()));
          if (armed > 0) {
            rx_.own_gen = rx_.gen;
            rx_.reading.store(2);  // from here until the read returns, release_reader() waits
          }
        }
      }
    }
    if (poke) uv_async_send(&async_);
    if (popped) return true;
    if (armed == 0 && (timed_out || handler_set_.message.load())) return false;
    if (armed > 0) {
      got = UdpTransport::wait_read(fd, rx_.own, armed);
      const int err = got < 0 ? errno : 0;
      rx_.reading.store(1);  // the read is over; the descriptor may be closed now
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
    pollfd fds[2] = {{fd, POLLIN, 0}, {rx_.wake_fd, POLLIN, 0}};
    const int r = ::ppoll(fds, 2, &ts, nullptr);
    read = r < 0 || fds[0].revents != 0;
    if (r > 0 && (fds[1].revents & POLLIN) != 0) {
      // Reset the eventfd before looking at the state again (next round, under the lock),
      // so a wake-up sent after that look is never lost.
      std::uint64_t v = 0;
      if (::read(rx_.wake_fd, &v, sizeof v) < 0) {
        // EAGAIN: another reader took it; nothing to do.
      }
    }
  }
}

bool ChannelCore::inline_round(std::uint64_t now, bool read, int pre_read) noexcept {
  take_returns();
  now_ns_ = now;
  if (pre_read != 0) feed_batch(pre_read, now);
  if (transport_->rx_buffered()) read = true;  // read already (GRO); the socket may be empty
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
  // A handler set while this round waited for the lock (on_message) takes the deliveries
  // on the loop, after what the queue held (hand_queued_to_handler).
  const bool for_handler = handler_ && !to_deliver_.empty();
  if (!handler_) shell_.inline_received += queue_deliveries(false);
  // What this thread cannot do goes to the loop: handlers for events and messages, write
  // polling for a full socket, and the libuv timer when a stage deadline moved earlier
  // than the loop's (it must fire even after this thread leaves receive()).
  bool poke = !events_.empty() || for_handler;
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
  ++rx_.gen;
  if (rx_.reading.load() != 2 || !transport_) return;
  (void)::shutdown(transport_->fd(), SHUT_RD);
  while (rx_.reading.load() == 2) std::this_thread::yield();
}

void ChannelCore::leave_inline() noexcept {
  rx_.exits.fetch_add(1);
  rx_.receiver.store(false);
  // The loop stopped its aside timer while we were blocked: have it start again, so it
  // resumes reading if we do not come back (see on_aside_timer_cb for the handshake).
  if (rx_.loop_aside.load() && !rx_.aside_armed.load() && !life_.detached.load()) uv_async_send(&async_);
}

void ChannelCore::wake_inline() noexcept {
  if (rx_.wake_fd < 0) return;
  const std::uint64_t one = 1;
  if (::write(rx_.wake_fd, &one, sizeof one) < 0) {
    // EAGAIN: the counter is saturated, so the receiver is woken anyway.
  }
}

}  // namespace tmc::detail
