// libTMC._tmc.Channel: tmc::Channel for Python.
//
// Receiving has two modes.
//   direct   (from open until the first asyncio wait or on_message): recv() is the C++
//            Channel::receive, called with the GIL released, in slices of kSignalCheck so
//            that Ctrl-C (PyErr_CheckSignals) is noticed. The loop thread queues a whole
//            delivery batch under one lock and wakes the receiver once, so a Python loop
//            costs little more than a C++ one (bench/python_rate.py).
//   handler  the binding installs its own on_message handler, which either calls the
//            Python callback (on the loop thread, GIL taken; an exception goes to
//            sys.unraisablehook) or queues the message in an Inbox (a deque under a mutex,
//            bounded like the C++ queue). The Inbox owns an eventfd, created on first use;
//            while an asyncio event loop has a reader on it ("armed"), the handler writes
//            to it after queueing, so `await c.arecv()` needs no thread at all (the
//            asyncio half is in __init__.py). recv() then waits on the Inbox.
// The switch happens once and is one-way. Messages the C++ queue still holds are moved
// into the Inbox, ahead of later ones, so nothing is reordered.
//
// The GIL. Every call that can wait for the loop thread (open, send, update, stats,
// members, close) releases the GIL: the loop thread may itself be waiting for the GIL to
// run a callback, and holding the GIL while waiting for the loop would deadlock. The
// handler never holds the Inbox mutex while taking the GIL, so recv may take the mutex
// without releasing the GIL on its fast path.
//
// Interpreter exit. An atexit hook closes every open channel while the interpreter still
// works, so that no callback runs during finalization (the handler also checks for it),
// and waits until every thread blocked in a call (recv in a daemon thread) has woken and
// taken the GIL back; a thread must not take the GIL once finalization has begun
// (GilRelease).
#include <pybind11/stl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <tmc/channel.hpp>
#include <tmc/modules.hpp>

#include "common.hpp"

namespace tmc::python {

namespace {

using Clock = std::chrono::steady_clock;
/// How often a blocked recv() wakes to let Python handle signals (Ctrl-C).
constexpr auto kSignalCheck = std::chrono::milliseconds(50);

bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

/// Calls in progress with the GIL released (GilRelease), for the atexit hook's drain.
std::atomic<int> g_released{0};
/// The interpreter's main thread (threading.main_thread()): the one that finalizes it.
std::atomic<unsigned long> g_main_thread{0};

/// py::gil_scoped_release for calls that wait, safe at interpreter exit. A daemon thread
/// that takes the GIL back once finalization has begun is ended by CPython from inside the
/// taking (pthread_exit); inside pybind11's noexcept destructor that unwinding aborts the
/// process. So: the atexit hook drains these calls before finalization (close_all). One
/// that comes back later anyway never takes the GIL: its thread parks until the process
/// ends (the main thread, which finalizes, takes it as usual). And should finalization
/// begin while it waits for the GIL, this destructor lets CPython's thread exit unwind.
class GilRelease {
 public:
  GilRelease() : state_(PyEval_SaveThread()) { g_released.fetch_add(1); }
  ~GilRelease() noexcept(false) {
    if (interpreter_finalizing() && PyThread_get_thread_ident() != g_main_thread.load()) {
      for (;;) ::pause();  // the process is ending; this thread must not touch Python again
    }
    PyEval_RestoreThread(state_);
    g_released.fetch_sub(1);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

/// What the loop-thread handler shares with the Python object. Owned jointly, so the
/// handler can never see it destroyed.
struct Inbox {
  explicit Inbox(std::size_t cap) : capacity(cap) {}
  ~Inbox() {
    if (efd >= 0) ::close(efd);
  }
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> queue;       // guarded by mu
  std::size_t capacity;            // messages; the newest is dropped when full
  bool closed = false;             // guarded by mu
  int sleepers = 0;                // guarded by mu: threads waiting on cv
  std::uint64_t dropped_full = 0;  // guarded by mu
  int efd = -1;                    // eventfd for asyncio, created on first use (under mu)
  std::atomic<bool> armed{false};  // an event loop watches efd: signal it after queueing

  // The Python callback. The pointer is read and written only with the GIL held; the flag
  // lets the handler skip the GIL entirely when there is none.
  std::atomic<bool> has_callback{false};
  PyObject* callback = nullptr;  // strong reference
  std::atomic<std::uint64_t> callback_errors{0};

  /// Loop thread (or the opening thread): queue one message and wake whoever waits.
  void push(Message&& m) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (queue.size() >= capacity) {
        ++dropped_full;  // like a full socket buffer: what is queued stays in order
        return;
      }
      queue.push_back(std::move(m));
      wake = sleepers > 0;
    }
    if (wake) cv.notify_one();
    if (armed.load()) signal();
  }

  void signal() const noexcept {
    const std::uint64_t one = 1;
    // EAGAIN only when the counter is about to overflow; the fd is readable then anyway.
    [[maybe_unused]] const ssize_t n = ::write(efd, &one, sizeof one);
  }

  enum class Take { got, empty, closed };
  Take take(Message& out) {
    std::lock_guard<std::mutex> lock(mu);
    if (!queue.empty()) {
      out = std::move(queue.front());
      queue.pop_front();
      return Take::got;
    }
    return closed ? Take::closed : Take::empty;
  }
};

/// Loop thread: the handler installed on every channel.
void deliver(const std::shared_ptr<Inbox>& inbox, Message&& m) noexcept {
  try {
    if (!inbox->has_callback.load()) {
      inbox->push(std::move(m));
      return;
    }
    // During finalization taking the GIL would end this (the loop) thread; the atexit hook
    // has closed every channel before that, so this is only a guard.
    if (interpreter_finalizing()) return;
    py::gil_scoped_acquire gil;
    if (inbox->callback == nullptr) {  // cleared while this thread waited for the GIL
      inbox->push(std::move(m));
      return;
    }
    const py::object cb = py::reinterpret_borrow<py::object>(inbox->callback);
    try {
      cb(py::cast(PyMessage{std::move(m)}));
    } catch (py::error_already_set& e) {
      inbox->callback_errors.fetch_add(1);
      e.discard_as_unraisable(cb);
    } catch (const std::exception& e) {
      inbox->callback_errors.fetch_add(1);
      PyErr_SetString(PyExc_RuntimeError, e.what());
      PyErr_WriteUnraisable(cb.ptr());
    }
  } catch (...) {
    // Nothing may escape into the loop thread; the message is dropped.
  }
}

/// Incremented in a fork() child (pthread_atfork), so channels can tell they were
/// inherited: their runtime's loop thread exists only in the parent.
std::atomic<int> g_fork_generation{0};

class PyChannel;
/// Open channels, for the atexit hook. Touched only with the GIL held.
std::set<PyChannel*>& open_channels() {
  static auto* s = new std::set<PyChannel*>();  // never destroyed: used until the very end
  return *s;
}

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

/// Keyword arguments that are open options, not manifest properties.
struct OpenKwargs {
  OpenOptions options;
  py::dict manifest_kwargs;
};

/// module_repository={'dir': ..., 'trust': ..., 'state': ...}: where the manifest's
/// `modules:` are verified and loaded from ('state' optional).
ModuleRepository module_repository_kwarg(py::handle v) {
  constexpr const char* kShape = "Channel(): 'module_repository' must be a dict {'dir': path, 'trust': path, 'state': path}";
  if (!PyDict_Check(v.ptr())) throw py::type_error(kShape);
  ModuleRepository repo;
  for (auto item : py::reinterpret_borrow<py::dict>(v)) {
    const std::string k = py::str(item.first);
    const std::string path = py::str(py::module_::import("os").attr("fspath")(item.second));
    if (k == "dir") {
      repo.dir = path;
    } else if (k == "trust") {
      repo.trust_file = path;
    } else if (k == "state") {
      repo.state_file = path;
    } else {
      throw py::value_error(std::string(kShape) + "; unknown key '" + k + "'");
    }
  }
  if (repo.dir.empty() || repo.trust_file.empty()) throw py::value_error(std::string(kShape) + "; 'dir' and 'trust' are required");
  return repo;
}

OpenKwargs split_kwargs(const py::kwargs& kwargs) {
  OpenKwargs out;
  auto as_u32 = [](const std::string& key, py::handle v) {
    if (PyBool_Check(v.ptr()) || !PyLong_Check(v.ptr())) {
      throw py::type_error("Channel(): '" + key + "' must be an int, not " + type_name(v));
    }
    const long long x = v.cast<long long>();
    if (x < 1 || x > (1LL << 24)) throw py::value_error("Channel(): '" + key + "' must be in 1 .. 16777216");
    return static_cast<std::uint32_t>(x);
  };
  for (auto item : kwargs) {
    const std::string key = item.first.cast<std::string>();
    py::handle v = item.second;
    if (key == "capabilities") {
      if (v.is_none()) continue;
      const std::string path = py::str(py::module_::import("os").attr("fspath")(v));
      Diagnostics diag;
      if (!load_capabilities(path, out.options.caps, diag)) {
        raise_status(Status(Code::INVALID_CAPABILITIES, diag.to_string()));
      }
    } else if (key == "key_file") {
      // The group key file (a str or a path), as OpenOptions::key_file: a manifest's own
      // 'key file' still wins, so update(key_file=...) rolls keys.
      if (v.is_none()) continue;
      out.options.key_file = py::str(py::module_::import("os").attr("fspath")(v));
    } else if (key == "receive_queue_messages") {
      out.options.receive_queue_messages = as_u32(key, v);
    } else if (key == "send_queue_messages") {
      out.options.send_queue_messages = as_u32(key, v);
    } else if (key == "send_blocks_when_full") {
      if (!PyBool_Check(v.ptr())) throw py::type_error("Channel(): 'send_blocks_when_full' must be a bool");
      out.options.send_blocks_when_full = v.ptr() == Py_True;
    } else if (key == "idle_strategy") {
      // The runtime's idle strategy: 'block' (the default), 'yield' or 'spin'.
      if (!PyUnicode_Check(v.ptr())) throw py::type_error("Channel(): 'idle_strategy' must be a str, not " + type_name(v));
      IdleStrategy idle = IdleStrategy::block;
      if (!parse_idle_strategy(v.cast<std::string>(), idle)) {
        throw py::value_error("Channel(): 'idle_strategy' must be 'block', 'yield' or 'spin', not '" +
                              v.cast<std::string>() + "'");
      }
      out.options.idle_strategy = idle;
    } else if (key == "publish_stats") {
      if (!PyBool_Check(v.ptr())) throw py::type_error("Channel(): 'publish_stats' must be a bool");
      out.options.publish_stats = v.ptr() == Py_True;
    } else if (key == "module_files") {
      // Module objects to load for this channel: a list of paths (unchecked), or a dict of
      // path -> expected SHA-256 (hex), as a verified repository index lists them.
      if (v.is_none()) continue;
      auto set = std::make_shared<ModuleSet>();
      auto load = [&](py::handle path, std::string_view digest) {
        const std::string file = py::str(py::module_::import("os").attr("fspath")(path));
        if (Status st = set->load(file, digest); !st) raise_status(st);
      };
      if (PyDict_Check(v.ptr())) {
        for (auto kv : v.cast<py::dict>()) load(kv.first, kv.second.cast<std::string>());
      } else if (PyList_Check(v.ptr()) || PyTuple_Check(v.ptr())) {
        for (auto path : v) load(path, {});
      } else {
        throw py::type_error("Channel(): 'module_files' must be a list of paths or a dict of path -> sha256, not " +
                             type_name(v));
      }
      out.options.modules = std::move(set);
    } else if (key == "module_repository") {
      if (v.is_none()) continue;
      out.options.module_repository = module_repository_kwarg(v);
    } else {
      out.manifest_kwargs[item.first] = v;
    }
  }
  return out;
}

class PyChannel {
 public:
  PyChannel(py::object manifest, const py::kwargs& kwargs) {
    OpenKwargs split = split_kwargs(kwargs);
    split.options.runtime = Runtime::default_runtime(split.options.idle_strategy.value_or(IdleStrategy::block));
    runtime_ = split.options.runtime;
    Status s;
    const bool is_path = PyUnicode_Check(manifest.ptr()) || PyObject_HasAttrString(manifest.ptr(), "__fspath__") != 0;
    if (is_path) {
      // A YAML file, with any keyword properties applied on top (as update() would).
      const std::string path = py::str(py::module_::import("os").attr("fspath")(manifest));
      const Value changes = manifest_value(py::none(), split.manifest_kwargs);
      GilRelease nogil;
      Manifest base;
      Manifest m;
      Diagnostics diag;
      if (!load_manifest(path, base, diag) || !update_manifest(base, changes, m, diag)) {
        s = Status(Code::INVALID_MANIFEST, diag.to_string());
      } else {
        s = Channel::try_open(m, split.options, ch_);
      }
    } else {
      const Value v = manifest_value(manifest, split.manifest_kwargs);
      GilRelease nogil;
      s = Channel::try_open(v, split.options, ch_);
    }
    check(s);
    inbox_ = std::make_shared<Inbox>(split.options.receive_queue_messages);
    {
      GilRelease nogil;
      refresh_cached_plan();
    }
    fork_generation_ = g_fork_generation.load();
    open_channels().insert(this);
  }

  ~PyChannel() { close(); }
  PyChannel(const PyChannel&) = delete;
  PyChannel& operator=(const PyChannel&) = delete;

  // --- sending ---------------------------------------------------------------------------
  py::object send(py::handle payload, py::handle per_message, bool wait, bool want_token) {
    check_not_inherited();
    const char* data = nullptr;
    Py_ssize_t n = 0;
    Py_buffer view{};
    bool have_view = false;
    PyObject* p = payload.ptr();
    if (PyBytes_Check(p)) {
      data = PyBytes_AS_STRING(p);
      n = PyBytes_GET_SIZE(p);
    } else if (PyUnicode_Check(p)) {
      data = PyUnicode_AsUTF8AndSize(p, &n);
      if (data == nullptr) throw py::error_already_set();
    } else if (PyObject_CheckBuffer(p) != 0) {
      // A bytearray cannot be resized while its buffer is exported, so the bytes stay put
      // while the GIL is released below.
      if (PyObject_GetBuffer(p, &view, PyBUF_SIMPLE) != 0) throw py::error_already_set();
      have_view = true;
      data = static_cast<const char*>(view.buf);
      n = view.len;
    } else {
      throw py::type_error("send: the message must be bytes, bytearray, memoryview or str, not " +
                           type_name(payload));
    }
    struct ViewGuard {
      Py_buffer* v;
      bool on;
      ~ViewGuard() {
        if (on) PyBuffer_Release(v);
      }
    } guard{&view, have_view};
    const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(n));
    Status s;
    if (wait) {
      const MessageManifest mm = per_message.is_none() ? MessageManifest{} : message_manifest(per_message);
      DeliveryOutcome o;
      {
        GilRelease nogil;
        std::future<DeliveryOutcome> f;
        s = ch_.send(bytes, mm, &f);
        if (s.is_ok()) o = f.get();  // bounded by the retry budget, or settled by close()
      }
      check(s);
      py::dict out;
      out["state"] = std::string(delivery_state_name(o.state));
      out["acked"] = o.acked;
      out["missing"] = o.missing;
      return out;  // C++20 moves it implicitly (a std::move here is -Werror=redundant-move)
    }
    if (want_token) {
      const MessageManifest mm = per_message.is_none() ? MessageManifest{} : message_manifest(per_message);
      MessageToken token = 0;
      {
        GilRelease nogil;
        s = ch_.send(bytes, mm, nullptr, &token);
      }
      check(s);
      return py::int_(token);
    }
    if (per_message.is_none()) {
      GilRelease nogil;
      s = ch_.send(bytes);
    } else {
      const MessageManifest mm = message_manifest(per_message);
      GilRelease nogil;
      s = ch_.send(bytes, mm);
    }
    check(s);
    return py::none();
  }

  void forget(MessageToken token, bool and_earlier) {
    check_not_inherited();
    Status s;
    {
      GilRelease nogil;
      s = ch_.forget(token, and_earlier ? ForgetScope::and_earlier : ForgetScope::message);
    }
    check(s);
  }

  void acknowledge(MessageToken token, const std::string& member) {
    check_not_inherited();
    Status s;
    {
      GilRelease nogil;
      s = ch_.acknowledge(token, member);
    }
    check(s);
  }

  void hint_load(double fraction) {
    check_not_inherited();
    check(ch_.hint_load(fraction));
  }

  py::list view() {
    check_not_inherited();
    std::vector<MemberStatus> v;
    {
      GilRelease nogil;
      v = ch_.view();
    }
    py::list out;
    for (const auto& m : v) {
      py::dict d;
      d["name"] = m.name;
      d["state"] = std::string(member_state_name(m.state));
      d["self"] = m.self;
      d["receives"] = m.receives;
      d["sender_id"] = m.sender_id;
      d["epoch"] = m.epoch;
      out.append(std::move(d));
    }
    return out;
  }

  void wait_for_members(std::size_t count, double timeout_s) {
    check_not_inherited();
    if (!(timeout_s >= 0)) throw py::value_error("wait_for_members: timeout must be >= 0 seconds");
    Status s;
    {
      GilRelease nogil;
      s = ch_.wait_for_members(count, std::chrono::nanoseconds(static_cast<std::int64_t>(timeout_s * 1e9)));
    }
    check(s);
  }

  void update(py::object changes, const py::kwargs& kwargs) {
    check_not_inherited();
    const Value v = manifest_value(changes, kwargs);
    Status s;
    {
      GilRelease nogil;
      s = ch_.update(v);
      if (s.is_ok()) refresh_cached_plan();
    }
    check(s);
  }

  // --- receiving -------------------------------------------------------------------------
  /// None: timed out. Raises ChannelError(CLOSED) when closed and drained, unless
  /// `stop_iteration`, which raises StopIteration instead (for `for msg in c`).
  py::object recv(py::object timeout, bool stop_iteration) {
    if (std::optional<py::object> queued = take_now("recv", stop_iteration)) return *queued;
    double seconds = -1;  // < 0: wait until a message or close
    if (!timeout.is_none()) {
      if (PyBool_Check(timeout.ptr())) throw py::type_error("recv: timeout must be None or a number of seconds");
      seconds = PyFloat_AsDouble(timeout.ptr());  // TypeError for a non-number
      if (seconds == -1.0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
      if (!(seconds >= 0)) throw py::value_error("recv: timeout must be None or a number of seconds >= 0");
      if (seconds == 0) return py::none();
    }
    if (runtime_->on_loop_thread()) {
      raise_status(Status(Code::WOULD_BLOCK,
                          "recv: called with a timeout inside an on_message callback; waiting there would stop the "
                          "loop that delivers messages (use recv(timeout=0) or try_recv())"));
    }
    Message m;
    const auto deadline = seconds < 0 ? Clock::time_point::max()
                                      : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                           std::chrono::duration<double>(std::min(seconds, 1e9)));
    for (;;) {
      Inbox::Take r = Inbox::Take::empty;
      {
        GilRelease nogil;
        waiting_.fetch_add(1);
        const auto until = std::min(deadline, Clock::now() + kSignalCheck);
        r = handler_installed_.load() ? wait_inbox(m, until) : wait_direct(m, until);
        waiting_.fetch_sub(1);
      }
      if (r == Inbox::Take::got) return wrap(std::move(m));
      if (r == Inbox::Take::closed) closed_error("recv", stop_iteration);
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (Clock::now() >= deadline) return py::none();
    }
  }

  py::object try_recv() { return take_now("try_recv", false).value_or(py::none()); }

  /// A message already queued, or nullopt. Raises when the channel is closed and drained
  /// (StopIteration instead with `stop_iteration`) and for a send-only member.
  std::optional<py::object> take_now(const char* what, bool stop_iteration) {
    check_not_inherited();
    Message m;
    switch (take(m)) {
      case Inbox::Take::got:
        return wrap(std::move(m));
      case Inbox::Take::closed:
        closed_error(what, stop_iteration);
      case Inbox::Take::empty:
        break;
    }
    refuse_if_send_only(what);
    return std::nullopt;
  }

  py::object on_message(py::object callback) {
    check_not_inherited();
    if (!callback.is_none() && PyCallable_Check(callback.ptr()) == 0) {
      throw py::type_error("on_message: the callback must be callable (or None), not " + type_name(callback));
    }
    if (!callback.is_none()) ensure_handler();
    set_callback(callback);
    return callback;
  }

  // --- inspecting ------------------------------------------------------------------------
  std::vector<std::string> members() {
    check_not_inherited();
    GilRelease nogil;
    return ch_.members();
  }

  py::dict stats() {
    check_not_inherited();
    ChannelStats s;
    {
      GilRelease nogil;
      s = ch_.stats();
    }
    py::dict d;
    d["messages_sent"] = s.messages_sent;
    d["bytes_sent"] = s.bytes_sent;
    d["datagrams_sent"] = s.datagrams_sent;
    d["datagram_bytes_sent"] = s.datagram_bytes_sent;
    d["datagrams_received"] = s.datagrams_received;
    d["datagram_bytes_received"] = s.datagram_bytes_received;
    d["messages_delivered"] = s.messages_delivered;
    d["bytes_delivered"] = s.bytes_delivered;
    py::dict drops;
    for (std::size_t i = 0; i < kDropReasonCount; ++i) {
      drops[py::str(std::string(drop_reason_name(static_cast<DropReason>(i))))] = s.drops[i];
    }
    d["drops"] = drops;
    d["receive_queue_full"] = s.receive_queue_full;
    d["own_datagrams"] = s.own_datagrams;
    d["send_errors"] = s.send_errors;
    d["receive_errors"] = s.receive_errors;
    d["send_latency_ns"] = s.send_latency_ns;
    d["interarrival_ns"] = s.interarrival_ns;
    d["interarrival_jitter_ns"] = s.interarrival_jitter_ns;
    d["loss_ratio"] = s.loss_ratio < 0 ? py::object(py::none()) : py::object(py::float_(s.loss_ratio));
    py::dict counters;
    for (const auto& [k, v] : s.counters) counters[py::str(k)] = v;
    {
      std::lock_guard<std::mutex> lock(inbox_->mu);
      counters["python.receive_queue_full"] = inbox_->dropped_full;
      counters["python.queued"] = inbox_->queue.size();
    }
    counters["python.callback_errors"] = inbox_->callback_errors.load();
    d["counters"] = counters;
    py::dict gauges;
    for (const auto& [k, v] : s.gauges) gauges[py::str(k)] = v;
    d["gauges"] = gauges;
    return d;
  }

  Plan plan() {
    check_not_inherited();
    GilRelease nogil;
    return ch_.plan();
  }
  std::string manifest_yaml() {
    check_not_inherited();
    GilRelease nogil;
    return to_yaml(ch_.manifest());
  }
  std::string name() {
    check_not_inherited();
    GilRelease nogil;
    return ch_.name();
  }
  std::uint32_t sender_id() const noexcept { return ch_.sender_id(); }
  bool closed() const noexcept { return inherited() || !ch_.is_open(); }

  // --- closing ---------------------------------------------------------------------------
  void close() {
    if (inbox_ == nullptr) return;  // the constructor failed before the channel opened
    if (inherited()) {
      // Opened by the parent before fork(): its loop thread does not exist here, so
      // closing would wait forever. The handle is left alone (leaked) instead.
      if (ch_.is_open()) (void)new Channel(std::move(ch_));
    } else {
      GilRelease nogil;
      ch_.close();
    }
    {
      std::lock_guard<std::mutex> lock(inbox_->mu);
      inbox_->closed = true;
    }
    inbox_->cv.notify_all();
    if (inbox_->efd >= 0) inbox_->signal();
    set_callback(py::none());
    open_channels().erase(this);
  }

  /// The atexit hook: close every channel, then wait until every call that was waiting
  /// with the GIL released (a daemon thread's recv(), say) has woken and taken the GIL
  /// back, so none of them does so once finalization has begun. Closing wakes them all;
  /// the bound only keeps exit from hanging on a call something else holds.
  static void close_all() {
    const std::set<PyChannel*> all = open_channels();
    for (PyChannel* c : all) c->close();
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (g_released.load() > 0 && Clock::now() < deadline) {
      PyThreadState* self = PyEval_SaveThread();  // not a GilRelease: this one is not drained
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      PyEval_RestoreThread(self);
    }
  }

  // --- asyncio support (used by libTMC.Channel.arecv) ------------------------------------
  int async_fd() {
    check_not_inherited();
    ensure_handler();
    std::lock_guard<std::mutex> lock(inbox_->mu);
    if (inbox_->efd < 0) {
      inbox_->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (inbox_->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        throw py::error_already_set();
      }
      if (inbox_->closed) inbox_->signal();
    }
    return inbox_->efd;
  }
  void set_armed(bool on) { inbox_->armed.store(on); }
  /// Whether recv would not wait: a message is queued or the channel is closed.
  bool ready() {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    return !inbox_->queue.empty() || inbox_->closed;
  }
  /// Threads blocked in recv() right now (tests use it to prove the GIL is released).
  int waiting() const noexcept { return waiting_.load(); }
  void clear_fd() {
    std::uint64_t v = 0;
    if (inbox_->efd >= 0) [[maybe_unused]] const ssize_t n = ::read(inbox_->efd, &v, sizeof v);
  }

 private:
  static py::object wrap(Message&& m) { return py::cast(PyMessage{std::move(m)}); }

  [[noreturn]] void closed_error(const char* what, bool stop_iteration) {
    if (stop_iteration) throw py::stop_iteration();
    raise_status(Status(Code::CLOSED, std::string(what) + ": the channel is closed and every message was received"));
  }

  void refuse_if_send_only(const char* what) {
    if (send_only_.load()) {
      raise_status(Status(Code::NOT_PERMITTED_BY_DUPLEXITY,
                          std::string(what) + ": this member of the channel is send-only (duplexity)"));
    }
  }

  /// GIL held: replace the Python callback (None: none).
  void set_callback(const py::object& callback) {
    PyObject* old = inbox_->callback;
    inbox_->callback = callback.is_none() ? nullptr : callback.inc_ref().ptr();
    inbox_->has_callback.store(inbox_->callback != nullptr);
    Py_XDECREF(old);
  }

  /// Whether this process is a fork() child of the one that opened the channel.
  bool inherited() const noexcept { return fork_generation_ != g_fork_generation.load(std::memory_order_relaxed); }
  void check_not_inherited() const {
    if (inherited()) {
      raise_status(Status(Code::CLOSED,
                          "this channel was opened before fork() and belongs to the parent process; open a new "
                          "Channel in the child"));
    }
  }

  void refresh_cached_plan() { send_only_.store(ch_.plan().duplexity == Duplexity::send_only); }

  /// GIL held, never waits: the next message, from the C++ queue (direct mode, or what it
  /// still held when the handler came) or the Inbox.
  Inbox::Take take(Message& out) {
    if (auto m = ch_.try_receive()) {
      out = std::move(*m);
      return Inbox::Take::got;
    }
    if (!handler_installed_.load()) return ch_.is_open() ? Inbox::Take::empty : Inbox::Take::closed;
    return inbox_->take(out);
  }

  /// GIL released: direct mode's wait, the C++ receive.
  Inbox::Take wait_direct(Message& out, Clock::time_point until) {
    const auto left = std::max(Clock::duration::zero(), until - Clock::now());
    const Status s = ch_.receive(out, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
    if (s.is_ok()) return Inbox::Take::got;
    if (s.code() == Code::CLOSED) return Inbox::Take::closed;
    return Inbox::Take::empty;  // TIMED_OUT (send-only was refused before waiting)
  }

  /// GIL released: handler mode's wait, on the Inbox.
  Inbox::Take wait_inbox(Message& out, Clock::time_point until) {
    std::unique_lock<std::mutex> lock(inbox_->mu);
    ++inbox_->sleepers;
    inbox_->cv.wait_until(lock, until, [&] { return !inbox_->queue.empty() || inbox_->closed; });
    --inbox_->sleepers;
    if (!inbox_->queue.empty()) {
      out = std::move(inbox_->queue.front());
      inbox_->queue.pop_front();
      return Inbox::Take::got;
    }
    return inbox_->closed ? Inbox::Take::closed : Inbox::Take::empty;
  }

  /// GIL held: switch to handler mode (once).
  void ensure_handler() {
    if (handler_installed_.load()) return;
    GilRelease nogil;  // the lock and the loop may be held by GIL waiters
    std::lock_guard<std::mutex> lock(install_mu_);
    if (handler_installed_.load()) return;
    ch_.on_message([inbox = inbox_](Message&& m) { deliver(inbox, std::move(m)); });
    // members() runs on the loop after the handler is installed (the loop runs posted work
    // in order), so when it returns every later message goes to the handler and what the
    // C++ queue holds now is all it will ever hold. Move that into the Inbox, ahead of
    // anything the handler queued meanwhile. take() still looks at the C++ queue first, so
    // nothing is lost even if a message slipped in.
    (void)ch_.members();
    std::deque<Message> early;
    while (auto m = ch_.try_receive()) early.push_back(std::move(*m));
    {
      std::lock_guard<std::mutex> inbox_lock(inbox_->mu);
      inbox_->queue.insert(inbox_->queue.begin(), std::make_move_iterator(early.begin()),
                           std::make_move_iterator(early.end()));
      if (!ch_.is_open()) inbox_->closed = true;
    }
    handler_installed_.store(true);
    // A receiver blocked in direct mode sees the switch at its next slice.
  }

  Channel ch_;
  std::shared_ptr<Runtime> runtime_;
  std::shared_ptr<Inbox> inbox_;
  std::atomic<bool> send_only_{false};
  std::atomic<bool> handler_installed_{false};
  std::mutex install_mu_;
  std::atomic<int> waiting_{0};  // threads blocked in recv()
  int fork_generation_ = 0;      // g_fork_generation when opened
};

}  // namespace

void register_channel(py::module_& m) {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1); }) == 0;
  }();
  (void)registered;
  g_main_thread.store(py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>());
  py::class_<PyChannel>(m, "Channel", py::dynamic_attr(),
                        "A multicast channel with the guarantees its manifest declares (paper, Listing 1).")
      .def(py::init<py::object, const py::kwargs&>(), py::arg("manifest") = py::none())
      .def("send", &PyChannel::send, py::arg("message"), py::arg("properties") = py::none(), py::kw_only(),
           py::arg("wait") = false, py::arg("token") = false,
           "Send one message to the group, optionally with per-message properties ({'reliability': True}, "
           "{'lifetime us': 20000}). With wait=True, block until the message's outcome is known and return it "
           "as a dict {'state': 'met'|'failed'|'unreliable'|'abandoned'|'forgotten'|'expired', 'acked': [...], "
           "'missing': [...]}. With token=True, return the message's token (an int) for forget().")
      .def("hint_load", &PyChannel::hint_load, py::arg("fraction"),
           "A load hint: how full the application is, in [0, 1] (e.g. its own queue's fill). With flow "
           "control, this member's advertised window shrinks with it, so senders slow down before it drops.")
      .def("forget", &PyChannel::forget, py::arg("token"), py::kw_only(), py::arg("and_earlier") = false,
           "Forget a message not settled yet (by the token send(..., token=True) returned), or with "
           "and_earlier=True it and every message sent before it: it is no longer repaired or waited for, its "
           "outcome becomes 'forgotten', and receivers that missed it stop waiting for it.")
      .def("acknowledge", &PyChannel::acknowledge, py::arg("token"), py::arg("member"),
           "Acknowledge on `member`'s behalf the reliable message named by `token` (from send(..., "
           "token=True)): the application learned from that member's own reply that it has the message. "
           "With 'reliability': {'acks': 'application'} these are the only acks (request/response). Unknown "
           "tokens and members outside the view are ignored.")
      .def_property_readonly("view", &PyChannel::view,
                             "The membership view: a list of {'name', 'state', 'self', 'receives', 'sender_id', "
                             "'epoch'} (empty without the membership stage).")
      .def("wait_for_members", &PyChannel::wait_for_members, py::arg("count"), py::arg("timeout") = 10.0,
           "Wait until the view holds `count` alive members besides this one; raises ChannelTimeoutError.")
      .def("update", &PyChannel::update, py::arg("changes") = py::none(),
           "Apply manifest changes for good ({'error checking': True}); keyword properties work too.")
      .def(
          "recv", [](PyChannel& c, py::object timeout) { return c.recv(std::move(timeout), false); },
          py::arg("timeout") = py::none(),
          "The next message; None after `timeout` seconds (None: wait until one arrives). Raises ChannelError "
          "(code CLOSED) once the channel is closed and every message was received.")
      .def("try_recv", &PyChannel::try_recv, "The next queued message, or None; never waits.")
      .def("on_message", &PyChannel::on_message, py::arg("callback"),
           "Call `callback(message)` on the runtime's loop thread for every later message (None: back to recv()). "
           "Returns the callback, so it can be used as a decorator.")
      .def_property_readonly("members", &PyChannel::members, "Member names: the manifest's, every sender heard, and this one.")
      .def_property_readonly("stats", &PyChannel::stats, "Counters and estimates, as a dict.")
      .def_property_readonly("plan", &PyChannel::plan, "The compiled plan in force (str() prints it).")
      .def_property_readonly("manifest_yaml", &PyChannel::manifest_yaml, "The manifest in force, as YAML.")
      .def_property_readonly("name", &PyChannel::name, "This member's name.")
      .def_property_readonly("sender_id", &PyChannel::sender_id, "This member's wire id (FNV-1a of its name).")
      .def_property_readonly("closed", &PyChannel::closed)
      .def("close", &PyChannel::close, "Flush queued sends, leave the group. Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyChannel& c, py::args) { c.close(); })
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", [](PyChannel& c) { return c.recv(py::none(), true); })
      .def("__repr__",
           [](PyChannel& c) {
             if (c.closed()) return std::string("<libTMC.Channel (closed)>");
             const Plan p = c.plan();
             return "<libTMC.Channel '" + p.channel_id + "' member '" + p.member + "' group " + p.transport.group +
                    ":" + std::to_string(p.transport.port) + ">";
           })
      .def("_async_fd", &PyChannel::async_fd)
      .def("_set_armed", &PyChannel::set_armed)
      .def("_ready", &PyChannel::ready)
      .def("_clear_fd", &PyChannel::clear_fd)
      .def("_waiting", &PyChannel::waiting);

  m.def("_close_all", &PyChannel::close_all, "Close every open channel (the package's atexit hook).");
}

}  // namespace tmc::python
