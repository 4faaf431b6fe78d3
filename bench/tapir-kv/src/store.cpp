#include "store.hpp"

#include <algorithm>

namespace tapir {

const char* prepare_check_name(PrepareCheck c) {
  switch (c) {
    case PrepareCheck::ok: return "ok";
    case PrepareCheck::already_prepared: return "already_prepared";
    case PrepareCheck::read_stale: return "read_stale";
    case PrepareCheck::read_pending_write: return "read_pending_write";
    case PrepareCheck::write_old: return "write_old";
    case PrepareCheck::write_read_later: return "write_read_later";
    case PrepareCheck::write_pending_write: return "write_pending_write";
    case PrepareCheck::write_pending_read: return "write_pending_read";
  }
  return "?";
}

Store::KeyState* Store::find(std::string_view key) {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second;
}
const Store::KeyState* Store::find(std::string_view key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second;
}
Store::KeyState& Store::at(std::string_view key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) it = keys_.emplace(std::string(key), KeyState{}).first;
  return it->second;
}

void Store::load(std::string_view key, std::string_view value) {
  KeyState& ks = at(key);
  ks.versions.clear();
  ks.versions.push_back(Version{Timestamp{}, std::string(value), Timestamp{}});
}

Reply Store::get(std::string_view key) const {
  const KeyState* ks = find(key);
  if (ks == nullptr || ks->versions.empty()) return Reply{Status::fail, {}, {}};
  return Reply{Status::ok, ks->versions.back().value, ks->versions.back().ts};
}

Reply Store::get_at(std::string_view key, Timestamp ts) const {
  const KeyState* ks = find(key);
  if (ks == nullptr) return Reply{Status::fail, {}, {}};
  // The newest version not newer than ts.
  for (auto it = ks->versions.rbegin(); it != ks->versions.rend(); ++it)
    if (it->ts <= ts) return Reply{Status::ok, it->value, it->ts};
  return Reply{Status::fail, {}, {}};
}

void Store::erase_pending(std::vector<Pending>& v, std::uint64_t txnid) {
  std::erase_if(v, [txnid](const Pending& p) { return p.txnid == txnid; });
}

void Store::unindex(std::uint64_t txnid, const Txn& txn) {
  for (const auto& r : txn.reads)
    if (KeyState* ks = find(r.key)) erase_pending(ks->prepared_reads, txnid);
  for (const auto& w : txn.writes)
    if (KeyState* ks = find(w.key)) erase_pending(ks->prepared_writes, txnid);
}

Reply Store::prepare(std::uint64_t txnid, const Txn& txn, Timestamp ts, PrepareCheck* check) {
  auto decide = [check](PrepareCheck c, Status s, Timestamp t = {}) {
    if (check != nullptr) *check = c;
    return Reply{s, {}, t};
  };
  // 0. Already prepared: at this ts it stands; at another, check again from scratch.
  if (auto it = prepared_.find(txnid); it != prepared_.end()) {
    if (it->second.ts == ts) return decide(PrepareCheck::already_prepared, Status::ok);
    unindex(txnid, it->second.txn);
    prepared_.erase(it);
  }
  // 1. Reads: the version read must still be the newest, and nobody may be about to write it.
  for (const auto& r : txn.reads) {
    const KeyState* ks = find(r.key);
    if (ks == nullptr) continue;
    const bool have = std::any_of(ks->versions.begin(), ks->versions.end(),
                                  [&](const Version& v) { return v.ts == r.version; });
    if (!have) continue;  // this replica missed that write: it cannot judge the read
    if (!opts_.skip_read_check && ks->versions.back().ts > r.version)
      return decide(PrepareCheck::read_stale, Status::fail);
    if (!ks->prepared_writes.empty()) return decide(PrepareCheck::read_pending_write, Status::abstain);
  }
  // 2. Writes: ts must come after every committed version, every read of the newest one,
  //    and every prepared write and read of the key.
  for (const auto& w : txn.writes) {
    const KeyState* ks = find(w.key);
    if (ks == nullptr) continue;
    if (!ks->versions.empty()) {
      const Version& newest = ks->versions.back();
      if (newest.ts > ts) return decide(PrepareCheck::write_old, Status::retry, newest.ts);
      if (newest.last_read > ts) return decide(PrepareCheck::write_read_later, Status::retry, newest.last_read);
    }
    for (const auto& p : ks->prepared_writes)
      if (p.ts > ts) return decide(PrepareCheck::write_pending_write, Status::retry, p.ts);
    for (const auto& p : ks->prepared_reads)
      if (p.ts > ts)
        return opts_.rules == PrepareRules::paper
                   ? decide(PrepareCheck::write_pending_read, Status::retry, p.ts)
                   : decide(PrepareCheck::write_pending_read, Status::abstain);
  }
  // 3. Prepared.
  for (const auto& r : txn.reads) at(r.key).prepared_reads.push_back(Pending{txnid, ts});
  for (const auto& w : txn.writes) at(w.key).prepared_writes.push_back(Pending{txnid, ts});
  prepared_[txnid] = Prepared{ts, txn};
  return decide(PrepareCheck::ok, Status::ok);
}

void Store::commit(std::uint64_t txnid, Timestamp ts, const Txn& carried) {
  auto it = prepared_.find(txnid);
  const Txn& txn = (carried.reads.empty() && carried.writes.empty() && it != prepared_.end()) ? it->second.txn : carried;
  for (const auto& r : txn.reads) {
    KeyState* ks = find(r.key);
    if (ks == nullptr) continue;
    for (auto& v : ks->versions)
      if (v.ts == r.version) v.last_read = std::max(v.last_read, ts);
  }
  for (const auto& w : txn.writes) {
    KeyState& ks = at(w.key);
    auto pos = std::lower_bound(ks.versions.begin(), ks.versions.end(), ts,
                                [](const Version& v, const Timestamp& t) { return v.ts < t; });
    if (pos != ks.versions.end() && pos->ts == ts) continue;  // applied already
    ks.versions.insert(pos, Version{ts, w.value, Timestamp{}});
  }
  if (it != prepared_.end()) {
    unindex(txnid, it->second.txn);
    prepared_.erase(it);
  }
}

void Store::abort(std::uint64_t txnid) {
  auto it = prepared_.find(txnid);
  if (it == prepared_.end()) return;
  unindex(txnid, it->second.txn);
  prepared_.erase(it);
}

bool Store::latest(std::string_view key, Timestamp& version, std::string& value) const {
  const KeyState* ks = find(key);
  if (ks == nullptr || ks->versions.empty()) return false;
  version = ks->versions.back().ts;
  value = ks->versions.back().value;
  return true;
}

}  // namespace tapir
