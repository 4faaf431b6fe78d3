// The receive path: datagrams read on the loop go through the pipeline; what it delivers
// goes to the on_message handler or into the receive queue that receive() and
// try_receive() take from. See "Receive path" in channel_core.hpp.
#include <algorithm>
#include <chrono>
#include <thread>

#include "runtime/channel/channel_core.hpp"
#include "runtime/channel/shell_helpers.hpp"
#include "tmc/wire.hpp"

namespace tmc::detail {

Status ChannelCore::receive(Message& out, std::chrono::nanoseconds timeout) {
  if (static_cast<Duplexity>(config_.duplexity.load()) == Duplexity::send_only) {
    return {Code::NOT_PERMITTED_BY_DUPLEXITY,
            "receive: member '" + name() + "' of channel '" + plan().channel_id + "' is send-only (duplexity)"};
  }
  // Waits longer than a year are "forever" (and cannot overflow the clock).
  const auto limit = std::chrono::hours(24 * 365);
  const auto wait = timeout > limit ? std::chrono::nanoseconds(limit) : timeout;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  bool tried_inline = false;
  if (rx_.wake_fd >= 0 && rq_.ready.load(std::memory_order_acquire) == 0 && !handler_set_.message.load() &&
      !life_.detached.load() && !loop_.on_loop_thread()) {
    // Read the socket on this thread (see "Inline receive" in channel_core.hpp); one
    // thread at a time, the others wait on the queue below.
    bool expected = false;
    if (rx_.receiver.compare_exchange_strong(expected, true)) {
      const bool got = receive_inline(out, deadline);
      leave_inline();
      if (got) {
        send_.receives.fetch_add(1, std::memory_order_relaxed);
        return Status::ok();
      }
      tried_inline = true;  // timed out, closed, or a handler was set: the queue path decides
    }
  }
  if (loop_.polls() && !loop_.on_loop_thread()) {
    // A polling loop (yield, spin) delivers within a round: poll the queue for the whole
    // wait, as the loop polls the socket, rather than sleep and pay a wake-up.
    const bool yield = loop_.options().idle == IdleStrategy::yield;
    while (rq_.ready.load(std::memory_order_acquire) == 0 && !life_.detached.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < deadline) {
      if (yield) {
        std::this_thread::yield();
      } else {
        for (int i = 0; i < 16; ++i) cpu_relax();
      }
    }
  } else if (!tried_inline && options_.receive_spin_ns != 0 && rq_.ready.load(std::memory_order_relaxed) == 0) {
    // Bounded busy wait: a message that arrives within it costs no thread wake-up.
    const auto spin = std::min<std::chrono::nanoseconds>(wait, std::chrono::nanoseconds(options_.receive_spin_ns));
    const std::uint64_t until_ns = RuntimeLoop::now_ns() + static_cast<std::uint64_t>(spin.count());
    while (rq_.ready.load(std::memory_order_acquire) == 0 && !life_.detached.load(std::memory_order_relaxed) &&
           RuntimeLoop::now_ns() < until_ns) {
      cpu_relax();
    }
  }
  std::unique_lock<std::mutex> lock(rq_.mu);
  if (rq_.count == 0 && !life_.detached.load()) {
    ++rq_.waiters;
    rq_.cv.wait_until(lock, deadline, [&] { return rq_.count > 0 || life_.detached.load(); });
    --rq_.waiters;
  }
  if (rq_.count > 0) {
    out = std::move(rq_.slots[rq_.head]);
    rq_.head = (rq_.head + 1) % rq_.slots.size();
    --rq_.count;
    rq_.ready.store(rq_.count, std::memory_order_relaxed);
    send_.receives.fetch_add(1, std::memory_order_relaxed);
    return Status::ok();
  }
  if (life_.detached.load() || life_.closed.load()) {
    return {Code::CLOSED, "receive: the channel is closed and its queue is empty"};
  }
  return {Code::TIMED_OUT, "receive: no message within the timeout"};
}

bool ChannelCore::try_receive(Message& out) {
  if (pop_queued(out)) {
    send_.receives.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // While the loop stands aside for an inline receiver nobody else reads the socket:
  // read it here, if the channel's lock is free. (Never on the loop thread, which may
  // hold the lock already.)
  if (!rx_.loop_aside.load() || handler_set_.message.load() || loop_.on_loop_thread()) return false;
  bool poke = false;
  {
    std::unique_lock<std::mutex> exec(exec_mu_, std::try_to_lock);
    // rx_.reading: the inline receiver is in a blocking read (or holds what it read), and
    // reading here too could put datagrams into the pipeline out of socket order.
    if (!exec.owns_lock() || life_.detached.load() || !pipeline_ || !transport_ || !receiving_ ||
        rx_.reading.load() != 0) {
      return false;
    }
    poke = inline_round(RuntimeLoop::now_ns(), true);
  }
  if (poke) uv_async_send(&async_);
  if (!pop_queued(out)) return false;
  send_.receives.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ChannelCore::set_message_handler(Channel::MessageHandler h) {
  if (life_.detached.load()) return;
  handler_set_.message.store(static_cast<bool>(h));
  // Always posted, never inline: a handler replacing itself must not destroy the function
  // that is running.
  loop_.post([this, h = std::move(h)]() mutable {
    if (life_.detached.load()) return;
    ExecGuard exec(*this);
    handler_ = std::move(h);
    if (handler_) {
      hand_queued_to_handler();
      // Handlers run on the loop: it reads the socket again.
      resume_reading();
    }
  });
  // An inline receiver sees handler_set_.message and goes back to waiting on the queue.
  wake_inline();
}

// The channel delivers from the moment it opens, so an application that sets its handler
// right after open() races the first messages: whatever was delivered before the handler
// was set waits in the receive queue, and goes to the handler first, in order, before
// anything delivered later (which dispatch() hands over once this returns).
void ChannelCore::hand_queued_to_handler() noexcept {
  const BufferHome::DirectReturn direct(*home_);
  Message m;
  while (handler_ && pop_queued(m)) {
    try {
      handler_(std::move(m));
    } catch (...) {
      ++shell_.handler_exceptions;
    }
  }
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
  // triggered, so whatever is left wakes us again. A short batch means the socket is
  // empty: reading again would only cost a system call that finds nothing (one per
  // wake-up, as many as the datagrams themselves under request/response traffic).
  for (int round = 0; round < 16; ++round) {
    const int n = read_batch(now);
    if (n == 0) break;
    if (n < 0) continue;
    dispatch();
    if (transport_->tx_pending() > 0) flush_tx();  // handlers' replies, without waiting for more rounds
    if (static_cast<std::size_t>(n) < rx_batch_.size()) break;
  }
  // Datagrams already read (GRO) do not make the socket readable: hand them out now.
  while (transport_->rx_buffered()) {
    const int n = transport_->take_buffered(*pool_, rx_batch_.data(), static_cast<int>(rx_batch_.size()));
    feed_batch(n, now);
    dispatch();
  }
  after_input(now);
}

// Datagrams addressed to this member alone (see UdpTransport): read by the loop even while
// an inline receiver owns the group socket; bounded like on_readable.
void ChannelCore::on_unicast_readable() noexcept {
  take_returns();
  std::uint64_t now = RuntimeLoop::now_ns();
  for (int round = 0; round < 16; ++round) {
    const int n = transport_->receive_unicast(*pool_, rx_batch_.data(), static_cast<int>(rx_batch_.size()));
    if (n == 0) break;
    if (n < 0) continue;
    feed_batch(n, now);
    dispatch();
    if (transport_->tx_pending() > 0) flush_tx();
    if (static_cast<std::size_t>(n) < rx_batch_.size()) break;  // short: the socket is empty
  }
  after_input(now);
}

Status ChannelCore::hint_load(double fraction) {
  if (!(fraction >= 0.0 && fraction <= 1.0)) {
    return {Code::INVALID_ARGUMENT, "hint_load: the load must be a fraction in [0, 1], got " + std::to_string(fraction)};
  }
  if (life_.closed.load()) return {Code::CLOSED, "hint_load: the channel is closed"};
  load_hint_ppm_.store(static_cast<std::uint32_t>(fraction * 1e6), std::memory_order_relaxed);
  return Status::ok();
}

double ChannelCore::load() const noexcept {
  const double hint = static_cast<double>(load_hint_ppm_.load(std::memory_order_relaxed)) * 1e-6;
  if (handler_set_.message.load(std::memory_order_relaxed) || rq_.slots.empty()) return hint;
  const double queued = static_cast<double>(rq_.ready.load(std::memory_order_relaxed) + to_deliver_.size());
  const double fill = queued / (0.5 * static_cast<double>(rq_.slots.size()));
  return std::min(1.0, std::max(hint, fill));
}

void ChannelCore::deliver(Packet* p) noexcept {
  if (static_cast<Duplexity>(config_.duplexity.load(std::memory_order_relaxed)) == Duplexity::send_only) {
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

Message ChannelCore::make_message(Packet* p) {
  Message m(p, home_);
  m.sender_id = p->sender;
  m.epoch = p->epoch;
  m.seq = p->seq;
  m.has_seq = p->ext(wire::Ext::seq) != nullptr;
  m.flags = p->flags;
  m.received_ns = p->rx_ns;
  m.expires_ns = p->expires_ns;
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
    std::lock_guard<std::mutex> lock(rq_.mu);
    for (Packet* p : delivering_) {
      note_delivery(*p);
      if (rq_.count == rq_.slots.size()) {
        // Drop-newest, like a full socket buffer: what is queued stays in order.
        ++shell_.receive_queue_full;
        p->release();
        continue;
      }
      ++shell_.delivered_messages;
      shell_.delivered_bytes += p->payload_len;
      rq_.slots[(rq_.head + rq_.count) % rq_.slots.size()] = make_message(p);
      ++rq_.count;
      ++added;
    }
    rq_.ready.store(rq_.count, std::memory_order_release);
    waiting = rq_.waiters > 0;
  }
  delivering_.clear();
  // Only a sleeping receive() needs the (costly) wake-up; a spinning one sees rq_.ready.
  if (added != 0 && waiting) rq_.cv.notify_all();
  // An inline receiver sleeps in poll(), not on rq_.cv (a stage timer, or a send, made
  // the loop deliver while the receiver waits on the socket).
  if (added != 0 && from_loop && rx_.receiver.load()) wake_inline();
  return added;
}

bool ChannelCore::pop_queued(Message& out) noexcept {
  std::lock_guard<std::mutex> lock(rq_.mu);
  while (rq_.count > 0) {
    out = std::move(rq_.slots[rq_.head]);
    rq_.head = (rq_.head + 1) % rq_.slots.size();
    --rq_.count;
    rq_.ready.store(rq_.count, std::memory_order_relaxed);
    // A message whose lifetime ran out while it waited in the queue is never handed out.
    if (out.expires_ns == 0 || RuntimeLoop::now_ns() < out.expires_ns) return true;
    out.reset();
    rq_.expired.fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

}  // namespace tmc::detail
