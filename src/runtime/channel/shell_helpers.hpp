// Small helpers shared by the channel's files (src/runtime/channel/*.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/transport/udp_transport.hpp"
#include "tmc/packet.hpp"

namespace tmc::detail {

inline constexpr double kEwmaGain = 1.0 / 16.0;  // TCP's SRTT gain
inline constexpr std::uint64_t kNoPosition = ~std::uint64_t{0};
// The longest an inline receiver waits in a blocking read (SO_RCVTIMEO; the kernel rounds
// it up to a scheduler tick) before it falls back to ppoll() on the socket and its
// eventfd. It bounds how late a receiver in a hot wait sees a new handler or messages
// the loop queued; an idle receive() pays one such timed-out wait per call.
inline constexpr int kHotWaitUs = 2'000;

/// One iteration of a busy wait: tells the CPU (and a hyperthread sibling) we are spinning.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// A message larger than a pool buffer travels through the submit ring as a pool packet
/// (which keeps the ring's slot accounting exact) whose `next` points at the large packet
/// holding the bytes; the loop swaps them here.
inline Packet* unwrap_large(Packet* p) noexcept {
  Packet* large = p->next;
  if (large == nullptr) return p;
  p->next = nullptr;
  p->release();
  return large;
}

/// "0x0000abcd": how a sender without a known name is shown.
inline std::string hex_id(std::uint32_t id) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x00000000";
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(9 - i)] = digits[(id >> (4 * i)) & 0xF];
  return s;
}

/// The name of a 'members' entry ("name" or "name@ip:port").
inline std::string member_name(const std::string& entry) {
  const auto at = entry.find('@');
  return at == std::string::npos ? entry : entry.substr(0, at);
}

inline void add_counters(TransportCounters& into, const TransportCounters& c) {
  into.datagrams_sent += c.datagrams_sent;
  into.datagram_bytes_sent += c.datagram_bytes_sent;
  into.send_errors += c.send_errors;
  into.datagrams_received += c.datagrams_received;
  into.datagram_bytes_received += c.datagram_bytes_received;
  into.receive_errors += c.receive_errors;
  into.truncated += c.truncated;
  into.rx_pool_exhausted += c.rx_pool_exhausted;
  into.tx_overflow += c.tx_overflow;
  into.gso_sends += c.gso_sends;
  into.gso_refused += c.gso_refused;
  into.gro_reads += c.gro_reads;
  into.refused += c.refused;
}

inline void add_named(std::vector<std::pair<std::string, std::uint64_t>>& into, const std::string& name,
                      std::uint64_t v) {
  for (auto& [n, x] : into) {
    if (n == name) {
      x += v;
      return;
    }
  }
  into.emplace_back(name, v);
}

}  // namespace tmc::detail
