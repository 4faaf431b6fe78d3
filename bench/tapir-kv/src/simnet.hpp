// A deterministic in-memory network for the tests: replicas and clients in one thread on
// a virtual clock, i.i.d. loss, duplication and reordering per receiver, optionally only
// for some message types. Same seed, same run.
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <random>
#include <vector>

#include "client.hpp"
#include "replica.hpp"

namespace tapir {

struct SimOptions {
  double loss = 0;        ///< per receiver, per datagram
  double duplicate = 0;   ///< probability a datagram arrives twice
  double reorder = 0;     ///< probability it is delayed by up to 5 latencies
  Nanos latency = 50'000;  ///< one way
  Nanos jitter = 20'000;   ///< uniform extra delay
  std::uint32_t fault_types = ~0U;  ///< bit (1 << MsgType): faults apply to these types
  std::uint64_t seed = 1;
};

class SimNet {
 public:
  SimNet(SimOptions opts, std::uint32_t replicas, StoreOptions store_opts = {});

  /// Add a client (its index is its position); returns it.
  Client& add_client(Client::Config cfg);
  Replica& replica(std::uint32_t i) { return *replicas_[i]; }
  Client& client(std::uint32_t i) { return *clients_[i].client; }
  [[nodiscard]] std::size_t clients() const { return clients_.size(); }
  [[nodiscard]] std::uint32_t replica_count() const { return static_cast<std::uint32_t>(replicas_.size()); }
  [[nodiscard]] Nanos now() const { return now_; }

  /// Run until virtual time `until` (or until nothing is left to do).
  void run_until(Nanos until);
  /// Every client finishes its txn and the background finalizes settle; false if that
  /// takes longer than `limit` of virtual time.
  bool drain(Nanos limit);

  std::uint64_t datagrams_sent = 0;
  std::uint64_t datagrams_dropped = 0;

 private:
  struct Packet {
    Nanos at;
    std::uint64_t order;
    bool to_replica;
    std::uint32_t dest;
    std::uint32_t from;
    std::vector<std::uint8_t> bytes;
    bool operator>(const Packet& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  struct ClientPort final : ClientNet {
    SimNet* net;
    std::uint32_t index;
    void send_to_replicas(Bytes msg, MsgType type) override {
      for (std::uint32_t r = 0; r < net->replica_count(); ++r) net->transmit(true, r, index, msg, type);
    }
    void send_to_replica(std::uint32_t r, Bytes msg, MsgType type) override { net->transmit(true, r, index, msg, type); }
  };
  struct ReplicaPort final : ReplicaNet {
    SimNet* net;
    std::uint32_t index;
    void send_to_client(std::uint32_t c, Bytes msg, MsgType type) override { net->transmit(false, c, index, msg, type); }
  };
  struct ClientSlot {
    std::unique_ptr<ClientPort> port;
    std::unique_ptr<Client> client;
  };

  void transmit(bool to_replica, std::uint32_t dest, std::uint32_t from, Bytes msg, MsgType type);
  void enqueue(bool to_replica, std::uint32_t dest, std::uint32_t from, Bytes msg, Nanos extra);

  SimOptions opts_;
  std::mt19937_64 rng_;
  Nanos now_ = 1'000'000'000;  // 1 s: timestamps are never (0, 0)
  std::uint64_t order_ = 0;
  std::priority_queue<Packet, std::vector<Packet>, std::greater<>> queue_;
  std::vector<std::unique_ptr<ReplicaPort>> replica_ports_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<ClientSlot> clients_;
};

}  // namespace tapir
