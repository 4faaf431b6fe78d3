// A compiled plan: what the runtime will build for one channel, and why.
//
// The compiler (tmc::compile, see manifest.hpp) turns manifest + capabilities + registry
// into a Plan. A Plan is plain data: printable (`tmc plan`), comparable in golden tests,
// and the only input the pipeline builder and the transport need.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tmc {

enum class Placement : std::uint8_t {
  software,  ///< a stage instance in the pipeline
  offload,   ///< done by the NIC or the network; no stage instance, zero bytes on the wire
};

struct PlannedStage {
  std::string kind;  ///< registry kind, e.g. "checksum.crc32c"
  /// Parameters in YAML spelling; the registry validates them and fills defaults when
  /// the pipeline is built.
  std::map<std::string, std::string, std::less<>> params;
  Placement placement = Placement::software;
  std::string offload;  ///< with Placement::offload: which capability, e.g. "nic.checksum_rx"
  std::string reason;   ///< one sentence: which property asked for it and why it is placed so
};

/// Which part of the plan a member plays (Table 3, duplexity).
enum class Duplexity : std::uint8_t { full, send_only, receive_only };
/// Table 3, synchronicity: does send() return when handed to the network, or when the
/// message's guarantees are met?
enum class Synchronicity : std::uint8_t { async, sync };

struct TransportPlan {
  std::string group;              ///< IPv4 multicast group, dotted quad
  std::uint16_t port = 0;
  std::string interface;          ///< interface name; empty = loopback ("lo")
  std::string interface_address;  ///< IPv4 of the interface, resolved at open (may be empty)
  int ttl = 1;
  bool loopback = true;           ///< IP_MULTICAST_LOOP: deliver to members on this host
  bool multicast = true;          ///< false: unicast fan-out to `peers` (same semantics)
  std::vector<std::string> peers;  ///< "ip:port" for unicast fan-out
  bool udp_checksum = true;        ///< leave UDP checksums on (false only if explicitly asked)
  bool gso = false;                ///< host offers UDP GSO
  bool gro = false;                ///< host offers UDP GRO
  std::uint32_t mtu_bytes = 1500;
  std::uint32_t max_payload_bytes = 0;  ///< per datagram, after headers and trailer
  std::uint32_t batch = 32;             ///< sendmmsg/recvmmsg batch size
};

struct Plan {
  std::string channel_id;
  std::uint32_t channel_hash = 0;
  std::string member;  ///< this member's name
  std::vector<std::string> members;  ///< the manifest's named members (names only), for the group view
  Duplexity duplexity = Duplexity::full;
  Synchronicity synchronicity = Synchronicity::async;
  TransportPlan transport;
  std::vector<PlannedStage> stages;  ///< index 0 nearest the application
  std::vector<std::string> notes;    ///< decisions that are not stages ("congestion control: none ...")

  /// Human-readable, stable text (golden-tested): one line per stage with placement and reason.
  [[nodiscard]] std::string to_string() const;
  /// Kinds of the software stages, top to bottom.
  [[nodiscard]] std::vector<std::string> software_kinds() const;
};

std::string_view duplexity_name(Duplexity d) noexcept;
std::string_view synchronicity_name(Synchronicity s) noexcept;

}  // namespace tmc
