// The TAPIR store of one replica (spec §4): versioned values, OCC prepare checks, and
// commit/abort that carry the transaction, so a replica that missed the PREPARE still
// applies the writes.
//
// Pure state, no I/O, no clock: the IR replica calls it in the order its record decides.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "types.hpp"
#include "wire.hpp"

namespace tapir {

struct StoreOptions {
  PrepareRules rules = PrepareRules::repo;
  /// A deliberately wrong store, for showing that the checker catches one: the read check
  /// of PREPARE (a newer committed version exists -> FAIL) is switched off.
  bool skip_read_check = false;
};

/// Which PREPARE check decided (for the unit tests and the counters).
enum class PrepareCheck : std::uint8_t {
  ok,
  already_prepared,    ///< step 0: prepared at the same timestamp
  read_stale,          ///< FAIL: a newer committed version of a read key exists
  read_pending_write,  ///< ABSTAIN: a prepared txn writes a read key
  write_old,           ///< RETRY: latest committed version is newer than ts
  write_read_later,    ///< RETRY: the latest version was read by a txn committed after ts
  write_pending_write, ///< RETRY: a prepared write to the key has a larger ts
  write_pending_read,  ///< ABSTAIN (repo) / RETRY (paper): a prepared read of the key has a larger ts
};
const char* prepare_check_name(PrepareCheck c);

class Store {
 public:
  explicit Store(StoreOptions opts = {}) : opts_(opts) {}

  /// Preload `key` with `value` at version (0, 0).
  void load(std::string_view key, std::string_view value);

  /// GET: the newest version (ts not given) or the version valid at `ts`; FAIL if absent.
  [[nodiscard]] Reply get(std::string_view key) const;
  [[nodiscard]] Reply get_at(std::string_view key, Timestamp ts) const;

  /// PREPARE(txnid, txn, ts); `check` (optional) says which rule decided.
  Reply prepare(std::uint64_t txnid, const Txn& txn, Timestamp ts, PrepareCheck* check = nullptr);
  /// COMMIT: apply `txn` (from the message; when it is empty the prepared copy is used).
  void commit(std::uint64_t txnid, Timestamp ts, const Txn& txn);
  /// ABORT: forget the prepared entry.
  void abort(std::uint64_t txnid);

  [[nodiscard]] std::size_t prepared_count() const { return prepared_.size(); }
  /// The newest committed (version, value) of `key`; false if absent.
  bool latest(std::string_view key, Timestamp& version, std::string& value) const;
  /// Calls f(key, version, value) with each key's newest version.
  template <class F>
  void for_each_latest(F&& f) const {
    for (const auto& [k, ks] : keys_)
      if (!ks.versions.empty()) f(k, ks.versions.back().ts, ks.versions.back().value);
  }

 private:
  struct Version {
    Timestamp ts;
    std::string value;
    Timestamp last_read;  ///< largest commit ts of a txn that read this version
  };
  struct Pending {
    std::uint64_t txnid;
    Timestamp ts;
  };
  struct KeyState {
    std::vector<Version> versions;  ///< ascending by ts
    std::vector<Pending> prepared_writes;
    std::vector<Pending> prepared_reads;
  };
  struct Prepared {
    Timestamp ts;
    Txn txn;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using KeyMap = std::unordered_map<std::string, KeyState, Hash, std::equal_to<>>;

  KeyState* find(std::string_view key);
  const KeyState* find(std::string_view key) const;
  KeyState& at(std::string_view key);
  void unindex(std::uint64_t txnid, const Txn& txn);
  static void erase_pending(std::vector<Pending>& v, std::uint64_t txnid);

  StoreOptions opts_;
  KeyMap keys_;
  std::unordered_map<std::uint64_t, Prepared> prepared_;
};

}  // namespace tapir
