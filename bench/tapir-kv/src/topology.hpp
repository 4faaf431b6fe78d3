// Where every endpoint of a TAPIR-KV deployment lives: replica and client addresses, and
// the ports and multicast groups derived from one base port. Every process of a run is
// given the same topology, so each can name every channel's members itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tapir {

struct Topology {
  std::vector<std::string> replica_ips;  ///< n entries
  std::vector<std::string> client_ips;   ///< N entries
  int base_port = 31000;
  std::string interface;                 ///< multicast interface; empty = loopback
  std::string group_prefix = "239.77.0.";  ///< client j's request group: prefix + (j + 1)

  [[nodiscard]] std::uint32_t n() const { return static_cast<std::uint32_t>(replica_ips.size()); }
  [[nodiscard]] std::uint32_t clients() const { return static_cast<std::uint32_t>(client_ips.size()); }
  // Request channel of client j (client -> all replicas): the multicast port, or with
  // unicast fan-out the client's port (member 0) and replica r's (member r + 1).
  [[nodiscard]] int request_port(std::uint32_t j, std::uint32_t member = 0) const {
    return base_port + 10 * static_cast<int>(j) + static_cast<int>(member);
  }
  // Pair channel between client j and replica r (replies, unlogged GETs, sync-lite).
  [[nodiscard]] int pair_client_port(std::uint32_t j, std::uint32_t r) const {
    return base_port + 1000 + 10 * static_cast<int>(j) + static_cast<int>(r);
  }
  [[nodiscard]] int pair_replica_port(std::uint32_t j, std::uint32_t r) const {
    return base_port + 2000 + 10 * static_cast<int>(j) + static_cast<int>(r);
  }
  // TCP: replica r listens here.
  [[nodiscard]] int tcp_port(std::uint32_t r) const { return base_port + 3000 + static_cast<int>(r); }
  [[nodiscard]] std::string group(std::uint32_t j) const { return group_prefix + std::to_string(j + 1); }
};

}  // namespace tapir
