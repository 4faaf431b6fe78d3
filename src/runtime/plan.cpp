#include "tmc/plan.hpp"

#include <sstream>

namespace tmc {

std::string_view duplexity_name(Duplexity d) noexcept {
  switch (d) {
    case Duplexity::full: return "full";
    case Duplexity::send_only: return "send-only";
    case Duplexity::receive_only: return "receive-only";
  }
  return "?";
}

std::string_view synchronicity_name(Synchronicity s) noexcept {
  switch (s) {
    case Synchronicity::async: return "async";
    case Synchronicity::sync: return "sync";
  }
  return "?";
}

std::vector<std::string> Plan::software_kinds() const {
  std::vector<std::string> out;
  for (const auto& s : stages) {
    if (s.placement == Placement::software) out.push_back(s.kind);
  }
  return out;
}

std::string Plan::to_string() const {
  std::ostringstream o;
  o << "channel " << channel_id << " (wire id 0x" << std::hex << channel_hash << std::dec << ")";
  if (!member.empty()) o << ", member " << member;
  o << "\n";
  const TransportPlan& t = transport;
  o << "  transport: " << (t.multicast ? "udp multicast " + t.group : std::string("udp unicast fan-out")) << ":"
    << t.port << " on " << (t.interface.empty() ? "lo (default)" : t.interface) << ", ttl " << t.ttl
    << ", loopback " << (t.loopback ? "on" : "off") << ", mtu " << t.mtu_bytes << ", max payload "
    << t.max_payload_bytes << " B, batch " << t.batch << (t.gso ? ", gso" : "") << (t.gro ? ", gro" : "")
    << (t.udp_checksum ? ", udp checksum on" : ", udp checksum off") << "\n";
  if (!t.multicast) {
    o << "  peers:";
    for (const auto& p : t.peers) o << " " << p;
    o << "\n";
  }
  o << "  duplexity: " << duplexity_name(duplexity) << ", synchronicity: " << synchronicity_name(synchronicity)
    << "\n";
  o << "  stages (application -> network):\n";
  if (stages.empty()) o << "    (none: best effort, zero header extensions)\n";
  int i = 1;
  for (const auto& s : stages) {
    o << "    " << i++ << ". " << s.kind;
    if (!s.params.empty()) {
      o << " {";
      bool first = true;
      for (const auto& [k, v] : s.params) {
        o << (first ? "" : ", ") << k << ": " << v;
        first = false;
      }
      o << "}";
    }
    o << (s.placement == Placement::software ? "  [software]" : "  [offload: " + s.offload + "]");
    if (!s.reason.empty()) o << "\n       why: " << s.reason;
    o << "\n";
  }
  for (const auto& n : notes) o << "  note: " << n << "\n";
  return o.str();
}

}  // namespace tmc
