// Invariant checks over a run (spec §11): serializability of the committed-transaction
// log, unique commit timestamps, and no lost committed writes at the replicas.
#pragma once

#include <string>
#include <vector>

#include "client.hpp"
#include "replica.hpp"

namespace tapir {

struct CheckReport {
  std::vector<std::string> problems;  ///< empty = every invariant held
  std::size_t commits = 0;
  std::size_t reads_checked = 0;
  [[nodiscard]] bool ok() const { return problems.empty(); }
  [[nodiscard]] std::string summary(std::size_t max_lines = 10) const;
};

/// Serializability in timestamp order: for every read (k, v) of a committed txn T, v is
/// the preload (0,0) or the timestamp of a committed write of k, v < T.ts, and no
/// committed write of k has a timestamp in (v, T.ts). Commit timestamps are unique and no
/// txnid commits twice.
CheckReport check_serializable(const std::vector<CommitRecord>& commits);

/// No lost writes: every committed txn's COMMIT is finalized in at least `min_replicas`
/// records, and on at least `min_replicas` replicas the newest version of every written
/// key is the committed write with the largest timestamp.
CheckReport check_replicas(const std::vector<CommitRecord>& commits, const std::vector<const Replica*>& replicas,
                           std::size_t min_replicas);

}  // namespace tapir
