// The live-counters file: creating it, publishing into a slot, reading it back.
#include "runtime/stat/stat_file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace tmc::detail {

namespace {

constexpr std::size_t kFileBytes = sizeof(StatHeader) + kStatMaxChannels * sizeof(StatSlot);

std::uint64_t unix_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

/// Copies `s` into a fixed field, cut to fit, NUL-padded; returns the bytes kept.
std::size_t put(char* dst, std::size_t cap, std::string_view s) noexcept {
  const std::size_t n = std::min(s.size(), cap - 1);
  std::memcpy(dst, s.data(), n);
  std::memset(dst + n, 0, cap - n);
  return n;
}

std::string get(const char* src, std::size_t cap) { return std::string(src, strnlen(src, cap)); }

}  // namespace

std::string stat_dir() {
  if (const char* d = std::getenv("TMC_STAT_DIR"); d != nullptr && *d != '\0') return d;
  return "/dev/shm/libtmc-" + std::to_string(::getuid());
}

std::uint64_t process_start_time(std::uint64_t pid) noexcept {
  try {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) return 0;
    // The command (field 2) is in parentheses and may hold spaces or ')': the fields
    // after it start at the last ')'. starttime is field 22, the 20th after it.
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(line.substr(close + 1));
    std::string field;
    for (int i = 3; i <= 22; ++i) {
      if (!(rest >> field)) return 0;
    }
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

// --- writer ----------------------------------------------------------------------------------

StatWriter& StatWriter::instance() {
  static auto* w = new StatWriter();  // never destroyed: loop threads may publish until the end
  return *w;
}

bool StatWriter::create_locked() {
  const std::string dir = stat_dir();
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return false;
  const auto pid = static_cast<std::uint64_t>(::getpid());
  std::string path = dir + "/" + std::to_string(pid) + kStatFileSuffix;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  void* mem = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(kFileBytes)) == 0) {
    mem = ::mmap(nullptr, kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  ::close(fd);
  if (mem == MAP_FAILED) {
    ::unlink(path.c_str());
    return false;
  }
  // A fork() child still has the parent's mapping: leave it (and the parent's file) alone.
  auto* h = static_cast<StatHeader*>(mem);  // ftruncate zero-filled the file
  h->layout_version = kStatLayoutVersion;
  h->header_bytes = sizeof(StatHeader);
  h->slot_bytes = sizeof(StatSlot);
  h->slot_count = kStatMaxChannels;
  h->pid = pid;
  h->start_time = process_start_time(pid);
  h->created_unix_ns = unix_ns();
  std::string comm;
  {
    std::ifstream f("/proc/self/comm");
    std::getline(f, comm);
  }
  put(h->command, sizeof h->command, comm);
  h->magic.store(kStatMagic, std::memory_order_release);
  header_ = h;
  slots_ = reinterpret_cast<StatSlot*>(static_cast<char*>(mem) + sizeof(StatHeader));
  path_ = std::move(path);
  pid_ = pid;
  static const bool registered = [] { return std::atexit(&StatWriter::remove_at_exit) == 0; }();
  (void)registered;
  return true;
}

void StatWriter::remove_at_exit() noexcept {
  // Only the file: the mapping stays, because a loop thread of a runtime that outlives
  // main() (the process-wide one) may still publish until the process ends.
  StatWriter& w = instance();
  std::lock_guard<std::mutex> lock(w.mu_);
  if (w.header_ != nullptr && w.pid_ == static_cast<std::uint64_t>(::getpid())) ::unlink(w.path_.c_str());
}

int StatWriter::acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto pid = static_cast<std::uint64_t>(::getpid());
  if (header_ != nullptr && pid_ != pid) {
    header_ = nullptr;  // inherited from the parent: this process gets a file of its own
    slots_ = nullptr;
    held_ = 0;
    failed_ = false;
  }
  if (header_ == nullptr) {
    if (failed_) return -1;  // no directory or no room: channels run without publishing
    if (!create_locked()) {
      failed_ = true;
      return -1;
    }
  }
  for (std::size_t i = 0; i < kStatMaxChannels; ++i) {
    if (slots_[i].in_use.load(std::memory_order_relaxed) == 0) {
      slots_[i].in_use.store(1, std::memory_order_release);
      ++held_;
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string StatWriter::path() {
  std::lock_guard<std::mutex> lock(mu_);
  return header_ != nullptr ? path_ : std::string();
}

void StatWriter::publish(int slot, const StatUpdate& u) noexcept {
  if (slot < 0 || slots_ == nullptr) return;
  StatSlot& s = slots_[slot];
  const std::uint64_t seq = s.seq.load(std::memory_order_relaxed);
  s.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);

  put(s.channel, sizeof s.channel, u.channel);
  put(s.member, sizeof s.member, u.member);
  put(s.group, sizeof s.group, u.group);
  std::uint32_t n = 0;
  if (u.counters != nullptr) {
    for (const auto& [name, value] : *u.counters) {
      if (n == kStatMaxCounters) break;
      put(s.counters[n].name, kStatNameBytes, name);
      std::atomic_ref<std::uint64_t>(s.counters[n].value).store(value, std::memory_order_relaxed);
      ++n;
    }
  }
  s.counter_count = n;
  std::uint32_t g = 0;
  for (const auto& [name, value] : u.gauges) {
    if (g == kStatMaxGauges) break;
    put(s.gauges[g].name, kStatNameBytes, name);
    s.gauges[g].value = value;
    ++g;
  }
  s.gauge_count = g;
  s.plan_bytes = static_cast<std::uint32_t>(put(s.plan, kStatPlanBytes, u.plan));
  std::size_t v = 0;
  if (u.members != nullptr) {
    for (const std::string& m : *u.members) {
      if (v + m.size() + 1 >= kStatViewBytes) break;
      std::memcpy(s.view + v, m.data(), m.size());
      v += m.size();
      s.view[v++] = '\n';
    }
  }
  s.view[v] = '\0';
  s.view_bytes = static_cast<std::uint32_t>(v);
  s.published_unix_ns = unix_ns();
  ++s.publishes;

  s.seq.store(seq + 2, std::memory_order_release);
}

void StatWriter::release(int slot) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot < 0 || slots_ == nullptr) return;
  slots_[slot].in_use.store(0, std::memory_order_release);
  if (--held_ > 0) return;
  // The last publishing channel closed: the file goes, so that a process that ends
  // without running atexit handlers (_exit in a fork() child) leaves nothing behind
  // unless it had channels open. Nobody publishes into the mapping any more (only a
  // slot's owner does), so it can go too; the next acquire() creates the file again.
  ::unlink(path_.c_str());
  ::munmap(header_, kFileBytes);
  header_ = nullptr;
  slots_ = nullptr;
}

// --- reader ----------------------------------------------------------------------------------

namespace {

bool read_slot(const StatSlot& s, std::size_t index, StatChannel& out) {
  // The writer publishes at kStatPublishMs; a copy that raced with it is simply retried.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (attempt > 0) std::this_thread::yield();  // the writer is inside for microseconds
    const std::uint64_t before = s.seq.load(std::memory_order_acquire);
    if ((before & 1) != 0) continue;
    StatChannel c;
    c.slot = index;
    c.channel = get(s.channel, sizeof s.channel);
    c.member = get(s.member, sizeof s.member);
    c.group = get(s.group, sizeof s.group);
    c.published_unix_ns = s.published_unix_ns;
    c.publishes = s.publishes;
    const std::size_t n = std::min<std::size_t>(s.counter_count, kStatMaxCounters);
    c.counters.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t v =
          std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(s.counters[i].value)).load(std::memory_order_relaxed);
      c.counters.emplace_back(get(s.counters[i].name, kStatNameBytes), v);
    }
    const std::size_t g = std::min<std::size_t>(s.gauge_count, kStatMaxGauges);
    for (std::size_t i = 0; i < g; ++i) c.gauges.emplace_back(get(s.gauges[i].name, kStatNameBytes), s.gauges[i].value);
    c.plan.assign(s.plan, std::min<std::size_t>(s.plan_bytes, kStatPlanBytes - 1));
    const std::string view(s.view, std::min<std::size_t>(s.view_bytes, kStatViewBytes - 1));
    std::atomic_thread_fence(std::memory_order_acquire);
    if (s.seq.load(std::memory_order_relaxed) != before) continue;
    std::size_t start = 0;
    while (start < view.size()) {
      const std::size_t nl = view.find('\n', start);
      const std::size_t end = nl == std::string::npos ? view.size() : nl;
      c.members.push_back(view.substr(start, end - start));
      start = end + 1;
    }
    if (c.publishes == 0) return false;  // acquired, not yet published
    out = std::move(c);
    return true;
  }
  return false;
}

}  // namespace

bool read_stat_file(const std::string& path, StatProcess& out, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < sizeof(StatHeader)) {
    ::close(fd);
    error = "too small for a libTMC stat file";
    return false;
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* mem = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mem == MAP_FAILED) {
    error = std::strerror(errno);
    return false;
  }
  const auto* h = static_cast<const StatHeader*>(mem);
  bool ok = false;
  if (h->magic.load(std::memory_order_acquire) != kStatMagic) {
    error = "not a libTMC stat file (bad magic)";
  } else if (h->layout_version != kStatLayoutVersion) {
    error = "layout version " + std::to_string(h->layout_version) + ", this tool reads version " +
            std::to_string(kStatLayoutVersion);
  } else if (h->header_bytes != sizeof(StatHeader) || h->slot_bytes != sizeof(StatSlot) ||
             size < sizeof(StatHeader) + std::size_t{h->slot_count} * sizeof(StatSlot)) {
    error = "sizes in the header do not match the file";
  } else {
    ok = true;
    out = StatProcess{};
    out.path = path;
    out.pid = h->pid;
    out.start_time = h->start_time;
    out.created_unix_ns = h->created_unix_ns;
    out.command = get(h->command, sizeof h->command);
    const std::uint64_t now_start = process_start_time(h->pid);
    if (now_start == 0) {
      out.stale = true;
      out.stale_reason = "process " + std::to_string(h->pid) + " is gone";
    } else if (now_start != h->start_time) {
      out.stale = true;
      out.stale_reason = "pid " + std::to_string(h->pid) + " now belongs to another process";
    }
    const auto* slots = reinterpret_cast<const StatSlot*>(static_cast<const char*>(mem) + sizeof(StatHeader));
    for (std::size_t i = 0; i < h->slot_count; ++i) {
      if (slots[i].in_use.load(std::memory_order_acquire) == 0) continue;
      StatChannel c;
      if (read_slot(slots[i], i, c)) out.channels.push_back(std::move(c));
    }
  }
  ::munmap(mem, size);
  return ok;
}

std::vector<StatProcess> read_stat_dir(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<StatProcess> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  const std::string_view suffix = kStatFileSuffix;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) continue;
    const std::string path = dir + "/" + std::string(name);
    StatProcess p;
    std::string error;
    if (read_stat_file(path, p, error)) {
      out.push_back(std::move(p));
    } else {
      errors.push_back(path + ": " + error);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const StatProcess& a, const StatProcess& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace tmc::detail
