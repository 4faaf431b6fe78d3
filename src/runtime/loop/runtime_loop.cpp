#include "runtime/loop/runtime_loop.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "tmc/channel.hpp"

namespace tmc {
namespace detail {

RuntimeLoop::RuntimeLoop(const RuntimeOptions& options) : options_(options) {
  // Both handles are set up before the thread runs the loop, so no other thread ever
  // touches the loop while it runs (libuv handles are not thread-safe, except
  // uv_async_send).
  if (uv_loop_init(&loop_) != 0 || uv_async_init(&loop_, &async_, &RuntimeLoop::on_async) != 0) {
    throw Error(Status(Code::INTERNAL, "libuv: could not initialise the runtime's event loop"));
  }
  async_.data = this;
  std::promise<std::thread::id> started;
  auto id = started.get_future();
  thread_ = std::thread([this, &started] {
    started.set_value(std::this_thread::get_id());
    run();
  });
  thread_id_ = id.get();
}

void RuntimeLoop::run() {
  if (options_.cpu >= 0 && options_.cpu < CPU_SETSIZE) {
    // Best effort: a CPU outside this process's set leaves the thread where it was.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  if (options_.idle == IdleStrategy::block) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    return;
  }
  const bool yield = options_.idle == IdleStrategy::yield;
  // uv_run (an epoll_wait, timers, posted work) once every this many poll rounds.
  constexpr unsigned kUvEvery = 8;
  unsigned round = 0;
  for (;;) {
    // Each uv_run returns 0 once no handle is left (the runtime's own async handle closes
    // last, in ~RuntimeLoop or stop_from_inside()).
    if (channels.load(std::memory_order_relaxed) == 0) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0) return;
      continue;
    }
    if (posted_pending_.load(std::memory_order_relaxed) && posted_pending_.exchange(false, std::memory_order_acquire)) {
      // Work posted from another thread (a handler set, a channel opened or closed) runs
      // before the sockets are read again, as it would with epoll.
      run_posted();
    }
    if (pollers_dirty_) {
      pollers_.erase(std::remove(pollers_.begin(), pollers_.end(), nullptr), pollers_.end());
      pollers_dirty_ = false;
    }
    // By index: a poller may register another (a channel opened from a handler).
    for (std::size_t i = 0; i < pollers_.size(); ++i) {
      if (pollers_[i] != nullptr) pollers_[i]->poll_once();
    }
    if (++round % kUvEvery == 0 || pollers_.empty()) {
      if (uv_run(&loop_, UV_RUN_NOWAIT) == 0) return;
    }
    if (yield) {
      sched_yield();
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
    }
  }
}

void RuntimeLoop::stop_from_inside() noexcept {
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  thread_.detach();
}

RuntimeLoop::~RuntimeLoop() {
  post([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
  thread_.join();
  run_posted();  // nothing should be left; run it here rather than leak promises
  uv_loop_close(&loop_);
}

void RuntimeLoop::add_poller(Poller* p) {
  if (polls()) pollers_.push_back(p);
}

void RuntimeLoop::remove_poller(Poller* p) noexcept {
  for (Poller*& q : pollers_) {
    if (q == p) {
      q = nullptr;
      pollers_dirty_ = true;
    }
  }
}

void RuntimeLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
  posted_pending_.store(true, std::memory_order_release);
  uv_async_send(&async_);
}

void RuntimeLoop::on_async(uv_async_t* handle) { static_cast<RuntimeLoop*>(handle->data)->run_posted(); }

void RuntimeLoop::run_posted() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (posted_.empty()) return;
      running_.swap(posted_);
    }
    for (auto& fn : running_) fn();
    running_.clear();
  }
}

}  // namespace detail

// --- Runtime -------------------------------------------------------------------------------

namespace {

constexpr std::size_t kIdleStrategies = 3;
std::mutex g_default_mu;
// One per idle strategy; leaked on purpose in a forked child.
std::shared_ptr<Runtime>* g_default[kIdleStrategies] = {};

void after_fork_in_child() {
  // The parent's loop thread does not exist in the child. Forget (leak) its runtime so
  // the child's first default_runtime() starts a fresh one, and reset the lock, which
  // another parent thread may have held at the moment of fork().
  new (&g_default_mu) std::mutex();
  for (auto& d : g_default) d = nullptr;
}

}  // namespace

Runtime::Runtime(const RuntimeOptions& options) : loop_(std::make_unique<detail::RuntimeLoop>(options)) {}

Runtime::~Runtime() {
  if (loop_->on_loop_thread()) {
    // The last reference went away on the loop thread itself (e.g. inside a handler): a
    // thread cannot join itself. Close the loop's last handle so uv_run returns after this
    // callback, and leave the loop object to that thread (a small, deliberate leak).
    loop_.release()->stop_from_inside();
  }
}

std::shared_ptr<Runtime> Runtime::create() { return create(RuntimeOptions{}); }

std::shared_ptr<Runtime> Runtime::create(const RuntimeOptions& options) {
  return std::shared_ptr<Runtime>(new Runtime(options));
}

const RuntimeOptions& Runtime::options() const noexcept { return loop_->options(); }

std::shared_ptr<Runtime> Runtime::default_runtime() { return default_runtime(IdleStrategy::block); }

std::shared_ptr<Runtime> Runtime::default_runtime(IdleStrategy idle) {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, &after_fork_in_child);
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> lock(g_default_mu);
  auto& slot = g_default[static_cast<std::size_t>(idle) % kIdleStrategies];
  if (slot == nullptr) {
    RuntimeOptions options;
    options.idle = idle;
    slot = new std::shared_ptr<Runtime>(create(options));
  }
  return *slot;
}

std::size_t Runtime::channel_count() const noexcept { return loop_->channels.load(); }

bool Runtime::on_loop_thread() const noexcept { return loop_->on_loop_thread(); }

std::string_view idle_strategy_name(IdleStrategy s) noexcept {
  switch (s) {
    case IdleStrategy::block: return "block";
    case IdleStrategy::yield: return "yield";
    case IdleStrategy::spin: return "spin";
  }
  return "block";
}

bool parse_idle_strategy(std::string_view text, IdleStrategy& out) noexcept {
  for (IdleStrategy s : {IdleStrategy::block, IdleStrategy::yield, IdleStrategy::spin}) {
    if (text == idle_strategy_name(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

}  // namespace tmc
