// The compiler: manifest + capabilities + registry -> Plan.
//
// Phases, in the order they run (each collects every problem before failing):
//   1. check    the manifest's values (INVALID_MANIFEST) and the capabilities' (INVALID_CAPABILITIES);
//   2. refuse   each requested property whose stage is not built yet (NOT_AVAILABLE, one line each);
//   3. derive   the stages the properties need, in the canonical order below, each with the
//               sentence that explains it, and place each in software or on an offload;
//   4. size     the transport: group, peers, MTU and the payload left after every header;
//   5. resolve  every software stage against the registry (UNKNOWN_STAGE if a kind is missing).
//
// Canonical order, application -> network (a stage not needed is simply absent):
//   group ordering, ordering.fifo, ordering.seq, fragment, reliability, flow, congestion,
//   pacing, checksum.crc32c, faults.inject
// Ordering sits above sequencing because it consumes the numbers sequencing stamps; the
// checksum covers every byte the stages above wrote; fault injection is lowest so that every
// stage sees the damage it does, exactly as it would see the network's.
#include <algorithm>
#include <sstream>

#include "runtime/manifest/internal.hpp"
#include "runtime/manifest/reflect.hpp"
#include "tmc/manifest.hpp"
#include "tmc/wire.hpp"

namespace tmc {

namespace {

constexpr std::size_t kIpv4HeaderBytes = 20;
constexpr std::size_t kUdpHeaderBytes = 8;
constexpr std::uint32_t kMinMtuBytes = 576;

/// Bytes a software stage adds to every data datagram: its extension (with the 2-byte
/// extension header) and any trailer. A kind not listed adds nothing.
struct WireCost {
  std::string_view kind;
  std::size_t extension_bytes;
  std::size_t trailer_bytes;
};
constexpr WireCost kWireCosts[] = {
    {"ordering.seq", wire::kExtHeaderBytes + 8, 0},
    {"checksum.crc32c", 0, wire::kTrailerBytes},
};

std::size_t wire_bytes(const PlannedStage& s) {
  if (s.placement != Placement::software) return 0;
  for (const auto& c : kWireCosts) {
    if (c.kind == s.kind) return c.extension_bytes + c.trailer_bytes;
  }
  return 0;
}

/// Which property each kind serves, for messages about the kind.
constexpr std::pair<std::string_view, std::string_view> kNeededBy[] = {
    {"ordering.fifo", "point_to_point_ordering"},
    {"ordering.seq", "point_to_point_ordering"},
    {"checksum.crc32c", "error_checking"},
    {"faults.inject", "faults"},
};

std::string needed_by(std::string_view kind) {
  for (const auto& [k, field] : kNeededBy) {
    if (k == kind) return std::string(detail::manifest_row(field).key);
  }
  return "?";
}

std::string key_of(std::string_view field) { return std::string(detail::manifest_row(field).key); }

std::string not_yet(std::string_view field, const std::string& what) {
  const detail::FieldMeta& row = detail::manifest_row(field);
  return what + " is not available yet (planned: " + std::string(row.planned) + ")";
}

std::string real_text(double d) { return detail::format_real(d); }

/// Step 2: every requested property whose stage does not exist yet, one line each.
void refuse_unavailable(const Manifest& m, const Capabilities& caps, std::vector<std::string>& lines) {
  if (m.group_ordering) {
    std::string what = "'" + key_of("group_ordering") + "'";
    if (!caps.network.sequencer.empty()) what += " (with the network sequencer at " + caps.network.sequencer + ")";
    lines.push_back(not_yet("group_ordering", what));
  }
  if (m.reliability.enabled) lines.push_back(not_yet("reliability", "'" + key_of("reliability") + "'"));
  if (m.pacing.enabled) lines.push_back(not_yet("pacing", "'" + key_of("pacing") + "'"));
  if (m.flow_control.enabled) lines.push_back(not_yet("flow_control", "'" + key_of("flow_control") + "'"));
  if (m.congestion_control != "none") {
    lines.push_back(not_yet("congestion_control", "'" + key_of("congestion_control") + ": " + m.congestion_control + "'"));
  }
}

PlannedStage stage(std::string kind, std::string reason) {
  PlannedStage s;
  s.kind = std::move(kind);
  s.reason = std::move(reason);
  return s;
}

/// Step 3: the stages, top to bottom.
void derive_stages(const Manifest& m, const NicCapabilities& nic, Plan& plan) {
  if (m.point_to_point_ordering != OrderingMode::off) {
    const bool strict = m.point_to_point_ordering == OrderingMode::strict;
    PlannedStage fifo = stage(
        "ordering.fifo",
        strict ? "'point-to-point ordering: strict' asks that each sender's messages are delivered in the order "
                 "sent; out-of-order ones wait, at most " +
                     std::to_string(m.ordering_window) + " per sender for up to " +
                     std::to_string(m.ordering_hold_us) + " us, for the gap to fill."
               : "'point-to-point ordering: drop-stale' asks that each sender's messages are delivered in the "
                 "order sent; anything not newer than the last delivered is dropped (paper, section 3.2).");
    fifo.params = {{"mode", strict ? "strict" : "drop-stale"},
                   {"window", std::to_string(m.ordering_window)},
                   {"hold_us", std::to_string(m.ordering_hold_us)}};
    plan.stages.push_back(std::move(fifo));
    plan.stages.push_back(stage("ordering.seq",
                                "rule: ordering needs per-sender sequencing: every data datagram carries a sequence "
                                "number (seq extension, 10 bytes) under the sender's random epoch."));
  }

  if (m.error_checking) {
    PlannedStage crc;
    crc.kind = "checksum.crc32c";
    if (nic.checksum_tx && nic.checksum_rx) {
      crc.placement = Placement::offload;
      crc.offload = "nic.checksum";
      crc.reason =
          "'error checking' is placed on the NIC: the capabilities say it computes and verifies UDP checksums "
          "(checksum offload tx and rx), so no software stage runs, no bytes are added, and UDP checksums "
          "stay on (Fig. 3, host A).";
    } else {
      crc.reason = std::string("'error checking' runs in software: the NIC does not both compute and verify "
                               "checksums (checksum offload tx: ") +
                   (nic.checksum_tx ? "true" : "false") + ", rx: " + (nic.checksum_rx ? "true" : "false") +
                   "), so every datagram carries a CRC32C trailer of 4 bytes (Fig. 3, host B).";
    }
    plan.stages.push_back(std::move(crc));
  }

  if (m.faults.any()) {
    const FaultSpec& f = m.faults;
    PlannedStage faults = stage("faults.inject",
                                "'faults' asks for injected faults; placed lowest, nearest the network, so every "
                                "stage above meets them as it would meet the network's.");
    faults.params = {{"loss", real_text(f.loss)},          {"duplicate", real_text(f.duplicate)},
                     {"reorder", real_text(f.reorder)},    {"corrupt", real_text(f.corrupt)},
                     {"delay_us", std::to_string(f.delay_us)}, {"seed", std::to_string(f.seed)}};
    plan.stages.push_back(std::move(faults));
  }
}

/// Step 4, multicast or unicast fan-out. Adds to `refused` when neither can be had.
void plan_delivery(const Manifest& m, const Capabilities& caps, Plan& plan, std::vector<std::string>& refused) {
  TransportPlan& t = plan.transport;
  std::vector<std::string> peers;
  bool all_addressed = !m.members.empty();
  for (const auto& entry : m.members) {
    detail::MemberEntry e;
    if (!detail::parse_member(entry, e) || e.endpoint.empty()) {
      all_addressed = false;
      continue;
    }
    if (e.name != m.name) peers.push_back(e.endpoint);
  }

  if (m.multicast && caps.network.multicast) {
    t.multicast = true;
    if (m.group.empty()) {
      t.group = detail::derived_group(m.id);
      plan.notes.push_back("group: " + t.group + " derived from the id (239.255.X.Y from its FNV-1a hash); set "
                           "'group' to choose another");
    } else {
      t.group = m.group;
    }
    return;
  }
  if (m.multicast) {  // asked for multicast, the network has none
    if (all_addressed) {
      t.multicast = false;
      t.peers = std::move(peers);
      plan.notes.push_back("multicast: the network has no IP multicast (capabilities: network.multicast false), so "
                           "each datagram is sent by unicast to every addressed member, with the same semantics");
      return;
    }
    refused.push_back("'multicast': the network has no IP multicast (capabilities " + caps.source +
                      ": network.multicast false) and 'members' gives no addresses to fall back to unicast "
                      "fan-out; list every member as \"name@ip:port\"");
    return;
  }
  if (all_addressed) {
    t.multicast = false;
    t.peers = std::move(peers);
    plan.notes.push_back("multicast: false: each datagram is sent by unicast to every addressed member");
    return;
  }
  refused.push_back("'multicast: false' needs every member listed as \"name@ip:port\"; finding members' "
                    "addresses by discovery is not available yet (planned: issue 5)");
}

}  // namespace

Status compile(const Manifest& m, const Capabilities& caps, const Registry& registry, Plan& out) {
  // 1. check
  Diagnostics diag;
  if (!validate_manifest(m, diag)) return {Code::INVALID_MANIFEST, diag.to_string()};
  if (caps.nic.mtu_bytes < kMinMtuBytes || caps.nic.mtu_bytes > 65535) {
    return {Code::INVALID_CAPABILITIES, "nic mtu must be in 576..65535, got " + std::to_string(caps.nic.mtu_bytes)};
  }

  Plan plan;
  plan.channel_id = m.id;
  plan.channel_hash = wire::channel_hash(m.id.data(), m.id.size());
  plan.member = m.name;
  for (const auto& entry : m.members) {
    detail::MemberEntry e;
    if (detail::parse_member(entry, e)) plan.members.push_back(e.name);
  }
  plan.duplexity = m.duplexity;
  plan.synchronicity = m.synchronicity;
  if (caps.source != "(defaults)" && !caps.source.empty()) plan.notes.push_back("capabilities: " + caps.source);

  // 2. refuse what is not built yet (multicast's refusals join them in step 4)
  std::vector<std::string> refused;
  refuse_unavailable(m, caps, refused);

  // The NIC described by the capabilities is the channel's unless the manifest names another.
  TransportPlan& t = plan.transport;
  t.interface = m.interface.empty() ? caps.nic.name : m.interface;
  NicCapabilities nic = caps.nic;
  if (!caps.nic.name.empty() && !m.interface.empty() && m.interface != caps.nic.name) {
    plan.notes.push_back("capabilities describe NIC '" + caps.nic.name + "' but the channel uses '" + m.interface +
                         "': its offloads and MTU are not used");
    nic = NicCapabilities{};
  }

  // 3. derive
  derive_stages(m, nic, plan);

  // 4. size the transport
  t.port = static_cast<std::uint16_t>(m.port);
  t.ttl = static_cast<int>(m.ttl);
  t.loopback = m.loopback;
  t.udp_checksum = true;
  t.gso = nic.udp_gso;
  t.gro = nic.udp_gro;
  t.mtu_bytes = nic.mtu_bytes;
  plan_delivery(m, caps, plan, refused);
  if (!refused.empty()) {
    std::string message;
    for (const auto& line : refused) message += (message.empty() ? "" : "\n") + line;
    return {Code::NOT_AVAILABLE, message};
  }
  std::size_t room = std::min<std::size_t>(nic.mtu_bytes - kIpv4HeaderBytes - kUdpHeaderBytes, wire::kMaxDatagramBytes);
  room -= wire::kBaseHeaderBytes;
  for (const auto& s : plan.stages) room -= wire_bytes(s);
  t.max_payload_bytes = static_cast<std::uint32_t>(room);

  if (!m.error_checking) {
    plan.notes.push_back("error checking: not requested: no checksum stage and no trailer (UDP checksums stay on)");
  }
  if (m.congestion_control == "none") plan.notes.push_back("congestion control: none (not requested)");
  if (m.max_message_bytes > static_cast<std::int64_t>(t.max_payload_bytes)) {
    plan.notes.push_back("fragmentation: not available yet: messages above " + std::to_string(t.max_payload_bytes) +
                         " bytes are refused at send ('max message bytes' is " + std::to_string(m.max_message_bytes) +
                         ")");
  } else {
    plan.notes.push_back("fragmentation: not needed: 'max message bytes' (" + std::to_string(m.max_message_bytes) +
                         ") fits one datagram");
  }
  if (!caps.network.sequencer.empty() && !m.group_ordering) {
    plan.notes.push_back("network sequencer " + caps.network.sequencer + ": not used (group ordering not requested)");
  }

  // 5. resolve against the registry: a kind the plan needs must exist, and it must accept
  //    the parameters the compiler gives it.
  std::string missing;
  std::string mismatched;
  for (const auto& s : plan.stages) {
    if (s.placement != Placement::software) continue;
    const StageInfo* info = registry.find(s.kind);
    if (info == nullptr) {
      missing += (missing.empty() ? "" : "\n") +
                 ("stage kind '" + s.kind + "' is not registered (needed by '" + needed_by(s.kind) + "')");
      continue;
    }
    Params params;
    std::vector<std::string> errors;
    if (!registry.resolve_params(*info, s.params, params, errors)) {
      for (const auto& e : errors) mismatched += (mismatched.empty() ? "" : "\n") + e;
    }
  }
  if (!missing.empty()) return {Code::UNKNOWN_STAGE, missing};
  if (!mismatched.empty()) return {Code::INTERNAL, "the compiler and the registry disagree: " + mismatched};

  out = std::move(plan);
  return Status::ok();
}

}  // namespace tmc

namespace tmc::detail {

bool render_plan(std::string_view manifest_yaml, std::string_view manifest_name, const Capabilities& caps,
                 const Registry& registry, std::string& out) {
  Diagnostics diag;
  Manifest m;
  if (!parse_manifest(manifest_yaml, manifest_name, m, diag)) {
    out = diag.to_string() + "\n";
    return false;
  }
  Plan plan;
  const Status s = compile(m, caps, registry, plan);
  if (!s) {
    out.clear();
    std::istringstream lines(s.message());
    std::string line;
    while (std::getline(lines, line)) {
      out += std::string(manifest_name) + ": " + std::string(status_name(s.code())) + ": " + line + "\n";
    }
    return false;
  }
  out = plan.to_string();
  return true;
}

}  // namespace tmc::detail
