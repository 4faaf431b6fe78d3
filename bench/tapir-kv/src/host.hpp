// A host runs protocol endpoints (replicas and clients) over one transport: the libTMC
// channels (TmcHost), TCP streams on libuv (TcpHost) or plain UDP sockets (UdpHost). A
// process runs one endpoint; the in-process mode runs them all in one host.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client.hpp"
#include "replica.hpp"
#include "topology.hpp"

namespace tapir {

inline Nanos mono_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Transport counters of one host (summed over its channels or streams).
struct TransportStats {
  std::uint64_t datagrams_sent = 0;     ///< UDP datagrams handed to the kernel (TCP: frames written)
  std::uint64_t datagrams_received = 0;
  std::uint64_t injected_drops = 0;     ///< the faults stage's (in-process loss)
  std::uint64_t retransmits = 0;        ///< the channel's reliability repairs
  std::uint64_t acks_sent = 0;          ///< the channel's reliability acks
  std::uint64_t timeouts = 0;           ///< the channel's retransmission timeouts
  std::uint64_t nacks_sent = 0;         ///< the channel's NACKs (gaps seen)
  std::uint64_t duplicates = 0;         ///< reliable datagrams received again (repairs of what had arrived)
  std::uint64_t heartbeats_sent = 0;    ///< the channel's membership heartbeats
  std::uint64_t replies_acked = 0;      ///< requests acknowledged by their replies (Channel::acknowledge)
  std::uint64_t send_errors = 0;
};

class Host {
 public:
  virtual ~Host() = default;
  virtual Replica& add_replica(std::uint32_t index, StoreOptions opts) = 0;
  virtual Client& add_client(Client::Config cfg) = 0;
  /// Bring every endpoint up (open, connect, wait for members), up to `timeout`.
  virtual bool connect(Nanos timeout) = 0;
  /// Run the clients for `seconds`, then stop them and wait (bounded) until idle.
  virtual void run_clients(double seconds) = 0;
  /// Serve (replicas) until SIGINT/SIGTERM.
  virtual void serve_until_signal() = 0;
  /// The compiled plans in use (empty for TCP).
  [[nodiscard]] virtual std::string plans() const = 0;
  [[nodiscard]] virtual TransportStats stats() const = 0;
  /// Snapshot consistent with the protocol thread (call after run_clients/serve return).
  virtual std::vector<Client*> clients() = 0;
  virtual std::vector<Replica*> replicas() = 0;
};

/// The endpoints a host owns, as the plain pointers clients()/replicas() hand out.
template <class T>
[[nodiscard]] std::vector<T*> endpoints(const std::vector<std::unique_ptr<T>>& owned) {
  std::vector<T*> v;
  v.reserve(owned.size());
  for (const auto& e : owned) v.push_back(e.get());
  return v;
}

struct HostOptions {
  Topology topo;
  std::string manifest_path;  ///< the variant's manifest (libTMC hosts)
  double inject_loss = 0;     ///< in-process: the faults stage's loss on every channel
  std::uint64_t seed = 1;
};

std::unique_ptr<Host> make_tmc_host(const HostOptions& o);
std::unique_ptr<Host> make_tcp_host(const HostOptions& o);
std::unique_ptr<Host> make_udp_host(const HostOptions& o);

}  // namespace tapir
