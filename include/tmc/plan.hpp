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

/// Which of a channel's messages are acknowledged.
enum class ReliabilityScope : std::uint8_t {
  none,     ///< no reliability stage: messages may be lost
  flagged,  ///< only messages sent with the per-message 'reliability: true'
  all,      ///< every message
};
/// Point-to-point ordering as planned: how a sender's out-of-order messages are treated.
enum class FifoOrdering : std::uint8_t { off, strict, drop_stale };

/// What the shells need to know about a channel, typed. The compiler fills it from the
/// same decisions that place the stages, so no shell reads its own plan back by stage
/// kind or parses parameter strings. Not part of to_string(): the stages say it already.
struct ChannelTraits {
  ReliabilityScope reliability = ReliabilityScope::none;
  FifoOrdering point_to_point_ordering = FifoOrdering::off;
  bool group_ordering = false;
  /// Group ordering sequenced by an in-network sequencer: a member's own datagrams come
  /// back stamped (group_seq extension) and are delivered in the order stamped, so the
  /// pipeline lets them through instead of discarding them as looped back.
  bool network_sequenced = false;
  /// 'ordered messages: flagged' on an ordered channel: a message is unordered unless it
  /// opts in with the per-message 'ordered: true'.
  bool ordered_flagged = false;
  bool error_checking = false;  ///< every datagram is checked (software stage or NIC offload)
  bool coalescing = false;      ///< small messages may share a datagram
  bool membership = false;      ///< a membership stage keeps the view (heartbeats)
  std::uint32_t fragment_bytes = 0;     ///< payload bytes per fragment; 0: messages are not fragmented
  std::uint64_t max_message_bytes = 0;  ///< the manifest's 'max message bytes'
  bool lifetime = false;          ///< lifetime.deadline is in the plan: messages may have lifetimes
  std::uint64_t lifetime_ns = 0;  ///< every message's lifetime ('lifetime: {duration us}'); 0 = none

  [[nodiscard]] bool reliable() const noexcept { return reliability != ReliabilityScope::none; }
  [[nodiscard]] bool ordered() const noexcept {
    return group_ordering || point_to_point_ordering != FifoOrdering::off;
  }
  [[nodiscard]] bool fragments() const noexcept { return fragment_bytes != 0; }
  bool operator==(const ChannelTraits&) const = default;
};

struct Plan {
  std::string channel_id;
  std::uint32_t channel_hash = 0;
  std::string member;  ///< this member's name
  std::vector<std::string> members;  ///< the manifest's named members (names only), for the group view
  std::size_t max_members = 4096;   ///< slots the group view holds at most (the manifest's 'max members')
  Duplexity duplexity = Duplexity::full;
  Synchronicity synchronicity = Synchronicity::async;
  TransportPlan transport;
  std::vector<PlannedStage> stages;  ///< index 0 nearest the application
  std::vector<std::string> notes;    ///< decisions that are not stages ("congestion control: none ...")
  ChannelTraits traits;              ///< the plan's properties, typed, for the shells

  /// Human-readable, stable text (golden-tested): one line per stage with placement and reason.
  [[nodiscard]] std::string to_string() const;
  /// Kinds of the software stages, top to bottom.
  [[nodiscard]] std::vector<std::string> software_kinds() const;
};

std::string_view duplexity_name(Duplexity d) noexcept;
std::string_view synchronicity_name(Synchronicity s) noexcept;

}  // namespace tmc
