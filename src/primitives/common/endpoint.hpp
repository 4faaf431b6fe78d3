// IPv4 addresses and "ip:port" endpoints as manifests, capabilities, transports and the
// sequencer tool write them: a strict dotted quad (four parts of 1 to 3 digits, each at
// most 255) and a decimal port in 1..65535, nothing before, between or after. Addresses
// come back in host byte order.
#pragma once

#include <cstdint>
#include <string_view>

namespace tmc::detail {

/// Strict dotted quad ("239.0.0.2"); false for anything else (`addr` untouched then).
bool parse_ipv4(std::string_view text, std::uint32_t& addr) noexcept;

/// "ip:port" with a strict dotted quad and a port in 1..65535; false for anything else
/// (`addr` and `port` may have been written then).
bool parse_ip_port(std::string_view text, std::uint32_t& addr, std::uint16_t& port) noexcept;

}  // namespace tmc::detail
