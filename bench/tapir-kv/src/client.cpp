#include "client.hpp"

#include <algorithm>
#include <bit>

namespace tapir {

Client::Client(Config cfg, ClientNet& net) : cfg_(std::move(cfg)), net_(net), rng_(cfg_.seed) {
  stats_.get_latency.reserve(1 << 16);
  stats_.prepare_latency.reserve(1 << 16);
  stats_.commit_latency.reserve(1 << 16);
  txns_.reserve(1 << 16);
}

std::uint32_t Client::fast_quorum() const {
  const std::uint32_t f = (cfg_.n - 1) / 2;
  return (3 * f + 1) / 2 + 1;  // ceil(3f/2) + 1
}

Timestamp Client::make_ts(Nanos now, std::uint64_t at_least) const {
  return Timestamp{std::max(static_cast<std::uint64_t>(now), at_least), cfg_.clientid};
}

bool Client::quiescent() const { return phase_ == Phase::idle && inconsistent_.empty() && finalizes_.empty(); }

void Client::send_all(const IrMessage& m, bool resend) {
  encode(m, buf_);
  auto& counter = resend ? stats_.resent : stats_.sent;
  ++counter[static_cast<std::size_t>(m.type)];
  net_.send_to_replicas(buf_, m.type);
}

void Client::send_one(std::uint32_t r, const IrMessage& m, bool resend) {
  encode(m, buf_);
  auto& counter = resend ? stats_.resent : stats_.sent;
  ++counter[static_cast<std::size_t>(m.type)];
  net_.send_to_replica(r, buf_, m.type);
}

// --- the closed loop --------------------------------------------------------------------

void Client::start(Nanos now) {
  stopping_ = false;
  txn_begin_ = now;
  phase_ = Phase::begin_wait;
  if (begin_waits_for_ == 0) begin(now);
}

void Client::begin(Nanos now) {
  ++stats_.started;
  phase_ = Phase::ops;
  txnid_ = (static_cast<std::uint64_t>(cfg_.index + 1) << 40) | next_txn_++;
  txn_.clear();
  op_index_ = 0;
  attempts_ = 0;
  ts_ = Timestamp{};
  next_op(now);
}

void Client::next_op(Nanos now) {
  const auto& keys = *cfg_.workload.keys;
  std::uniform_int_distribution<std::size_t> pick(0, keys.size() - 1);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  while (op_index_ < cfg_.workload.ops_per_txn) {
    ++op_index_;
    const std::string& key = keys[pick(rng_)];
    if (coin(rng_) < cfg_.workload.put_fraction) {
      auto w = std::find_if(txn_.writes.begin(), txn_.writes.end(), [&](const WriteEntry& e) { return e.key == key; });
      if (w == txn_.writes.end()) txn_.writes.push_back(WriteEntry{key, key});
      else w->value = key;
      continue;
    }
    // GET: own write first, then the version already read, else the newest.
    if (std::any_of(txn_.writes.begin(), txn_.writes.end(), [&](const WriteEntry& e) { return e.key == key; })) continue;
    auto r = std::find_if(txn_.reads.begin(), txn_.reads.end(), [&](const ReadEntry& e) { return e.key == key; });
    send_get(key, r != txn_.reads.end(), r != txn_.reads.end() ? r->version : Timestamp{}, now);
    return;
  }
  attempts_ = 0;
  ts_ = make_ts(now);
  start_prepare(now);
}

void Client::send_get(const std::string& key, bool at_version, Timestamp version, Nanos now) {
  phase_ = Phase::get_wait;
  get_key_ = key;
  get_opid_ = OpId{cfg_.clientid, next_req_++};
  out_.type = MsgType::unlogged;
  out_.opid = get_opid_;
  out_.request.op = OpCode::get;
  out_.request.txnid = txnid_;
  out_.request.key = key;
  out_.request.has_ts = at_version;
  out_.request.ts = version;
  out_.request.txn.clear();
  op_start_ = now;
  get_deadline_ = now + cfg_.timers.get_timeout;
  send_one(static_cast<std::uint32_t>(cfg_.clientid % cfg_.n), out_, false);
}

// --- PREPARE: the consensus operation ------------------------------------------------

void Client::start_prepare(Nanos now) {
  ++attempts_;
  ++stats_.prepare_attempts;
  phase_ = Phase::prepare;
  prepare_msg_.type = MsgType::propose_consensus;
  prepare_msg_.opid = OpId{cfg_.clientid, next_req_++};
  prepare_msg_.request.op = OpCode::prepare;
  prepare_msg_.request.txnid = txnid_;
  prepare_msg_.request.key.clear();
  prepare_msg_.request.has_ts = true;
  prepare_msg_.request.ts = ts_;
  prepare_msg_.request.txn = txn_;
  for (std::uint32_t r = 0; r < cfg_.n; ++r) replies_[r].have = false;
  reply_count_ = 0;
  slow_timer_fired_ = false;
  op_start_ = now;
  prepare_resend_ = now + cfg_.timers.propose_resend;
  slow_path_at_ = now + cfg_.timers.slow_path;
  send_all(prepare_msg_, false);
}

void Client::on_consensus_reply(const IrMessage& m, Nanos now) {
  if (phase_ != Phase::prepare || m.opid != prepare_msg_.opid) {
    ++stats_.stale_replies;
    return;
  }
  ReplySlot& slot = replies_[m.replica];
  if (slot.have) {
    ++stats_.stale_replies;  // a duplicate reply counts once
    return;
  }
  slot.have = true;
  slot.view = m.view;
  slot.finalized = m.finalized;
  slot.result = m.result;
  ++reply_count_;
  consider_prepare(now);
}

Reply Client::decide_over(std::uint64_t view) const {
  // Over the same-view results: any FAIL -> FAIL; f+1 OK -> OK; else RETRY at the largest
  // proposed timestamp (ABSTAIN counts for nothing).
  std::uint32_t ok = 0;
  bool fail = false, retry = false;
  Timestamp proposed;
  for (std::uint32_t r = 0; r < cfg_.n; ++r) {
    const ReplySlot& s = replies_[r];
    if (!s.have || s.view != view) continue;
    if (s.result.status == Status::fail) fail = true;
    if (s.result.status == Status::ok) ++ok;
    if (s.result.status == Status::retry) {
      retry = true;
      proposed = std::max(proposed, s.result.ts);
    }
  }
  if (fail) return Reply{Status::fail, {}, {}};
  if (ok >= quorum()) return Reply{Status::ok, {}, {}};
  if (retry) return Reply{Status::retry, {}, proposed};
  return Reply{Status::abstain, {}, {}};
}

void Client::consider_prepare(Nanos now) {
  // A replica that has it finalized already: adopt its result (slow path).
  for (std::uint32_t r = 0; r < cfg_.n; ++r)
    if (replies_[r].have && replies_[r].finalized) {
      go_slow(replies_[r].result, now);
      return;
    }
  // The view with the most replies, and whether its results agree.
  std::uint64_t view = 0;
  std::uint32_t in_view = 0;
  for (std::uint32_t r = 0; r < cfg_.n; ++r) {
    if (!replies_[r].have) continue;
    std::uint32_t c = 0;
    for (std::uint32_t q = 0; q < cfg_.n; ++q) c += replies_[q].have && replies_[q].view == replies_[r].view ? 1 : 0;
    if (c > in_view) {
      in_view = c;
      view = replies_[r].view;
    }
  }
  bool mismatch = false;
  for (std::uint32_t r = 0; r < cfg_.n; ++r) {
    if (!replies_[r].have || replies_[r].view != view) continue;
    std::uint32_t same = 0;
    for (std::uint32_t q = 0; q < cfg_.n; ++q)
      same += replies_[q].have && replies_[q].view == view && replies_[q].result == replies_[r].result ? 1 : 0;
    if (same >= fast_quorum()) {
      ++stats_.fast_path;
      push_finalize(prepare_msg_.opid, replies_[r].result, now);
      prepare_decided(replies_[r].result, now);
      return;
    }
    if (same < in_view) mismatch = true;
  }
  if (in_view >= quorum() && (mismatch || slow_timer_fired_ || reply_count_ == cfg_.n)) {
    if (slow_timer_fired_ && !mismatch) ++stats_.slow_path_timer;
    go_slow(decide_over(view), now);
  }
}

void Client::go_slow(const Reply& decided, Nanos now) {
  ++stats_.slow_path;
  decided_ = decided;
  phase_ = Phase::prepare_finalize;
  push_finalize(prepare_msg_.opid, decided, now);
}

void Client::push_finalize(const OpId& opid, const Reply& result, Nanos now) {
  ConsensusFinalize f;
  f.opid = opid;
  f.result = result;
  f.next_resend = now + cfg_.timers.finalize_resend;
  finalizes_.push_back(std::move(f));
  out_.type = MsgType::finalize_consensus;
  out_.opid = opid;
  out_.result = result;
  send_all(out_, false);
}

void Client::prepare_decided(const Reply& r, Nanos now) {
  stats_.prepare_latency.push_back(now - op_start_);
  switch (r.status) {
    case Status::ok:
      start_inconsistent(OpCode::commit, now);
      if (cfg_.log_commits) commits_.push_back(CommitRecord{txnid_, ts_, txn_, inconsistent_.back().opid});
      finish_txn(Outcome::committed, now);
      return;
    case Status::fail:
      start_inconsistent(OpCode::abort, now);
      finish_txn(Outcome::aborted_fail, now);
      return;
    case Status::retry:
    case Status::abstain:
    case Status::timeout:
      if (attempts_ < cfg_.workload.max_prepare_attempts) {
        ++stats_.retries;
        const std::uint64_t floor = r.status == Status::retry ? r.ts.time + 1 : 0;
        ts_ = make_ts(now, std::max(floor, ts_.time + 1));
        start_prepare(now);
        return;
      }
      start_inconsistent(OpCode::abort, now);
      finish_txn(Outcome::aborted_retries, now);
      return;
  }
}

void Client::finish_txn(Outcome o, Nanos now) {
  txns_.push_back(TxnRecord{now, now - txn_begin_, o});
  switch (o) {
    case Outcome::committed: ++stats_.committed; break;
    case Outcome::aborted_fail: ++stats_.aborted_fail; break;
    case Outcome::aborted_retries: ++stats_.aborted_retries; break;
  }
  if (stopping_) {
    phase_ = Phase::idle;
    return;
  }
  txn_begin_ = now;
  phase_ = Phase::begin_wait;  // until the COMMIT/ABORT just sent has f+1 replies
}

// --- COMMIT / ABORT: the inconsistent operation -----------------------------------------

void Client::start_inconsistent(OpCode op, Nanos now) {
  InconsistentOp e;
  e.opid = OpId{cfg_.clientid, next_req_++};
  e.propose.type = MsgType::propose_inconsistent;
  e.propose.opid = e.opid;
  e.propose.request.op = op;
  e.propose.request.txnid = txnid_;
  e.propose.request.has_ts = op == OpCode::commit;
  e.propose.request.ts = ts_;
  e.propose.request.txn = txn_;
  e.next_resend = now + cfg_.timers.propose_resend;
  begin_waits_for_ = e.opid.req;
  inconsistent_.push_back(std::move(e));
  op_start_ = now;
  send_all(inconsistent_.back().propose, false);
}

void Client::on_inconsistent_reply(const IrMessage& m, Nanos now) {
  auto it = std::find_if(inconsistent_.begin(), inconsistent_.end(), [&](const InconsistentOp& e) { return e.opid == m.opid; });
  if (it == inconsistent_.end()) {
    ++stats_.stale_replies;
    return;
  }
  const std::uint32_t bit = 1U << m.replica;
  if ((it->replied & bit) != 0) {
    ++stats_.stale_replies;
    return;
  }
  it->replied |= bit;
  if (it->finalizing || static_cast<std::uint32_t>(std::popcount(it->replied)) < quorum()) return;
  it->finalizing = true;
  it->next_resend = now + cfg_.timers.finalize_resend;
  out_.type = MsgType::finalize_inconsistent;
  out_.opid = it->opid;
  const std::uint64_t req = it->opid.req;
  send_all(out_, false);
  stats_.commit_latency.push_back(now - op_start_);
  if (begin_waits_for_ == req) {
    begin_waits_for_ = 0;
    if (phase_ == Phase::begin_wait) begin(now);
  }
}

void Client::on_confirm(const IrMessage& m, Nanos now) {
  const std::uint32_t bit = 1U << m.replica;
  for (auto it = inconsistent_.begin(); it != inconsistent_.end(); ++it) {
    if (it->opid != m.opid) continue;
    if (!it->finalizing) return;  // a Confirm before our Finalize: impossible unless duplicated
    it->confirmed |= bit;
    if (it->confirmed == all_mask() ||
        (cfg_.timers.sync_lite == 0 && static_cast<std::uint32_t>(std::popcount(it->confirmed)) >= quorum())) {
      inconsistent_.erase(it);
    } else if (it->give_up == kNever && static_cast<std::uint32_t>(std::popcount(it->confirmed)) >= quorum()) {
      it->give_up = now + cfg_.timers.sync_lite;
    }
    return;
  }
  for (auto it = finalizes_.begin(); it != finalizes_.end(); ++it) {
    if (it->opid != m.opid) continue;
    it->confirmed |= bit;
    const bool settled = static_cast<std::uint32_t>(std::popcount(it->confirmed)) >= quorum();
    const bool mine = phase_ == Phase::prepare_finalize && it->opid == prepare_msg_.opid;
    if (it->confirmed == all_mask() || (cfg_.timers.sync_lite == 0 && settled)) finalizes_.erase(it);
    else if (settled && it->give_up == kNever) it->give_up = now + cfg_.timers.sync_lite;
    if (mine && settled) prepare_decided(decided_, now);
    return;
  }
  ++stats_.stale_replies;
}

// --- input and timers ------------------------------------------------------------------

void Client::on_message(std::uint32_t, Bytes msg, Nanos now) {
  if (!decode(msg, in_) || in_.replica >= cfg_.n) {
    ++stats_.malformed;
    return;
  }
  switch (in_.type) {
    case MsgType::reply_consensus: on_consensus_reply(in_, now); return;
    case MsgType::reply_inconsistent: on_inconsistent_reply(in_, now); return;
    case MsgType::confirm: on_confirm(in_, now); return;
    case MsgType::unlogged_reply:
      if (phase_ != Phase::get_wait || in_.opid != get_opid_) {
        ++stats_.stale_replies;
        return;
      }
      stats_.get_latency.push_back(now - op_start_);
      get_deadline_ = kNever;
      if (in_.result.status == Status::ok) {
        if (std::none_of(txn_.reads.begin(), txn_.reads.end(), [&](const ReadEntry& e) { return e.key == get_key_; }))
          txn_.reads.push_back(ReadEntry{get_key_, in_.result.ts});
      } else {
        ++stats_.get_fails;
      }
      phase_ = Phase::ops;
      next_op(now);
      return;
    default: ++stats_.malformed; return;
  }
}

void Client::on_timer(Nanos now) {
  if (phase_ == Phase::get_wait && now >= get_deadline_) {
    // Not retried (as the original): the key does not enter the read set.
    ++stats_.get_timeouts;
    get_deadline_ = kNever;
    phase_ = Phase::ops;
    next_op(now);
  }
  if (phase_ == Phase::prepare && now >= slow_path_at_) {
    slow_path_at_ = kNever;
    slow_timer_fired_ = true;
    consider_prepare(now);
  }
  if (phase_ == Phase::prepare && now >= prepare_resend_) {
    prepare_resend_ = now + cfg_.timers.propose_resend;
    send_all(prepare_msg_, true);
  }
  for (std::size_t i = 0; i < inconsistent_.size();) {
    InconsistentOp& e = inconsistent_[i];
    if (now < e.next_resend) {
      ++i;
      continue;
    }
    if (now >= e.give_up) {
      inconsistent_.erase(inconsistent_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if (!e.finalizing) {
      e.next_resend = now + cfg_.timers.propose_resend;
      send_all(e.propose, true);
    } else {
      e.next_resend = now + cfg_.timers.finalize_resend;
      out_.type = MsgType::finalize_inconsistent;
      out_.opid = e.opid;
      if (static_cast<std::uint32_t>(std::popcount(e.confirmed)) < quorum()) {
        send_all(out_, true);
      } else {  // sync-lite: the laggards get the Propose again, then the Finalize
        for (std::uint32_t r = 0; r < cfg_.n; ++r) {
          if ((e.confirmed & (1U << r)) != 0) continue;
          send_one(r, e.propose, true);
          send_one(r, out_, true);
        }
      }
    }
    ++i;
  }
  for (std::size_t i = 0; i < finalizes_.size();) {
    ConsensusFinalize& f = finalizes_[i];
    if (now < f.next_resend) {
      ++i;
      continue;
    }
    if (now >= f.give_up) {
      finalizes_.erase(finalizes_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    f.next_resend = now + cfg_.timers.finalize_resend;
    out_.type = MsgType::finalize_consensus;
    out_.opid = f.opid;
    out_.result = f.result;
    if (static_cast<std::uint32_t>(std::popcount(f.confirmed)) < quorum()) {
      send_all(out_, true);
    } else {
      for (std::uint32_t r = 0; r < cfg_.n; ++r)
        if ((f.confirmed & (1U << r)) == 0) send_one(r, out_, true);
    }
    ++i;
  }
}

Nanos Client::next_deadline() const {
  Nanos d = kNever;
  if (phase_ == Phase::get_wait) d = std::min(d, get_deadline_);
  if (phase_ == Phase::prepare) d = std::min({d, slow_path_at_, prepare_resend_});
  for (const auto& e : inconsistent_) d = std::min(d, e.next_resend);
  for (const auto& f : finalizes_) d = std::min(d, f.next_resend);
  return d;
}

}  // namespace tapir
