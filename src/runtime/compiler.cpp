// The compiler: manifest + capabilities + registry -> Plan.
//
// Phases, in the order they run (each collects every problem before failing):
//   1. check    the manifest's values (INVALID_MANIFEST) and the capabilities' (INVALID_CAPABILITIES);
//   2. refuse   what cannot be had here (NOT_AVAILABLE, one line each): multicast on a network
//               without it and no addresses to fan out to;
//   3. derive   the stages the properties need, in the canonical order below, each with the
//               sentence that explains it, and place each in software or on an offload;
//   4. size     the transport: group, peers, MTU and the payload left after every header;
//   5. resolve  every software stage against the registry (UNKNOWN_STAGE if a kind is missing).
//
// Canonical order, application -> network (a stage not needed is simply absent):
//   ordering.group, ordering.fifo, ordering.seq, fragment.split, pacing.coalesce,
//   reliability.arq, flow.credit, congestion.window, pacing.bucket, membership.heartbeat,
//   checksum.crc32c, security.aead, faults.inject
// Ordering sits above sequencing because it consumes the numbers sequencing stamps;
// fragmentation sits above reliability so that every fragment is repaired; flow and
// congestion control sit below reliability so that they see its acks and retransmissions;
// coalescing packs whole datagrams (with every extension above) into one, above reliability
// so that a batch is one reliable datagram (reliability's cost and window are per datagram,
// not per message), with the rate bucket below it so retransmissions are paced; membership sits
// lowest but for the checksum, so heartbeats are checked and every packet refreshes
// liveness; the checksum covers every byte the stages above wrote; security authenticates every datagram
// (and so replaces the checksum); fault injection is lowest so that every
// stage sees the damage it does, exactly as it would see the network's.
#include <algorithm>
#include <charconv>
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

// What the compiler knows of a stage kind comes from its StageInfo (wire bytes, the
// property it serves, its extensions, its parameters' defaults and ranges): the facts
// exist once, in the stage's folder. A kind missing from the registry the plan is resolved
// against is described by the built-in one, so that sizing and messages still work until
// step 5 reports it missing.
const StageInfo* describe(const Registry& registry, std::string_view kind) {
  const StageInfo* info = registry.find(kind);
  return info != nullptr ? info : Registry::builtin().find(kind);
}

std::size_t datagram_bytes(const StageInfo* info) { return info == nullptr ? 0 : info->wire_bytes_per_datagram; }

/// Bytes of extension `type` as the kind writes it: header and (largest) body.
std::size_t ext_bytes(const StageInfo* info, wire::Ext type) {
  if (info == nullptr) return 0;
  for (const WireExtension& e : info->extensions) {
    if (e.type == static_cast<std::uint8_t>(type)) return wire::kExtHeaderBytes + e.body_bytes;
  }
  return 0;
}

const ParamSpec* param_spec(const StageInfo* info, std::string_view name) {
  if (info == nullptr) return nullptr;
  for (const ParamSpec& p : info->params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::int64_t int_default(const StageInfo* info, std::string_view name) {
  const ParamSpec* p = param_spec(info, name);
  std::int64_t v = 0;
  if (p != nullptr) std::from_chars(p->default_value.data(), p->default_value.data() + p->default_value.size(), v);
  return v;
}

/// The facts derivation needs, read once from the stages' descriptions.
struct StageFacts {
  std::size_t seq_ext = 0;        ///< ordering.seq's extension on every data datagram
  std::size_t group_seq_ext = 0;  ///< the group_seq extension a network sequencer inserts
  std::size_t fragment_ext = 0;   ///< fragment.split's extension on every fragment
  std::size_t batch_ext = 0;      ///< pacing.coalesce's batch extension (compact records)
  std::size_t crc_trailer = 0;    ///< checksum.crc32c's trailer
  std::size_t auth_ext = 0;       ///< security.aead's auth extension
  /// reliability.arq's default sending window (messages in flight per sender).
  std::int64_t reliability_window = 0;
  std::int64_t reliability_ack_delay_us = 0;  ///< reliability.arq's default ack_delay_us
  std::int64_t reliability_nack_delay_us = 0;  ///< reliability.arq's default nack_delay_us
  std::int64_t reliability_rto_min_us = 0;    ///< and rto_min_us
  /// The largest ordering.fifo window (messages per sender).
  std::int64_t ordering_window_max = 0;
  /// pacing.coalesce's max_messages default: messages one batch datagram carries at most.
  std::int64_t coalesce_max_messages = 1;
};

StageFacts read_facts(const Registry& registry) {
  StageFacts f;
  const StageInfo* seq = describe(registry, "ordering.seq");
  const StageInfo* coalesce = describe(registry, "pacing.coalesce");
  f.seq_ext = ext_bytes(seq, wire::Ext::seq);
  f.group_seq_ext = ext_bytes(describe(registry, "ordering.group"), wire::Ext::group_seq);
  f.fragment_ext = ext_bytes(describe(registry, "fragment.split"), wire::Ext::fragment);
  f.batch_ext = ext_bytes(coalesce, wire::Ext::batch);
  f.crc_trailer = datagram_bytes(describe(registry, "checksum.crc32c"));
  f.auth_ext = ext_bytes(describe(registry, "security.aead"), wire::Ext::auth);
  f.reliability_window = int_default(describe(registry, "reliability.arq"), "window");
  f.reliability_ack_delay_us = int_default(describe(registry, "reliability.arq"), "ack_delay_us");
  f.reliability_nack_delay_us = int_default(describe(registry, "reliability.arq"), "nack_delay_us");
  f.reliability_rto_min_us = int_default(describe(registry, "reliability.arq"), "rto_min_us");
  if (const ParamSpec* w = param_spec(describe(registry, "ordering.fifo"), "window")) f.ordering_window_max = w->max;
  f.coalesce_max_messages = std::max<std::int64_t>(1, int_default(coalesce, "max_messages"));
  return f;
}

/// How long ordering above reliability waits for a repair: longer than the default retry budget.
constexpr std::int64_t kReliableHoldUs = 10'000'000;

/// The manifest property that brings a kind into a plan, for messages about the kind.
std::string needed_by(const Registry& registry, std::string_view kind) {
  const StageInfo* info = describe(registry, kind);
  const std::string_view field = info != nullptr ? info->serves : std::string_view{};
  return field.empty() ? "?" : std::string(detail::manifest_row(field).key);
}

std::string real_text(double d) { return detail::format_real(d); }

PlannedStage stage(std::string kind, std::string reason) {
  PlannedStage s;
  s.kind = std::move(kind);
  s.reason = std::move(reason);
  return s;
}

/// Sizes the compiler needs before it derives the stages: the payload room of one datagram.
struct Room {
  std::size_t datagram_payload = 0;  ///< payload bytes after the base header and every data extension
  std::size_t coalesce_budget = 0;   ///< bytes of inner datagrams one coalesced datagram may carry
};

std::string us_text(std::int64_t us) {
  if (us % 1000000 == 0) return std::to_string(us / 1000000) + " s";
  if (us % 1000 == 0) return std::to_string(us / 1000) + " ms";
  return std::to_string(us) + " us";
}

/// Whether any reliability stage is needed, and in which mode ("all" or "flagged").
std::string reliability_mode(const Manifest& m) {
  if (m.reliability.enabled) return m.reliability.messages;
  // Group ordering is the paper's Listing 1 channel: it sends its handshake with the
  // per-message `{'reliability': True}`, so the stage is there in flagged mode.
  if (m.group_ordering) return "flagged";
  return "";
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
  return out;
}

/// Step 3: the stages, top to bottom.
void derive_stages(const Manifest& m, const NicCapabilities& nic, const NetworkCapabilities& net, const Room& room,
                   const StageFacts& facts, Plan& plan) {
  const std::string rel_mode = reliability_mode(m);
  const bool reliable_all = rel_mode == "all";
  const bool membership = !rel_mode.empty() || m.flow_control.enabled || m.group_ordering;
  // Group ordering without gaps needs every member to have every message: reliability
  // acknowledged by all, not by a subset or a fraction.
  const ReliabilitySpec& rs = m.reliability;
  const bool reliable_to_all = reliable_all && rs.ack_from.empty() && rs.ack_fraction == 0.0 && rs.ack_k == 0;
  // Whether pacing.coalesce is in the plan (the pacing block below says why or why not).
  const std::int64_t coalesce_us =
      m.pacing.coalesce_us > 0 ? m.pacing.coalesce_us : (m.pacing.rate_bps > 0 ? 0 : 100);
  const bool coalesce_wanted = coalesce_us > 0 || m.pacing.coalesce_turn;
  const bool coalescing = m.pacing.enabled && coalesce_wanted && !(m.group_ordering && !net.sequencer.empty());

  if (m.group_ordering) {
    PlannedStage g;
    g.kind = "ordering.group";
    g.params = {{"sequencer", m.sequencer},
                {"network_sequencer", net.sequencer},
                {"reliable", reliable_to_all ? "true" : "false"},
                {"hold_us", std::to_string(m.ordering_hold_us)}};
    std::string how = reliable_to_all ? "with reliability every member delivers the same sequence, without gaps"
                                   : "without reliability a gap left open for " + us_text(m.ordering_hold_us) +
                                         " is skipped and reported (gap_skipped), and no two members ever "
                                         "deliver two messages in different orders";
    if (!net.sequencer.empty()) {
      g.reason = "'group ordering' is sequenced by the network: the capabilities declare an in-network sequencer at " +
                 net.sequencer + " (the paper's OUM), so members send data to it and deliver in the order it "
                 "stamps (group_seq extension, " + std::to_string(facts.group_seq_ext) + " bytes); " + how + ".";
    } else {
      g.reason = std::string("'group ordering' is sequenced by a member (") +
                 (m.sequencer.empty() ? "the alive member with the smallest name" : "'" + m.sequencer + "'") +
                 ", replaced through the membership view when it fails): it announces a global order that every "
                 "member, the sender included, delivers in; " + how + ".";
    }
    plan.stages.push_back(std::move(g));
  }

  if (m.point_to_point_ordering != OrderingMode::off) {
    // With every message reliable, a gap is always repaired (or its message reported
    // failed), so ordering waits for it: strict mode, with a window no smaller than the
    // reliability window (a sender never has more unacknowledged messages in flight, so a
    // gap can never fall out of the window) and a hold long enough for the retry budget.
    const bool strict = m.point_to_point_ordering == OrderingMode::strict || reliable_all;
    const std::int64_t in_flight = coalescing ? facts.ordering_window_max : facts.reliability_window;
    const std::int64_t window = reliable_all ? std::max<std::int64_t>(m.ordering_window, in_flight)
                                             : m.ordering_window;
    const std::int64_t hold_us = reliable_all ? std::max<std::int64_t>(m.ordering_hold_us, kReliableHoldUs)
                                              : m.ordering_hold_us;
    std::string why;
    if (reliable_all) {
      why = std::string("'point-to-point ordering' with 'reliability': each sender's messages are delivered in the "
                        "order sent, and a gap waits for its repair (strict mode") +
            (m.point_to_point_ordering == OrderingMode::drop_stale
                 ? "; drop-stale would discard repaired messages that reliability promised"
                 : "") +
            ", at most " + std::to_string(window) + " per sender, the reliability window, for up to " +
            us_text(hold_us) + ").";
    } else if (strict) {
      why = "'point-to-point ordering: strict' asks that each sender's messages are delivered in the order "
            "sent; out-of-order ones wait, at most " +
            std::to_string(window) + " per sender for up to " + std::to_string(hold_us) + " us, for the gap to fill.";
    } else {
      why = "'point-to-point ordering: drop-stale' asks that each sender's messages are delivered in the order "
            "sent; anything not newer than the last delivered is dropped (paper, section 3.2).";
    }
    PlannedStage fifo = stage("ordering.fifo", why);
    fifo.params = {{"mode", strict ? "strict" : "drop-stale"},
                   {"window", std::to_string(window)},
                   {"hold_us", std::to_string(hold_us)}};
    plan.stages.push_back(std::move(fifo));
  }
  if (m.point_to_point_ordering != OrderingMode::off || m.group_ordering) {
    plan.stages.push_back(stage("ordering.seq",
                                "rule: ordering needs per-sender sequencing: every data datagram carries a sequence "
                                "number (seq extension, " +
                                    std::to_string(facts.seq_ext) + " bytes) under the sender's random epoch."));
  }

  if (static_cast<std::size_t>(m.max_message_bytes) > room.datagram_payload) {
    PlannedStage f = stage("fragment.split",
                           "'max message bytes' (" + std::to_string(m.max_message_bytes) +
                               ") exceeds one datagram's payload (" + std::to_string(room.datagram_payload) +
                               " bytes): larger messages are split into fragments of " +
                               std::to_string(room.datagram_payload - facts.fragment_ext) +
                               " bytes (fragment extension, " + std::to_string(facts.fragment_ext) + " bytes) and reassembled; " +
                               (reliable_all ? "with reliability every fragment is repaired."
                                             : "a message missing a fragment is dropped whole and counted."));
    f.params = {{"fragment_bytes", std::to_string(room.datagram_payload - facts.fragment_ext)},
                {"max_message_bytes", std::to_string(m.max_message_bytes)},
                {"reassembly_timeout_us", reliable_all ? "30000000" : "2000000"},
                // Room for two messages of the largest size in reassembly at once.
                {"max_reassembly_bytes", std::to_string(std::max<std::int64_t>(64LL << 20, 2 * m.max_message_bytes))}};
    if (reliable_all) {
      // Reliability acknowledges each fragment as it arrives, below this stage: a partial
      // message evicted for room would never be repaired. A sender can have a whole
      // reliability window of messages in reassembly at once; memory stays bounded by
      // max_reassembly_bytes.
      f.params.emplace("max_partial_per_sender", "4096");
    }
    plan.stages.push_back(std::move(f));
  }

  // Coalescing sits above reliability: a batch of small messages is one reliable datagram
  // (one sequence number, one copy kept, one bit in an ack), so reliability's cost and its
  // window are per datagram, not per message.
  if (m.pacing.enabled) {
    if (coalesce_wanted && m.group_ordering && !net.sequencer.empty()) {
      plan.notes.push_back("pacing: no coalescing: the network sequencer stamps each datagram, so messages "
                           "sharing one would share one place in the order");
    } else if (m.pacing.coalesce_turn) {
      // delay_us 0: the batch leaves at the stage's next tick, which the runtime runs at the
      // end of the event loop's turn when a deadline is already due (no timer).
      PlannedStage c = stage("pacing.coalesce",
                             "'pacing' with 'coalesce turn': messages sent within one turn of the event loop (a "
                             "handler's sends for one input, several sends in a row) share datagrams (up to " +
                                 std::to_string(room.coalesce_budget) +
                                 " bytes of them) and leave when the turn ends, without waiting for more; a "
                                 "message alone is sent as itself.");
      c.params = {{"max_bytes", std::to_string(room.coalesce_budget)}, {"delay_us", "0"}, {"records", "compact"}};
      plan.stages.push_back(std::move(c));
    } else if (coalesce_us > 0) {
      PlannedStage c = stage("pacing.coalesce",
                             "'pacing' trades latency for throughput: small messages wait at most " +
                                 us_text(coalesce_us) + " to share one datagram (up to " +
                                 std::to_string(room.coalesce_budget) +
                                 " bytes of them); a message alone at the deadline is sent as itself.");
      // Compact records leave out the base header every record of a batch shares (and a
      // seq that follows the previous one): half again as many small messages per datagram.
      c.params = {{"max_bytes", std::to_string(room.coalesce_budget)},
                  {"delay_us", std::to_string(coalesce_us)},
                  {"records", "compact"}};
      plan.stages.push_back(std::move(c));
    }
  }

  if (!rel_mode.empty()) {
    const ReliabilitySpec& r = m.reliability;
    std::string who = !r.ack_from.empty()        ? "the named members " + join(r.ack_from)
                      : r.ack_fraction > 0       ? "a fraction " + real_text(r.ack_fraction) + " of the members"
                      : r.ack_k > 0              ? std::to_string(r.ack_k) + " of the members"
                                                 : "every receiving member of the current view";
    PlannedStage rel;
    rel.kind = "reliability.arq";
    if (rel_mode == "all") {
      rel.reason = "'reliability' asks for acknowledgments from " + who +
                   " for every message: a sending window with retransmission on timeout (RTO from measured RTT) "
                   "and on negative acknowledgment (NACKs with suppression), duplicates dropped; each message's "
                   "outcome (met or failed after " + std::to_string(r.max_retries) + " retries) is reported.";
    } else if (m.reliability.enabled) {
      rel.reason = "'reliability: {messages: flagged}': only messages sent with the per-message "
                   "'reliability: true' are acknowledged, by " + who + "; the others cost nothing extra.";
    } else {
      rel.reason = "rule: 'group ordering' channels accept the per-message 'reliability: true' (the paper's "
                   "Listing 1 sends its handshake so): only such messages are acknowledged, by " + who +
                   "; the others cost nothing extra.";
    }
    if (m.point_to_point_ordering != OrderingMode::off) {
      // Ordering above would hold every message behind a gap one by one; reliability can
      // hold the datagram (a whole coalesced batch) instead and pass them up in order.
      rel.params["deliver"] = "in_order";
      rel.reason += " It passes each sender's messages up in order (deliver: in_order): what waits behind a gap "
                    "waits here, a datagram at a time, and ordering above holds nothing.";
    }
    if (coalescing) {
      // Its window counts datagrams of up to coalesce_max_messages messages each, and the
      // ordering window above (in messages) must cover all of them in flight.
      const std::int64_t window = facts.ordering_window_max / facts.coalesce_max_messages;
      rel.params["window"] = std::to_string(window);
      rel.reason += " Its window is " + std::to_string(window) +
                    " datagrams: coalescing above packs up to " + std::to_string(facts.coalesce_max_messages) +
                    " messages into each.";
    }
    rel.params.insert({{"messages", rel_mode},
                  {"ack_from", join(r.ack_from)},
                  {"ack_fraction", real_text(r.ack_fraction)},
                  {"ack_k", std::to_string(r.ack_k)},
                  {"max_retries", std::to_string(r.max_retries)}});
    // Timing: only what differs from the stage's own defaults (plans stay as short as before).
    if (r.ack_delay_us != facts.reliability_ack_delay_us) rel.params["ack_delay_us"] = std::to_string(r.ack_delay_us);
    if (r.min_timeout_us != facts.reliability_rto_min_us) {
      rel.params["rto_min_us"] = std::to_string(r.min_timeout_us);
    }
    // (With point-to-point ordering above, deliver=in_order: the stage refuses the pair.)
    if (r.acks != "receiver") rel.params["acks"] = r.acks;
    if (r.nack_delay_us != facts.reliability_nack_delay_us) rel.params["nack_delay_us"] = std::to_string(r.nack_delay_us);
    if (r.tail_probe) rel.params["tail_probe"] = "true";
    plan.stages.push_back(std::move(rel));
  }

  if (m.flow_control.enabled) {
    const FlowControlSpec& f = m.flow_control;
    PlannedStage fl = stage("flow.credit",
                            "'flow control' (policy " + f.policy + "): receivers advertise " +
                                std::to_string(f.window_bytes) +
                                " bytes of credit; the sender waits for the " +
                                (f.policy == "min" ? std::string("slowest receiver")
                                 : f.policy == "max" ? std::string("fastest receiver")
                                                     : std::string("majority of receivers")) +
                                "; one that blocks it for " + us_text(f.slow_timeout_us) + " is reported" +
                                (f.eject_slow ? " and left behind." : "."));
    fl.params = {{"policy", f.policy},
                 {"window_bytes", std::to_string(f.window_bytes)},
                 {"slow_timeout_us", std::to_string(f.slow_timeout_us)},
                 {"eject_slow", f.eject_slow ? "true" : "false"}};
    if (!f.load_hints) fl.params["load_hints"] = "false";
    plan.stages.push_back(std::move(fl));
  }

  if (m.congestion_control != "none") {
    PlannedStage cc = stage("congestion.window",
                            "'congestion control: " + m.congestion_control +
                                "': a congestion window driven by acknowledgments, losses and RTT, following the "
                                "slowest acknowledging receiver (as PGMCC/TFMCC do for multicast).");
    cc.params = {{"algorithm", m.congestion_control}};
    plan.stages.push_back(std::move(cc));
  }

  if (m.pacing.enabled) {
    const PacingSpec& p = m.pacing;
    if (p.rate_bps > 0) {
      const std::int64_t burst = p.burst_bytes > 0 ? p.burst_bytes : 65536;
      PlannedStage b = stage("pacing.bucket", "'pacing' asks for at most " + std::to_string(p.rate_bps) +
                                                  " bit/s: a token bucket (burst " + std::to_string(burst) +
                                                  " bytes) spreads the datagrams.");
      b.params = {{"rate_bps", std::to_string(p.rate_bps)}, {"burst_bytes", std::to_string(burst)}};
      plan.stages.push_back(std::move(b));
    }
  }

  if (membership) {
    std::string why = m.reliability.enabled ? "reliability"
                      : m.group_ordering    ? "group ordering"
                                            : "flow control";
    PlannedStage hb = stage("membership.heartbeat",
                            "rule: " + why + " needs the membership view: every member announces itself every " +
                                us_text(m.heartbeat_us) + " and one silent for " + us_text(m.failure_timeout_us) +
                                " is reported failed.");
    hb.params = {{"interval_us", std::to_string(m.heartbeat_us)},
                 {"timeout_us", std::to_string(m.failure_timeout_us)},
                 {"receives", m.duplexity == Duplexity::send_only ? "false" : "true"}};
    plan.stages.push_back(std::move(hb));
  }

  if (m.lifetime.enabled) {
    const LifetimeSpec& l = m.lifetime;
    PlannedStage lt = stage("lifetime.deadline",
                            "'lifetime' " +
                                (l.duration_us > 0 ? "of " + us_text(l.duration_us) + " for every message"
                                                   : std::string("per message")) +
                                ": each datagram of a message with a lifetime carries what remains of it, "
                                "written as it leaves (so time queued for credit or a window counts); a "
                                "receiver drops it once less than the skew of " + us_text(l.skew_us) +
                                " remains, and never delivers it later.");
    lt.params = {{"duration_us", std::to_string(l.duration_us)}, {"skew_us", std::to_string(l.skew_us)}};
    plan.stages.push_back(std::move(lt));
  }

  const bool secured = m.security != "none";
  if (m.error_checking && !secured) {
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
                   "), so every datagram carries a CRC32C trailer of " + std::to_string(facts.crc_trailer) +
                   " bytes (Fig. 3, host B).";
    }
    plan.stages.push_back(std::move(crc));
  }

  if (secured) {
    PlannedStage aead;
    aead.kind = "security.aead";
    const std::string what = m.security == "encrypt" ? "authenticated and encrypted" : "authenticated";
    if (nic.crypto_offload) {
      aead.placement = Placement::offload;
      aead.offload = "nic.crypto";
      aead.reason = "'security: " + m.security + "' is placed on the NIC: the capabilities declare crypto offload "
                    "(the NIC or the link authenticates and encrypts the group's datagrams with keys managed "
                    "outside libTMC), so no software stage runs and no bytes are added.";
    } else {
      aead.reason = "'security: " + m.security + "': every datagram (data, fragments, batches, acks, NAKs, "
                    "heartbeats, stamps) is " + what + " under the group key from the key file, lowest but for "
                    "fault injection, with a per-sender replay window (auth extension, " +
                    std::to_string(facts.auth_ext) + " bytes); what fails is dropped before any stage above sees "
                    "it. The AEAD is AES-256-GCM when the CPU has AES-NI, else XChaCha20-Poly1305, chosen at "
                    "start-up (stats: security.uses_*)" +
                    (m.error_checking ? "; it also detects every corruption, so 'error checking' needs no CRC32C "
                                        "trailer and checksum.crc32c is left out."
                                      : ".");
      aead.params = {{"mode", m.security}, {"key_file", m.key_file}, {"algorithm", "auto"}};
    }
    plan.stages.push_back(std::move(aead));
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

// --- stages requested by kind (module stages) --------------------------------------------
//
// A module stage is placed from its StageInfo::layer alone: each layer is the slot above the
// first built-in that must stay below it (the canonical order above), so the compiler never
// needs a module stage's name. Requested stages of one layer keep the manifest's order.

struct LayerSlot {
  StageLayer layer;
  std::initializer_list<std::string_view> below;  ///< built-ins that stay below this layer
  std::string_view where;                         ///< for the plan's reason
};

const LayerSlot kLayerSlots[] = {
    {StageLayer::ordering,
     {"ordering.seq", "fragment.split", "pacing.coalesce", "reliability.arq", "flow.credit", "congestion.window",
      "pacing.bucket", "membership.heartbeat", "checksum.crc32c", "faults.inject"},
     "below the built-in orderings, above ordering.seq"},
    {StageLayer::message,
     {"fragment.split", "pacing.coalesce", "reliability.arq", "flow.credit", "congestion.window", "pacing.bucket",
      "membership.heartbeat", "checksum.crc32c", "faults.inject"},
     "below sequencing, above fragmentation: whole messages"},
    {StageLayer::datagram,
     {"reliability.arq", "flow.credit", "congestion.window", "pacing.bucket", "membership.heartbeat",
      "checksum.crc32c", "faults.inject"},
     "below fragmentation and coalescing, above reliability: each datagram reliability repairs"},
    {StageLayer::repair,
     {"pacing.bucket", "membership.heartbeat", "checksum.crc32c", "faults.inject"},
     "below reliability, flow and congestion control, above the rate bucket: repair without a round trip"},
    {StageLayer::bottom,
     {"checksum.crc32c", "faults.inject"},
     "below membership, above the checksum and fault injection: every datagram"},
};

const LayerSlot* slot_of(StageLayer l) {
  for (const LayerSlot& s : kLayerSlots) {
    if (s.layer == l) return &s;
  }
  return nullptr;
}

/// "tally 1.0.0, fec 1.2.0" from the provenance of the registry's module kinds ("none").
std::string loaded_modules(const Registry& registry) {
  std::vector<std::string> names;
  for (const StageInfo* info : registry.all()) {
    std::string_view p = info->provenance;
    if (!p.starts_with("module ")) continue;
    p.remove_prefix(7);
    std::string name(p.substr(0, p.find(',')));
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

/// Check the manifest's `stages:` and `congestion control:` against the registry the
/// channel is built from: every problem, one line each.
void check_requests(const Manifest& m, const Registry& registry, std::vector<std::string>& problems) {
  for (const StageRequest& r : m.stages) {
    const StageInfo* info = registry.find(r.kind);
    if (info == nullptr) {
      problems.push_back("'stages' asks for '" + r.kind + "', which no loaded module provides (loaded modules: " +
                         loaded_modules(registry) + ")");
      continue;
    }
    if (info->layer == StageLayer::none) {
      problems.push_back("'stages' asks for '" + r.kind +
                         "', a built-in stage: built-ins are placed from the properties that need them");
      continue;
    }
    Params params;
    std::vector<std::string> errors;
    if (!registry.resolve_params(*info, r.params, params, errors)) {
      for (auto& e : errors) problems.push_back("'stages': " + e);
    }
  }
  for (std::size_t i = 0; i < m.stages.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (m.stages[i].kind == m.stages[j].kind) problems.push_back("'stages' asks for '" + m.stages[i].kind + "' twice");
    }
  }
  if (const StageInfo* w = registry.find("congestion.window"); w != nullptr && m.congestion_control != "none") {
    if (const ParamSpec* a = param_spec(w, "algorithm"); a != nullptr && !a->one_of.empty() &&
        std::find(a->one_of.begin(), a->one_of.end(), m.congestion_control) == a->one_of.end()) {
      std::string words;
      for (auto word : a->one_of) words += (words.empty() ? "" : ", ") + std::string(word);
      problems.push_back("'congestion control: " + m.congestion_control + "' is not a controller here (known: " +
                         words + "; loaded modules: " + loaded_modules(registry) + ")");
    }
  }
}

/// Insert the requested stages at their layers' slots (after derive_stages()).
void place_requests(const Manifest& m, const Registry& registry, Plan& plan) {
  for (const StageRequest& r : m.stages) {
    const StageInfo* info = registry.find(r.kind);
    const LayerSlot* slot = info != nullptr ? slot_of(info->layer) : nullptr;
    if (slot == nullptr) continue;  // refused by check_requests()
    // Above the first stage that stays below this layer, and below the requested stages of
    // this layer placed before it (the manifest's order).
    std::size_t at = plan.stages.size();
    for (std::size_t i = 0; i < plan.stages.size(); ++i) {
      const std::string& k = plan.stages[i].kind;
      bool stays_below = std::find(slot->below.begin(), slot->below.end(), k) != slot->below.end();
      if (!stays_below) {
        // A requested stage of a lower layer stays below too.
        const StageInfo* other = registry.find(k);
        stays_below = other != nullptr && other->layer != StageLayer::none && other->layer > info->layer;
      }
      if (stays_below) {
        at = i;
        break;
      }
    }
    PlannedStage ps;
    ps.kind = r.kind;
    ps.params = r.params;
    ps.reason = "'stages' asks for it (" + std::string(info->provenance.empty() ? "registered by the program"
                                                                                : info->provenance) +
                "); " + std::string(stage_layer_name(info->layer)) + " layer: " + std::string(slot->where);
    plan.stages.insert(plan.stages.begin() + static_cast<std::ptrdiff_t>(at), std::move(ps));
  }
}

const PlannedStage* find_stage(const Plan& plan, std::string_view kind) {
  for (const auto& s : plan.stages) {
    if (s.kind == kind) return &s;
  }
  return nullptr;
}

/// The plan's traits: what the shells need to know, read off the manifest and the stages
/// derive_stages() placed (so they can never disagree).
ChannelTraits traits_of(const Manifest& m, const Room& room, const StageFacts& facts, const Plan& plan) {
  ChannelTraits t;
  const std::string rel_mode = reliability_mode(m);
  t.reliability = rel_mode.empty()    ? ReliabilityScope::none
                  : rel_mode == "all" ? ReliabilityScope::all
                                      : ReliabilityScope::flagged;
  if (const PlannedStage* fifo = find_stage(plan, "ordering.fifo")) {
    t.point_to_point_ordering = fifo->params.at("mode") == "strict" ? FifoOrdering::strict : FifoOrdering::drop_stale;
  }
  if (const PlannedStage* group = find_stage(plan, "ordering.group")) {
    t.group_ordering = true;
    t.network_sequenced = !group->params.at("network_sequencer").empty();
  }
  t.ordered_flagged = t.ordered() && m.ordered_messages == "flagged";
  t.error_checking = find_stage(plan, "checksum.crc32c") != nullptr ||
                     (m.error_checking && find_stage(plan, "security.aead") != nullptr);
  t.coalescing = find_stage(plan, "pacing.coalesce") != nullptr;
  t.membership = find_stage(plan, "membership.heartbeat") != nullptr;
  if (find_stage(plan, "fragment.split") != nullptr) {
    t.fragment_bytes = static_cast<std::uint32_t>(room.datagram_payload - facts.fragment_ext);
  }
  t.max_message_bytes = static_cast<std::uint64_t>(m.max_message_bytes);
  if (find_stage(plan, "lifetime.deadline") != nullptr) {
    t.lifetime = true;
    t.lifetime_ns = static_cast<std::uint64_t>(m.lifetime.duration_us) * 1000;
  }
  return t;
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
  refused.push_back("'multicast: false' needs every member listed as \"name@ip:port\"; libTMC does not "
                    "discover members' addresses");
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
  plan.max_members = static_cast<std::size_t>(m.max_members);
  plan.duplexity = m.duplexity;
  plan.synchronicity = m.synchronicity;
  if (caps.source != "(defaults)" && !caps.source.empty()) plan.notes.push_back("capabilities: " + caps.source);

  // 2. refuse what cannot be had (decided with the transport, in step 4)
  std::vector<std::string> refused;

  // The NIC described by the capabilities is the channel's unless the manifest names another.
  TransportPlan& t = plan.transport;
  t.interface = m.interface.empty() ? caps.nic.name : m.interface;
  NicCapabilities nic = caps.nic;
  if (!caps.nic.name.empty() && !m.interface.empty() && m.interface != caps.nic.name) {
    plan.notes.push_back("capabilities describe NIC '" + caps.nic.name + "' but the channel uses '" + m.interface +
                         "': its offloads and MTU are not used");
    nic = NicCapabilities{};
  }

  // Stages requested by kind, and a congestion controller outside the built-ins, exist
  // only in the registry the channel is built from (its modules).
  {
    std::vector<std::string> problems;
    check_requests(m, registry, problems);
    if (!problems.empty()) {
      std::string message;
      for (const auto& line : problems) message += (message.empty() ? "" : "\n") + line;
      return {Code::INVALID_MANIFEST, message};
    }
  }

  // 3. derive. The payload room of a datagram depends on which stages add bytes, and the
  //    fragmentation and coalescing decisions depend on the room: derive once to learn the
  //    stages, size the room, then derive for real (derivation is pure).
  const std::size_t base_room =
      std::min<std::size_t>(nic.mtu_bytes - kIpv4HeaderBytes - kUdpHeaderBytes, wire::kMaxDatagramBytes) -
      wire::kBaseHeaderBytes;
  const StageFacts facts = read_facts(registry);
  // A network sequencer rewrites the datagrams it stamps, which an authenticated channel
  // would refuse: with security, group ordering is sequenced by a member.
  NetworkCapabilities net = caps.network;
  if (m.security != "none" && m.group_ordering && !net.sequencer.empty()) {
    plan.notes.push_back("network sequencer " + net.sequencer + ": not used: it rewrites datagrams, which 'security' "
                         "refuses, so a member sequences");
    net.sequencer.clear();
  }
  Room room;
  {
    Plan probe = plan;
    derive_stages(m, nic, net, Room{base_room, base_room}, facts, probe);
    place_requests(m, registry, probe);
    room.datagram_payload = base_room;
    room.coalesce_budget = base_room - facts.batch_ext;
    bool below_coalesce = false;
    for (const auto& s : probe.stages) {
      if (s.placement != Placement::software) continue;
      const StageInfo* info = describe(registry, s.kind);
      const std::size_t bytes = datagram_bytes(info);
      room.datagram_payload -= bytes;
      // What the stages below coalescing add goes on the batch datagram, once, not on each
      // record. The coalescing stage is the one that adds bytes per message it batches.
      if (below_coalesce) room.coalesce_budget -= bytes;
      if (info != nullptr && info->wire_bytes_per_message != 0) below_coalesce = true;
    }
    if (m.group_ordering && !net.sequencer.empty()) room.datagram_payload -= facts.group_seq_ext;
  }
  derive_stages(m, nic, net, room, facts, plan);
  place_requests(m, registry, plan);
  plan.traits = traits_of(m, room, facts, plan);

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
  t.max_payload_bytes = static_cast<std::uint32_t>(room.datagram_payload);

  if (!m.error_checking && m.security == "none") {
    plan.notes.push_back("error checking: not requested: no checksum stage and no trailer (UDP checksums stay on)");
  }
  if (m.congestion_control == "none") plan.notes.push_back("congestion control: none (not requested)");
  if (m.max_message_bytes <= static_cast<std::int64_t>(t.max_payload_bytes)) {
    plan.notes.push_back("fragmentation: not needed: 'max message bytes' (" + std::to_string(m.max_message_bytes) +
                         ") fits one datagram");
  }
  if (reliability_mode(m).empty()) {
    plan.notes.push_back("reliability: not requested: messages may be lost; the per-message 'reliability' is "
                         "refused (set 'reliability: {messages: flagged}' to allow it)");
  }
  if (!caps.network.sequencer.empty() && !m.group_ordering) {
    plan.notes.push_back("network sequencer " + caps.network.sequencer + ": not used (group ordering not requested)");
  }

  // 5. resolve against the registry: a kind the plan needs must exist, and it must accept
  //    the parameters the compiler gives it.
  std::string missing;
  std::string mismatched;
  auto present = [&](std::string_view kind, std::size_t from, std::size_t to) {
    for (std::size_t j = from; j < to; ++j) {
      if (plan.stages[j].kind == kind) return true;
    }
    return false;
  };
  for (std::size_t i = 0; i < plan.stages.size(); ++i) {
    const PlannedStage& s = plan.stages[i];
    if (s.placement != Placement::software) continue;
    const StageInfo* info = registry.find(s.kind);
    if (info == nullptr) {
      missing += (missing.empty() ? "" : "\n") +
                 ("stage kind '" + s.kind + "' is not registered (needed by '" + needed_by(registry, s.kind) + "')");
      continue;
    }
    Params params;
    std::vector<std::string> errors;
    if (!registry.resolve_params(*info, s.params, params, errors)) {
      for (const auto& e : errors) mismatched += (mismatched.empty() ? "" : "\n") + e;
    }
    // The stages it consumes must be below it, the ones whose traffic it governs above.
    for (std::string_view r : info->requires_below) {
      if (!present(r, i + 1, plan.stages.size())) {
        mismatched += (mismatched.empty() ? "" : "\n") + ("stage '" + s.kind + "' requires '" + std::string(r) +
                                                           "' below it, and the plan has none there");
      }
    }
    for (std::string_view r : info->requires_above) {
      if (!present(r, 0, i)) {
        mismatched += (mismatched.empty() ? "" : "\n") + ("stage '" + s.kind + "' requires '" + std::string(r) +
                                                           "' above it, and the plan has none there");
      }
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
