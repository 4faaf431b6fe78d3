// Helpers for the runtime tests: distinct groups and ports per test process (so parallel
// CTest runs do not hear each other), and bounded waits that never assert a time.
#pragma once

#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tmc/channel.hpp"

namespace tmc::test {

/// A port for this test process; `offset` < 24 keeps tests of one process apart.
inline std::int64_t port_for(int offset) { return 40000 + (getpid() % 1000) * 24 + offset; }

/// A group for this test process in 239.77.0.0/16 (administratively scoped).
inline std::string group_for(int offset) {
  return "239.77." + std::to_string(getpid() % 250) + "." + std::to_string(offset + 1);
}

inline Manifest manifest_for(const std::string& id, int offset, const std::string& name) {
  Manifest m;
  m.id = id;
  m.name = name;
  m.group = group_for(offset);
  m.port = port_for(offset);
  return m;
}

/// Receive until `n` messages arrived or `patience` passed without any; returns the texts.
inline std::vector<std::string> receive_n(Channel& c, std::size_t n,
                                          std::chrono::milliseconds patience = std::chrono::milliseconds(3000)) {
  std::vector<std::string> out;
  while (out.size() < n) {
    auto m = c.receive(patience);
    if (!m) break;
    out.emplace_back(m->text());
  }
  return out;
}

/// Send `n` messages "<prefix><i>", in small bursts so a slow receiver's socket buffer
/// (net.core.rmem_max may be small without root) does not overflow on loopback.
inline bool send_n(Channel& c, int n, const std::string& prefix = "m", int first = 0) {
  for (int i = first; i < first + n; ++i) {
    if (!c.send(prefix + std::to_string(i))) return false;
    if (i % 16 == 15) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace tmc::test
