// The retrofit section of a manifest: which of an unmodified program's UDP sockets the
// LD_PRELOAD shim rewires onto a libTMC channel, and how (docs/retrofit.md).
//
//   retrofit:
//     local ports: [9000]                 # sockets the program binds to one of these ports
//     destinations: ["10.0.0.2:9000"]    # sockets that send to one of these (host or port may be *)
//     unicast: addressed                  # or fan-out
//     wait for members: 1                 # before a socket's first send
//     wait timeout ms: 5000
//     linger ms: 2000                     # at close: wait this long for reliable acks
//
// Every other key of the file is the channel's manifest, parsed by the normal manifest
// parser (with the same file:line in its messages).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tmc/manifest.hpp"

namespace tmc::retrofit {

/// One `destinations` entry. Addresses and ports are in network byte order.
struct Destination {
  bool any_host = false;
  std::uint32_t ip = 0;
  bool any_port = false;
  std::uint16_t port = 0;
  [[nodiscard]] bool matches(const sockaddr_in& a) const noexcept {
    return (any_host || a.sin_addr.s_addr == ip) && (any_port || a.sin_port == port);
  }
};

/// What a datagram the program sends to a unicast address becomes on the group.
enum class UnicastMode : std::uint8_t {
  addressed,  ///< carried on the group; only the socket it was addressed to delivers it
  fan_out,    ///< delivered by every member; the same bytes sent next to the other peers are absorbed
};

struct Config {
  std::vector<std::uint16_t> local_ports;  ///< host byte order
  std::vector<Destination> destinations;
  UnicastMode unicast = UnicastMode::addressed;
  std::int64_t wait_for_members = 0;
  std::int64_t wait_timeout_ms = 5000;
  std::int64_t linger_ms = 2000;
  Manifest manifest;  ///< the rest of the file

  [[nodiscard]] bool matches_local_port(std::uint16_t port_host_order) const noexcept;
  [[nodiscard]] bool matches_destination(const sockaddr_in& a) const noexcept;
};

/// Parse a manifest file's text: the `retrofit:` section into `out`, the rest with
/// tmc::parse_manifest. On failure `problems` holds one line per problem (file:line: ...).
bool parse_config(std::string_view text, std::string_view filename, Config& out, std::string& problems);
bool load_config(const std::string& path, Config& out, std::string& problems);

}  // namespace tmc::retrofit
