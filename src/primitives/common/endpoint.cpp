// IPv4 addresses and "ip:port" endpoints (see endpoint.hpp).
#include "primitives/common/endpoint.hpp"

#include <charconv>

namespace tmc::detail {

bool parse_ipv4(std::string_view text, std::uint32_t& addr) noexcept {
  std::uint32_t out = 0;
  std::size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (pos >= text.size() || text[pos] != '.') return false;
      ++pos;
    }
    std::size_t digits = 0;
    unsigned value = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && digits < 4) {
      value = value * 10 + static_cast<unsigned>(text[pos] - '0');
      ++pos;
      ++digits;
    }
    if (digits == 0 || digits > 3 || value > 255) return false;
    out = (out << 8) | value;
  }
  if (pos != text.size()) return false;
  addr = out;
  return true;
}

bool parse_ip_port(std::string_view text, std::uint32_t& addr, std::uint16_t& port) noexcept {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  if (!parse_ipv4(text.substr(0, colon), addr)) return false;
  const std::string_view p = text.substr(colon + 1);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || value < 1 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace tmc::detail
