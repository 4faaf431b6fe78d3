#include "runtime/loop/runtime_loop.hpp"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "tmc/channel.hpp"

namespace tmc {
namespace detail {

RuntimeLoop::RuntimeLoop() {
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
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  thread_id_ = id.get();
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

void RuntimeLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted_.push_back(std::move(fn));
  }
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

std::mutex g_default_mu;
std::shared_ptr<Runtime>* g_default = nullptr;  // leaked on purpose in a forked child

void after_fork_in_child() {
  // The parent's loop thread does not exist in the child. Forget (leak) its runtime so
  // the child's first default_runtime() starts a fresh one, and reset the lock, which
  // another parent thread may have held at the moment of fork().
  new (&g_default_mu) std::mutex();
  g_default = nullptr;
}

}  // namespace

Runtime::Runtime() : loop_(std::make_unique<detail::RuntimeLoop>()) {}

Runtime::~Runtime() {
  if (loop_->on_loop_thread()) {
    // The last reference went away on the loop thread itself (e.g. inside a handler): a
    // thread cannot join itself. Close the loop's last handle so uv_run returns after this
    // callback, and leave the loop object to that thread (a small, deliberate leak).
    loop_.release()->stop_from_inside();
  }
}

std::shared_ptr<Runtime> Runtime::create() { return std::shared_ptr<Runtime>(new Runtime()); }

std::shared_ptr<Runtime> Runtime::default_runtime() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, &after_fork_in_child);
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (g_default == nullptr) g_default = new std::shared_ptr<Runtime>(create());
  return *g_default;
}

std::size_t Runtime::channel_count() const noexcept { return loop_->channels.load(); }

bool Runtime::on_loop_thread() const noexcept { return loop_->on_loop_thread(); }

}  // namespace tmc
