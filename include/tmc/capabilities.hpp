// Capabilities: what the host NIC and the network can do, declared by the operator in a
// YAML file (docs/capabilities.md). The compiler reads them to place stages on offloads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tmc/diagnostics.hpp"

namespace tmc {

struct NicCapabilities {
  std::string name;                 ///< interface name; empty = loopback
  bool checksum_tx = false;         ///< the NIC computes UDP checksums on transmit
  bool checksum_rx = false;         ///< the NIC verifies UDP checksums on receive
  bool udp_gso = true;              ///< UDP generic segmentation offload (UDP_SEGMENT); the kernel
                                    ///< segments in software when the NIC cannot, so on by default
  bool udp_gro = false;             ///< UDP generic receive offload (UDP_GRO)
  bool timestamping = false;        ///< hardware rx/tx timestamps
  std::uint32_t mtu_bytes = 1500;
  bool crypto_offload = false;      ///< the NIC (or an IPsec/MACsec link) authenticates and encrypts the
                                    ///< group's datagrams, so `security` needs no software stage
  bool operator==(const NicCapabilities&) const = default;
};

struct NetworkCapabilities {
  bool multicast = true;   ///< IP multicast is routed between members
  std::string sequencer;   ///< "ip:port" of an in-network sequencer (OUM), empty = none
  bool operator==(const NetworkCapabilities&) const = default;
};

struct Capabilities {
  NicCapabilities nic;
  NetworkCapabilities network;
  std::string source;  ///< file it came from, or "(defaults)"

  /// What a host with no capability file gets: no NIC offloads but UDP GSO (which Linux
  /// does in software when the NIC cannot), MTU 1500, multicast on.
  static Capabilities defaults();
  bool operator==(const Capabilities&) const = default;
};

/// Parse capability YAML. Every problem goes into `diag` with file:line; returns false on error.
bool parse_capabilities(std::string_view yaml_text, std::string_view filename, Capabilities& out, Diagnostics& diag);
/// Read and parse a capability file.
bool load_capabilities(const std::string& path, Capabilities& out, Diagnostics& diag);

}  // namespace tmc
