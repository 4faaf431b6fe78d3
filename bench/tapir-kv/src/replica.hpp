// An IR replica (spec §3) in front of a TAPIR store: the record of operations per opid,
// inconsistent and consensus operations, finalize and confirm, unlogged reads. Every
// handler is idempotent per opid: duplicates, reordering and a Finalize before its
// Propose are harmless. There is no view change: the view is always 0.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "net.hpp"
#include "store.hpp"

namespace tapir {

struct OpIdHash {
  std::size_t operator()(const OpId& o) const noexcept {
    return static_cast<std::size_t>(o.client * 0x9E3779B97F4A7C15ULL ^ o.req);
  }
};

struct ReplicaStats {
  std::array<std::uint64_t, kMsgTypes> received{};  ///< by MsgType
  std::array<std::uint64_t, kMsgTypes> sent{};
  std::uint64_t duplicates = 0;          ///< proposes of an opid already recorded
  std::uint64_t early_finalizes = 0;     ///< finalizes of an opid not yet proposed here
  std::uint64_t malformed = 0;
  std::array<std::uint64_t, 8> prepare_checks{};  ///< by PrepareCheck
};

class Replica final : public Endpoint {
 public:
  Replica(std::uint32_t index, ReplicaNet& net, StoreOptions store_opts = {})
      : index_(index), net_(net), store_(store_opts) {}

  void on_message(std::uint32_t from, Bytes msg, Nanos now) override;
  void on_timer(Nanos) override {}
  [[nodiscard]] Nanos next_deadline() const override { return kNever; }

  /// Handle one decoded message (the unit tests call this directly).
  void handle(std::uint32_t from, const IrMessage& m);

  Store& store() { return store_; }
  [[nodiscard]] const Store& store() const { return store_; }
  [[nodiscard]] const ReplicaStats& stats() const { return stats_; }
  [[nodiscard]] std::uint32_t index() const { return index_; }
  [[nodiscard]] std::size_t record_size() const { return record_.size(); }
  /// Whether opid is recorded FINALIZED here (the no-lost-writes check).
  [[nodiscard]] bool finalized(const OpId& opid) const;

 private:
  enum class State : std::uint8_t { tentative, finalized };
  enum class Kind : std::uint8_t { inconsistent, consensus };
  struct Entry {
    State state = State::tentative;
    Kind kind = Kind::inconsistent;
    Request op;    ///< kept until finalized
    Reply result;  ///< consensus: local result, then the decided one
    bool proposed = true;         ///< false: only an early Finalize has been seen
    bool finalize_early = false;  ///< inconsistent: its Finalize came before the Propose
  };

  void send(std::uint32_t client, const IrMessage& m);
  void execute_inconsistent(const Request& op);

  std::uint32_t index_;
  ReplicaNet& net_;
  Store store_;
  std::uint64_t view_ = 0;
  std::unordered_map<OpId, Entry, OpIdHash> record_;
  ReplicaStats stats_;
  IrMessage in_;
  IrMessage out_;
  std::vector<std::uint8_t> buf_;
};

}  // namespace tapir
