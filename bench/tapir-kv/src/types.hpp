// TAPIR-KV: identifiers, timestamps, transactions and the status codes of the TAPIR store.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace tapir {

/// Monotonic time in nanoseconds (the transports' clock; the simulator's virtual clock).
using Nanos = std::int64_t;
inline constexpr Nanos kNever = INT64_MAX;
inline constexpr Nanos kMillisecond = 1'000'000;

/// (time, clientid), ordered lexicographically. A key's version is the commit timestamp of
/// the write that produced it; preloaded keys have version (0, 0).
struct Timestamp {
  std::uint64_t time = 0;
  std::uint64_t client = 0;
  auto operator<=>(const Timestamp&) const = default;
  [[nodiscard]] bool zero() const { return time == 0 && client == 0; }
};

/// One IR operation's id: the client and its request counter.
struct OpId {
  std::uint64_t client = 0;
  std::uint64_t req = 0;
  auto operator<=>(const OpId&) const = default;
};

struct ReadEntry {
  std::string key;
  Timestamp version;
};
struct WriteEntry {
  std::string key;
  std::string value;
};

/// A transaction's read set (key, version read) and buffered write set.
struct Txn {
  std::vector<ReadEntry> reads;
  std::vector<WriteEntry> writes;
  void clear() {
    reads.clear();
    writes.clear();
  }
};

/// Reply status of the TAPIR store (the repo's numbering).
enum class Status : std::uint8_t { ok = 0, fail = 1, retry = 2, abstain = 3, timeout = 4 };
const char* status_name(Status s);

/// Which prepare rule applies when a write meets a prepared read with a larger timestamp:
/// the repository answers ABSTAIN, the paper RETRY.
enum class PrepareRules : std::uint8_t { repo, paper };

}  // namespace tapir
