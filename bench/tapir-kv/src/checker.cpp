#include "checker.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace tapir {

namespace {
std::string ts_str(Timestamp t) {
  std::ostringstream o;
  o << "(" << t.time << "," << t.client << ")";
  return o.str();
}
}  // namespace

std::string CheckReport::summary(std::size_t max_lines) const {
  std::ostringstream o;
  o << commits << " commits, " << reads_checked << " reads checked, " << problems.size() << " problems";
  for (std::size_t i = 0; i < problems.size() && i < max_lines; ++i) o << "\n  " << problems[i];
  return o.str();
}

CheckReport check_serializable(const std::vector<CommitRecord>& commits) {
  CheckReport rep;
  rep.commits = commits.size();
  std::unordered_map<std::string, std::vector<Timestamp>> writes;  // key -> committed write ts, sorted
  std::set<Timestamp> stamps;
  std::set<std::uint64_t> txnids;
  for (const auto& c : commits) {
    if (!stamps.insert(c.ts).second) rep.problems.push_back("commit timestamp " + ts_str(c.ts) + " used twice");
    if (!txnids.insert(c.txnid).second) rep.problems.push_back("txn " + std::to_string(c.txnid) + " committed twice");
    for (const auto& w : c.txn.writes) writes[w.key].push_back(c.ts);
  }
  for (auto& [k, v] : writes) std::sort(v.begin(), v.end());
  static const std::vector<Timestamp> kNone;
  for (const auto& c : commits) {
    for (const auto& r : c.txn.reads) {
      ++rep.reads_checked;
      auto it = writes.find(r.key);
      const auto& ws = it == writes.end() ? kNone : it->second;
      if (!r.version.zero() && !std::binary_search(ws.begin(), ws.end(), r.version))
        rep.problems.push_back("txn " + std::to_string(c.txnid) + " read " + r.key.substr(0, 8) + "@" + ts_str(r.version) +
                               ", which no committed txn wrote");
      if (!(r.version < c.ts))
        rep.problems.push_back("txn " + std::to_string(c.txnid) + " read " + r.key.substr(0, 8) + "@" + ts_str(r.version) +
                               " not older than its commit ts " + ts_str(c.ts));
      auto later = std::upper_bound(ws.begin(), ws.end(), r.version);
      if (later != ws.end() && *later < c.ts)
        rep.problems.push_back("txn " + std::to_string(c.txnid) + " at " + ts_str(c.ts) + " read " + r.key.substr(0, 8) + "@" +
                               ts_str(r.version) + " but a committed write at " + ts_str(*later) + " lies between");
    }
  }
  return rep;
}

CheckReport check_replicas(const std::vector<CommitRecord>& commits, const std::vector<const Replica*>& replicas,
                           std::size_t min_replicas) {
  CheckReport rep;
  rep.commits = commits.size();
  std::map<std::string, Timestamp> newest;  // key -> largest committed write ts
  for (const auto& c : commits) {
    std::size_t have = 0;
    for (const Replica* r : replicas) have += r->finalized(c.commit_opid) ? 1 : 0;
    if (have < min_replicas)
      rep.problems.push_back("COMMIT of txn " + std::to_string(c.txnid) + " finalized on " + std::to_string(have) +
                             " replicas, fewer than " + std::to_string(min_replicas));
    for (const auto& w : c.txn.writes) {
      auto [it, fresh] = newest.try_emplace(w.key, c.ts);
      if (!fresh) it->second = std::max(it->second, c.ts);
    }
  }
  std::string value;
  for (const auto& [key, ts] : newest) {
    std::size_t have = 0;
    for (const Replica* r : replicas) {
      Timestamp v;
      if (r->store().latest(key, v, value) && v == ts) ++have;
    }
    if (have < min_replicas)
      rep.problems.push_back("key " + key.substr(0, 8) + ": newest committed write " + ts_str(ts) + " is the newest version on " +
                             std::to_string(have) + " replicas, fewer than " + std::to_string(min_replicas));
  }
  return rep;
}

}  // namespace tapir
