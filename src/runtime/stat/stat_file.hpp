// Live counters: a small shared-memory file per process that any other process can read
// (`tmc stat`), as Aeron's counters file.
//
// Where: $TMC_STAT_DIR, else /dev/shm/libtmc-<uid>/ (mode 0700); one file `<pid>.tmcstat`
// per process, created when the first publishing channel opens, removed when the last one
// closes and at exit.
//
// Layout (version kStatLayoutVersion, native byte order, fixed size):
//   StatHeader                 magic, layout version, sizes, pid, process start time
//   StatSlot[kStatMaxChannels] one per open channel; a closed channel's slot is reused
// Each slot has one writer: the loop thread of the runtime its channel runs on. It
// publishes the channel's counters, gauges, plan and view every kStatPublishMs from a
// libuv timer (so the send and receive paths do nothing for it), under the slot's seqlock:
// `seq` is odd while the slot is being written. A reader copies the slot and keeps the
// copy only if `seq` was even and unchanged around the copy; counter values are also
// 64-bit atomics (relaxed), so a torn read of one value cannot happen.
//
// Staleness: a process that crashed leaves its file behind. A file is stale when its pid
// is gone, or the pid now belongs to another process (the start time in /proc/<pid>/stat
// differs from the header's).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tmc::detail {

inline constexpr std::uint64_t kStatMagic = 0x3154415453434d54ULL;  // "TMCSTAT1", little-endian
inline constexpr std::uint32_t kStatLayoutVersion = 2;
inline constexpr std::size_t kStatMaxChannels = 32;
inline constexpr std::size_t kStatMaxCounters = 224;
inline constexpr std::size_t kStatMaxGauges = 64;  ///< the shell's, then the stages'
inline constexpr std::size_t kStatNameBytes = 56;     ///< counter and gauge names, NUL-padded
inline constexpr std::size_t kStatLabelBytes = 128;   ///< channel id, member name, group
inline constexpr std::size_t kStatPlanBytes = 8192;   ///< the plan text (cut at this size)
inline constexpr std::size_t kStatViewBytes = 4096;   ///< member names, one per line
inline constexpr std::uint64_t kStatPublishMs = 100;
inline constexpr const char* kStatFileSuffix = ".tmcstat";

struct StatHeader {
  std::atomic<std::uint64_t> magic;  ///< stored last when the file is created (release)
  std::uint32_t layout_version;
  std::uint32_t header_bytes;   ///< sizeof(StatHeader)
  std::uint32_t slot_bytes;     ///< sizeof(StatSlot)
  std::uint32_t slot_count;     ///< kStatMaxChannels
  std::uint64_t pid;
  std::uint64_t start_time;     ///< field 22 of /proc/<pid>/stat (clock ticks after boot)
  std::uint64_t created_unix_ns;
  char command[64];             ///< /proc/self/comm
  std::uint8_t reserved[144];
};
static_assert(sizeof(StatHeader) == 256);

struct StatCounter {
  char name[kStatNameBytes];
  std::uint64_t value;  ///< accessed through std::atomic_ref (relaxed)
};
struct StatGauge {
  char name[kStatNameBytes];
  double value;
};

struct StatSlot {
  std::atomic<std::uint64_t> seq;     ///< seqlock: odd while the writer is inside
  std::atomic<std::uint32_t> in_use;  ///< 1 while a channel owns the slot
  std::uint32_t counter_count;
  std::uint32_t gauge_count;
  std::uint32_t plan_bytes;
  std::uint32_t view_bytes;
  std::uint32_t reserved0;
  std::uint64_t published_unix_ns;  ///< wall clock of the latest publish
  std::uint64_t publishes;
  char channel[kStatLabelBytes];  ///< the manifest's channel id
  char member[kStatLabelBytes];   ///< this member's name
  char group[kStatLabelBytes];    ///< "239.1.2.3:port"
  StatGauge gauges[kStatMaxGauges];
  StatCounter counters[kStatMaxCounters];
  char plan[kStatPlanBytes];
  char view[kStatViewBytes];
};

/// One channel as published (a copy, owned by the reader).
struct StatChannel {
  std::size_t slot = 0;
  std::string channel;
  std::string member;
  std::string group;
  std::uint64_t published_unix_ns = 0;
  std::uint64_t publishes = 0;
  std::vector<std::pair<std::string, std::uint64_t>> counters;
  std::vector<std::pair<std::string, double>> gauges;
  std::string plan;
  std::vector<std::string> members;
};

/// One process's file as read.
struct StatProcess {
  std::string path;
  std::uint64_t pid = 0;
  std::uint64_t start_time = 0;
  std::uint64_t created_unix_ns = 0;
  std::string command;
  bool stale = false;        ///< the process is gone (see above)
  std::string stale_reason;  ///< why, when stale
  std::vector<StatChannel> channels;
};

/// What a channel hands the writer at each publish (the writer copies it into the slot).
struct StatUpdate {
  std::string_view channel;
  std::string_view member;
  std::string_view group;
  const std::vector<std::pair<std::string, std::uint64_t>>* counters = nullptr;
  std::vector<std::pair<std::string_view, double>> gauges;
  std::string_view plan;
  const std::vector<std::string>* members = nullptr;
};

/// $TMC_STAT_DIR, else /dev/shm/libtmc-<uid>.
std::string stat_dir();
/// Field 22 of /proc/<pid>/stat; 0 when the process does not exist.
std::uint64_t process_start_time(std::uint64_t pid) noexcept;

/// The process's file: created on the first acquire(), removed on the last release() and
/// at exit. acquire() and release() are thread-safe; publish() is for a slot's owner.
class StatWriter {
 public:
  static StatWriter& instance();
  /// A free slot for a new channel, or -1 (publishing unavailable or every slot taken).
  /// Creates the file on first use (and anew in a fork() child).
  int acquire();
  /// The slot's owner (its loop thread), at most one thread per slot at a time.
  void publish(int slot, const StatUpdate& u) noexcept;
  void release(int slot) noexcept;
  /// The file's path ("" before the first acquire()).
  std::string path();

 private:
  StatWriter() = default;
  bool create_locked();
  static void remove_at_exit() noexcept;

  std::mutex mu_;
  std::uint64_t pid_ = 0;  ///< getpid() when the file was created
  std::size_t held_ = 0;   ///< slots acquired and not released
  StatHeader* header_ = nullptr;
  StatSlot* slots_ = nullptr;
  std::string path_;
  bool failed_ = false;
};

/// Read one file: header checks, then every slot in use (seqlock copies). False, with
/// `error` set, when the file is not a libTMC stat file of this layout version.
bool read_stat_file(const std::string& path, StatProcess& out, std::string& error);
/// Every `*.tmcstat` file in `dir`, sorted by pid; files that fail to read are reported
/// in `errors` ("path: why").
std::vector<StatProcess> read_stat_dir(const std::string& dir, std::vector<std::string>& errors);

// --- rendering (tmc stat) ------------------------------------------------------------------
std::string stat_json(const std::vector<StatProcess>& procs);
/// The Prometheus text exposition format: counters as `tmc_<name>` (dots become
/// underscores), gauges likewise, each with HELP and TYPE lines and labels pid, channel
/// and member. Stale processes are left out.
std::string stat_prometheus(const std::vector<StatProcess>& procs);
/// A metric name from a counter name: [a-zA-Z0-9_] kept, anything else becomes '_'.
std::string prometheus_metric_name(std::string_view counter);
/// A label value escaped as the format asks (backslash, double quote, newline).
std::string prometheus_label_value(std::string_view v);

}  // namespace tmc::detail
