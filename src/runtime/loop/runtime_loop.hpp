// The production shell's event loop: one libuv loop on its own thread per tmc::Runtime.
//
// Channels run every socket, timer and pipeline call on this thread. Other threads reach
// it in two ways: a channel's own uv_async_t (the hot path: "my send queue has work"),
// and post()/call() for cold work (open, close, update, stats), which go through one
// mutex-protected list and the runtime's uv_async_t.
//
// Idle strategies (tmc::IdleStrategy): `block` runs uv_run(UV_RUN_DEFAULT), which sleeps in
// epoll_wait until something happens. `yield` and `spin` run uv_run(UV_RUN_NOWAIT) in a
// loop while channels are open: every round polls every socket, timerfd and async handle
// with a zero timeout, so a datagram or a send is seen within one round instead of after a
// thread wake-up; between rounds the thread yields (sched_yield) or pauses. With no channel
// open they sleep as `block` does (one uv_run(UV_RUN_ONCE) at a time).
//
// The poll phase: a polling loop does not learn of a datagram from epoll. Each round it
// calls every registered Poller (a channel: a non-blocking recvmmsg on its sockets and a
// look at its send queue), and runs uv_run(UV_RUN_NOWAIT) for timers, posted work and
// anything else only every kUvEvery rounds, or at once when work was posted (a handler
// set, a channel opened or closed: done before the next read, as with epoll). So a datagram costs the recvmmsg that reads
// it and nothing more, as in a busy-polling transport (on a virtual machine, where a
// system call costs microseconds, the epoll_wait in front of it was a third of a hop).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "tmc/channel.hpp"

namespace tmc::detail {

/// Polled by a polling runtime's loop every round (see "The poll phase" above).
class Poller {
 public:
  /// Loop thread: read what is waiting, take what was sent; never block.
  virtual void poll_once() noexcept = 0;

 protected:
  ~Poller() = default;
};

class RuntimeLoop {
 public:
  explicit RuntimeLoop(const RuntimeOptions& options);
  ~RuntimeLoop();
  RuntimeLoop(const RuntimeLoop&) = delete;
  RuntimeLoop& operator=(const RuntimeLoop&) = delete;

  [[nodiscard]] uv_loop_t* uv() noexcept { return &loop_; }
  [[nodiscard]] const RuntimeOptions& options() const noexcept { return options_; }
  /// The loop thread polls instead of sleeping (yield, spin).
  [[nodiscard]] bool polls() const noexcept { return options_.idle != IdleStrategy::block; }
  [[nodiscard]] bool on_loop_thread() const noexcept { return std::this_thread::get_id() == thread_id_; }

  /// Run `fn` on the loop thread after the current callback (never inline).
  void post(std::function<void()> fn);

  /// Run `fn` on the loop thread and return its result; inline when already on it.
  template <class F>
  auto call(F&& fn) -> decltype(fn()) {
    if (on_loop_thread()) return fn();
    using R = decltype(fn());
    std::packaged_task<R()> task(std::forward<F>(fn));
    auto result = task.get_future();
    post([&task] { task(); });
    return result.get();
  }

  /// The shell's clock (monotonic, ns). Stages never read it; the shell passes it in.
  static std::uint64_t now_ns() noexcept { return uv_hrtime(); }

  /// For ~Runtime when it runs on the loop thread: let the loop end after the current
  /// callback and detach its thread. The caller must then leak this object.
  void stop_from_inside() noexcept;

  std::atomic<std::size_t> channels{0};

  /// Loop thread, polling runtimes: call `p` every round until remove_poller(p).
  void add_poller(Poller* p);
  void remove_poller(Poller* p) noexcept;

 private:
  static void on_async(uv_async_t* handle);
  void run();  // the loop thread's body
  void run_posted();

  RuntimeOptions options_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  std::thread thread_;
  std::thread::id thread_id_;
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::function<void()>> running_;  // swapped with posted_; keeps capacity
  std::vector<Poller*> pollers_;  ///< loop thread; null entries are removed between rounds
  bool pollers_dirty_ = false;
  std::atomic<bool> posted_pending_{false};  ///< post() ran since the loop last looked
};

}  // namespace tmc::detail
