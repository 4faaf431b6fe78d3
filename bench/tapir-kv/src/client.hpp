// A closed-loop TAPIR client (spec §5) on an IR client: one transaction in flight, L ops
// each (a PUT with probability put_fraction, else a GET), then PREPARE as an IR consensus
// operation (fast path on ceil(3f/2)+1 identical replies, slow path with decide and
// FinalizeConsensus), then COMMIT or ABORT as an IR inconsistent operation carrying the
// transaction. Finalizes run in the background; the next transaction begins once the
// previous COMMIT/ABORT has f+1 replies.
//
// Pure state machine: messages and timer calls in, messages out through ClientNet. The
// IR timers are parameters (IrTimers) and every report prints them.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "net.hpp"
#include "types.hpp"
#include "wire.hpp"

namespace tapir {

struct IrTimers {
  Nanos propose_resend = 500 * kMillisecond;   ///< resend Propose* until a quorum replied
  Nanos slow_path = 500 * kMillisecond;        ///< fast-path wait before deciding on f+1
  Nanos finalize_resend = 500 * kMillisecond;  ///< resend Finalize* until f+1 Confirms
  Nanos get_timeout = 250 * kMillisecond;      ///< unlogged GET, single shot
  /// Sync-lite: after a quorum, keep resending Propose/Finalize to replicas that have
  /// not confirmed, for this long (0 = off).
  Nanos sync_lite = 2000 * kMillisecond;
};

struct Workload {
  const std::vector<std::string>* keys = nullptr;  ///< uniform choice among these
  int ops_per_txn = 2;                             ///< L
  double put_fraction = 0.5;
  int max_prepare_attempts = 5;
};

enum class Outcome : std::uint8_t { committed, aborted_fail, aborted_retries };

/// One finished transaction (for the throughput windows and latency percentiles).
struct TxnRecord {
  Nanos end = 0;
  Nanos latency = 0;
  Outcome outcome = Outcome::committed;
};

/// A committed transaction as the checker sees it.
struct CommitRecord {
  std::uint64_t txnid = 0;
  Timestamp ts;
  Txn txn;
  OpId commit_opid;  ///< the COMMIT's IR opid (no-lost-writes check)
};

struct ClientStats {
  std::uint64_t started = 0;
  std::uint64_t committed = 0;
  std::uint64_t aborted_fail = 0;
  std::uint64_t aborted_retries = 0;
  std::uint64_t prepare_attempts = 0;
  std::uint64_t retries = 0;          ///< PREPARE decided RETRY/ABSTAIN and tried again
  std::uint64_t get_timeouts = 0;
  std::uint64_t get_fails = 0;
  std::uint64_t fast_path = 0;
  std::uint64_t slow_path = 0;
  std::uint64_t slow_path_timer = 0;  ///< of those, taken because the slow-path timer fired
  std::array<std::uint64_t, kMsgTypes> sent{};     ///< by MsgType, first sends
  std::array<std::uint64_t, kMsgTypes> resent{};   ///< by MsgType, timer resends
  std::uint64_t stale_replies = 0;    ///< replies for an op no longer in flight
  std::uint64_t malformed = 0;
  std::vector<Nanos> get_latency, prepare_latency, commit_latency;  ///< per op
};

class Client final : public Endpoint {
 public:
  struct Config {
    std::uint32_t index = 0;   ///< this client's index (transports address it by this)
    std::uint64_t clientid = 1;
    std::uint32_t n = 3;       ///< replicas
    IrTimers timers;
    Workload workload;
    std::uint64_t seed = 1;
    bool log_commits = false;  ///< keep CommitRecords for the checker
  };

  Client(Config cfg, ClientNet& net);

  /// Start the closed loop at `now`; stop() makes it finish the txn in flight and start no other.
  void start(Nanos now);
  void stop() { stopping_ = true; }
  [[nodiscard]] bool idle() const { return phase_ == Phase::idle; }
  /// Nothing in flight and every background finalize settled (quiescence).
  [[nodiscard]] bool quiescent() const;

  void on_message(std::uint32_t from, Bytes msg, Nanos now) override;
  void on_timer(Nanos now) override;
  [[nodiscard]] Nanos next_deadline() const override;

  [[nodiscard]] const ClientStats& stats() const { return stats_; }
  [[nodiscard]] const std::vector<TxnRecord>& txns() const { return txns_; }
  [[nodiscard]] const std::vector<CommitRecord>& commits() const { return commits_; }
  [[nodiscard]] const Config& config() const { return cfg_; }

 private:
  enum class Phase : std::uint8_t { idle, begin_wait, ops, get_wait, prepare, prepare_finalize };

  struct ReplySlot {
    bool have = false;
    std::uint64_t view = 0;
    bool finalized = false;
    Reply result;
  };
  /// An inconsistent op (COMMIT/ABORT) from Propose to the end of its Finalize.
  struct InconsistentOp {
    OpId opid;
    IrMessage propose;
    std::uint32_t replied = 0;    ///< bitmask of replicas that replied to the Propose
    std::uint32_t confirmed = 0;  ///< bitmask of Confirms of the Finalize
    bool finalizing = false;
    Nanos next_resend = kNever;
    Nanos give_up = kNever;       ///< sync-lite bound after the f+1 Confirms
  };
  /// A FinalizeConsensus in the background (after the fast path, or after the slow
  /// path's f+1 Confirms while sync-lite continues).
  struct ConsensusFinalize {
    OpId opid;
    Reply result;
    std::uint32_t confirmed = 0;
    Nanos next_resend = kNever;
    Nanos give_up = kNever;
  };

  [[nodiscard]] std::uint32_t quorum() const { return cfg_.n / 2 + 1; }  // f+1
  [[nodiscard]] std::uint32_t fast_quorum() const;                       // ceil(3f/2)+1
  [[nodiscard]] std::uint32_t all_mask() const { return (1U << cfg_.n) - 1; }

  void begin(Nanos now);
  void next_op(Nanos now);
  void send_get(const std::string& key, bool at_version, Timestamp version, Nanos now);
  void start_prepare(Nanos now);
  void on_consensus_reply(const IrMessage& m, Nanos now);
  void consider_prepare(Nanos now);
  void go_slow(const Reply& decided, Nanos now);
  void push_finalize(const OpId& opid, const Reply& result, Nanos now);
  [[nodiscard]] Reply decide_over(std::uint64_t view) const;
  void prepare_decided(const Reply& r, Nanos now);
  void finish_txn(Outcome o, Nanos now);
  void start_inconsistent(OpCode op, Nanos now);
  void on_inconsistent_reply(const IrMessage& m, Nanos now);
  void on_confirm(const IrMessage& m, Nanos now);
  void send_all(const IrMessage& m, bool resend);
  void send_one(std::uint32_t r, const IrMessage& m, bool resend);
  Timestamp make_ts(Nanos now, std::uint64_t at_least = 0) const;

  Config cfg_;
  ClientNet& net_;
  std::mt19937_64 rng_;
  bool stopping_ = false;
  Phase phase_ = Phase::idle;
  std::uint64_t next_req_ = 1;
  std::uint64_t next_txn_ = 1;

  // the transaction in flight
  std::uint64_t txnid_ = 0;
  Txn txn_;
  int op_index_ = 0;
  Nanos txn_begin_ = 0;
  Timestamp ts_;
  int attempts_ = 0;
  Nanos op_start_ = 0;
  // unlogged GET in flight
  OpId get_opid_;
  std::string get_key_;
  Nanos get_deadline_ = kNever;
  // PREPARE (consensus op) in flight
  IrMessage prepare_msg_;
  std::array<ReplySlot, 32> replies_{};
  std::uint32_t reply_count_ = 0;
  Nanos prepare_resend_ = kNever;
  Nanos slow_path_at_ = kNever;
  bool slow_timer_fired_ = false;
  Reply decided_;
  // background
  std::vector<InconsistentOp> inconsistent_;
  std::vector<ConsensusFinalize> finalizes_;
  std::uint64_t begin_waits_for_ = 0;  ///< req of the COMMIT/ABORT the next Begin waits for (0 = none)

  ClientStats stats_;
  std::vector<TxnRecord> txns_;
  std::vector<CommitRecord> commits_;
  IrMessage in_;
  IrMessage out_;
  std::vector<std::uint8_t> buf_;
};

}  // namespace tapir
