// The manifest schema: Hana reflection of the structs of manifest.hpp plus their one table
// of properties. Parsing, printing, range checks and the property docs are all generic
// (reflect.hpp); only rules that relate several properties are written out here.

#include "runtime/manifest/internal.hpp"
#include "runtime/manifest/reflect.hpp"
#include "runtime/manifest/yaml_value.hpp"
#include "tmc/wire.hpp"

// Reflection lists, in declaration order (schema_problems() checks the rows follow it).
BOOST_HANA_ADAPT_STRUCT(tmc::ReliabilitySpec, enabled, ack_from, ack_fraction, ack_k, max_retries, messages,
                        ack_delay_us, min_timeout_us, acks, nack_delay_us, tail_probe);
BOOST_HANA_ADAPT_STRUCT(tmc::PacingSpec, enabled, rate_bps, burst_bytes, coalesce_us, coalesce_turn);
BOOST_HANA_ADAPT_STRUCT(tmc::FlowControlSpec, enabled, policy, window_bytes, slow_timeout_us, eject_slow,
                        load_hints);
BOOST_HANA_ADAPT_STRUCT(tmc::LifetimeSpec, enabled, duration_us, skew_us);
BOOST_HANA_ADAPT_STRUCT(tmc::FaultSpec, loss, duplicate, reorder, corrupt, delay_us, seed);
BOOST_HANA_ADAPT_STRUCT(tmc::Manifest, id, name, members, heartbeat_us, failure_timeout_us, max_members, multicast, group, port,
                        interface, ttl, loopback, point_to_point_ordering, ordering_window, ordering_hold_us,
                        group_ordering, sequencer, ordered_messages, reliability,
                        error_checking, security, key_file, pacing, flow_control, congestion_control, lifetime, synchronicity, duplexity,
                        max_message_bytes, faults, modules, stages);
BOOST_HANA_ADAPT_STRUCT(tmc::MessageManifest, reliability, error_checking, ordered, lifetime_us);

namespace tmc::detail {

// ---------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------

template <>
struct EnumTable<OrderingMode> {
  static constexpr std::array<EnumWord, 4> words{{{"off", static_cast<int>(OrderingMode::off)},
                                                  {"drop-stale", static_cast<int>(OrderingMode::drop_stale)},
                                                  {"strict", static_cast<int>(OrderingMode::strict)},
                                                  {"drop_stale", static_cast<int>(OrderingMode::drop_stale)}}};
  static constexpr std::array<RefusedWord, 0> refused{};
  // `true` is the paper's rule (drop anything not newer than the last delivered).
  static constexpr int bool_true = static_cast<int>(OrderingMode::drop_stale);
  static constexpr int bool_false = static_cast<int>(OrderingMode::off);
};

template <>
struct EnumTable<Synchronicity> {
  static constexpr std::array<EnumWord, 2> words{{{"async", static_cast<int>(Synchronicity::async)},
                                                  {"sync", static_cast<int>(Synchronicity::sync)}}};
  static constexpr std::array<RefusedWord, 0> refused{};
  static constexpr int bool_true = -1;
  static constexpr int bool_false = -1;
};

template <>
struct EnumTable<Duplexity> {
  static constexpr std::array<EnumWord, 5> words{{{"full", static_cast<int>(Duplexity::full)},
                                                  {"send-only", static_cast<int>(Duplexity::send_only)},
                                                  {"receive-only", static_cast<int>(Duplexity::receive_only)},
                                                  {"send_only", static_cast<int>(Duplexity::send_only)},
                                                  {"receive_only", static_cast<int>(Duplexity::receive_only)}}};
  static constexpr std::array<RefusedWord, 1> refused{
      {{"half", "half duplex (one direction at a time, switching) is not supported; use full, send-only or "
                "receive-only"}}};
  static constexpr int bool_true = -1;
  static constexpr int bool_false = -1;
};

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kFlowPolicies[] = {"min", "max", "quorum"};
constexpr std::string_view kCongestionControls[] = {"none", "aimd", "cubic"};
constexpr std::string_view kReliableMessages[] = {"all", "flagged"};
constexpr std::string_view kAckSources[] = {"receiver", "application"};
constexpr std::string_view kSecurityModes[] = {"none", "authenticate", "encrypt"};

constexpr FieldMeta kReliabilityRows[] = {
    {.field = "enabled", .key = "enabled", .alias = "enabled",
     .doc = "false keeps the settings below but turns acknowledgments off (a map alone means true)",
     .always = true},
    {.field = "ack_from", .key = "ack from", .alias = "ack_from",
     .doc = "acknowledgments needed from these named members; empty = from all members"},
    {.field = "ack_fraction", .key = "ack fraction", .alias = "ack_fraction",
     .doc = "acknowledgments needed from this fraction of the members, in (0, 1]; 0 = unused",
     .lo = 0.0, .hi = 1.0, .lo_open = true, .zero_means_unset = true},
    {.field = "ack_k", .key = "ack k", .alias = "ack_k",
     .doc = "acknowledgments needed from any k members; 0 = unused", .min = 1, .zero_means_unset = true},
    {.field = "max_retries", .key = "max retries", .alias = "max_retries",
     .doc = "retransmissions before the message is reported failed", .min = 0, .max = 1000},
    {.field = "messages", .key = "messages", .alias = "messages",
     .doc = "all: every message is acknowledged; flagged: only messages sent with the per-message "
            "'reliability: true'", .one_of = kReliableMessages},
    {.field = "ack_delay_us", .key = "ack delay us", .alias = "ack_delay_us",
     .doc = "longest a receiver holds back an ack to coalesce it with later ones, in microseconds; 0 = ack "
            "every message at once", .min = 0, .max = 1000000},
    {.field = "min_timeout_us", .key = "min timeout us", .alias = "min_timeout_us",
     .doc = "lower bound of the retransmission timeout (measured RTT plus variance), in microseconds: above "
            "the ack delay plus the scheduling delays of a loaded host, or timeouts fire spuriously",
     .min = 1, .max = 1000000},
    {.field = "acks", .key = "acks", .alias = "acks",
     .doc = "receiver: each receiver acknowledges what it received; application: replies are the acks "
            "(request/response): the sending application acknowledges a message on a member's behalf when its "
            "reply arrives (Channel::acknowledge), receivers send no acks and deliver a retransmitted message "
            "again, so a lost reply is repaired by retransmitting the request (handlers must be idempotent)",
     .one_of = kAckSources},
    {.field = "nack_delay_us", .key = "nack delay us", .alias = "nack_delay_us",
     .doc = "longest a receiver waits before it asks for a gap to be repaired (a random delay up to this, "
            "shorter with fewer receivers), in microseconds: above a forward error correction block's "
            "sending time, so that what FEC rebuilds is never asked for", .min = 0, .max = 10000000},
    {.field = "tail_probe", .key = "tail probe", .alias = "tail_probe",
     .doc = "when no acknowledgment came for two round trips plus the ack delay, send the newest "
            "unacknowledged message again (TCP's tail loss probe), so that receivers see a loss at the end of a "
            "burst and ask for it at once instead of after the retransmission timeout; false: the timeout alone"},
};

constexpr FieldMeta kPacingRows[] = {
    {.field = "enabled", .key = "enabled", .alias = "enabled",
     .doc = "false keeps the settings below but turns pacing off (a map alone means true)", .always = true},
    {.field = "rate_bps", .key = "rate bps", .alias = "rate_bps",
     .doc = "token-bucket rate in bits per second (datagram bytes); 0 = no rate limit", .min = 0},
    {.field = "burst_bytes", .key = "burst bytes", .alias = "burst_bytes",
     .doc = "token-bucket depth in bytes; 0 = 64 KiB", .min = 0},
    {.field = "coalesce_us", .key = "coalesce us", .alias = "coalesce_us",
     .doc = "longest wait to coalesce small messages into one datagram, in microseconds; 0 = 100 when "
            "no rate is set, else no coalescing", .min = 0, .max = 1000000},
    {.field = "coalesce_turn", .key = "coalesce turn", .alias = "coalesce_turn",
     .doc = "coalesce what is sent within one turn of the event loop (the messages a handler sends for one "
            "input, several sends in a row) and send it when the turn ends, without waiting longer: a "
            "request/response protocol's messages that go out together share datagrams at no latency cost; "
            "'coalesce us' is then unused"},
};

constexpr FieldMeta kFlowRows[] = {
    {.field = "enabled", .key = "enabled", .alias = "enabled",
     .doc = "false keeps the policy but turns flow control off (a map alone means true)", .always = true},
    {.field = "policy", .key = "policy", .alias = "policy",
     .doc = "whose receive window limits the sender: the slowest member (min), the fastest (max), or a "
            "majority (quorum)",
     .one_of = kFlowPolicies},
    {.field = "window_bytes", .key = "window bytes", .alias = "window_bytes",
     .doc = "bytes each receiver lets the sender have outstanding (its advertised window)", .min = 1024,
     .max = 1LL << 32},
    {.field = "slow_timeout_us", .key = "slow timeout us", .alias = "slow_timeout_us",
     .doc = "a receiver that holds the sender back (policy min) or lags more than its window (max, quorum) this long is reported to the application as slow",
     .min = 1000, .max = 600'000'000},
    {.field = "eject_slow", .key = "eject slow", .alias = "eject_slow",
     .doc = "a slow receiver stops holding the sender back (it is reported, and then left behind)"},
    {.field = "load_hints", .key = "load hints", .alias = "load_hints",
     .doc = "each receiver's window shrinks with its application's load (the fill of its receive queue, or "
            "what the application says with hint_load), to 0 at full load, so senders slow down before a "
            "receiver drops"},
};

constexpr FieldMeta kLifetimeRows[] = {
    {.field = "enabled", .key = "enabled", .alias = "enabled",
     .doc = "false turns lifetimes off (a map alone means true; true alone allows per-message lifetimes only)",
     .always = true},
    {.field = "duration_us", .key = "duration us", .alias = "duration_us",
     .doc = "every message's lifetime in microseconds, counted from when the channel takes it; 0 = only "
            "messages sent with their own 'lifetime us' have one",
     .min = 0, .max = 3'600'000'000},
    {.field = "skew_us", .key = "skew us", .alias = "skew_us",
     .doc = "bound on the one-way delay plus clock drift between sender and receiver: a receiver drops a "
            "message this long before the remaining lifetime it carries runs out",
     .min = 0, .max = 60'000'000},
};

constexpr FieldMeta kFaultRows[] = {
    {.field = "loss", .key = "loss", .alias = "loss", .doc = "probability that a datagram is dropped",
     .lo = 0.0, .hi = 1.0},
    {.field = "duplicate", .key = "duplicate", .alias = "duplicate", .doc = "probability that it is sent twice",
     .lo = 0.0, .hi = 1.0},
    {.field = "reorder", .key = "reorder", .alias = "reorder",
     .doc = "probability that it is held back behind later ones", .lo = 0.0, .hi = 1.0},
    {.field = "corrupt", .key = "corrupt", .alias = "corrupt", .doc = "probability that one bit of it is flipped",
     .lo = 0.0, .hi = 1.0},
    {.field = "delay_us", .key = "delay us", .alias = "delay_us", .doc = "extra delay for every datagram, in microseconds",
     .min = 0, .max = 60'000'000},
    {.field = "seed", .key = "seed", .alias = "seed",
     .doc = "seed of this channel's fault generator (same seed, same faults)", .min = 0},
};

constexpr FieldMeta kManifestRows[] = {
    {.field = "id", .key = "id", .alias = "id",
     .doc = "channel id (required); members with the same id share the channel, and its hash is on every "
            "datagram",
     .default_text = "(required)", .always = true},
    {.field = "name", .key = "name", .alias = "name",
     .doc = "this member's name; empty = generated (host-pid-n)"},
    {.field = "members", .key = "members", .alias = "members",
     .doc = "the group's members by name, or as \"name@ip:port\" for unicast fan-out; used by "
            "'reliability.ack from' and 'ack k'"},
    {.field = "heartbeat_us", .key = "heartbeat us", .alias = "heartbeat_us",
     .doc = "membership: how often each member announces itself, in microseconds (with reliability, flow "
            "control or group ordering)", .min = 1000, .max = 60'000'000},
    {.field = "failure_timeout_us", .key = "failure timeout us", .alias = "failure_timeout_us",
     .doc = "membership: a member not heard for this long is reported failed, in microseconds",
     .min = 2000, .max = 600'000'000},
    {.field = "max_members", .key = "max members", .alias = "max_members",
     .doc = "membership: the most members the group view holds, this one included; a member heard "
            "beyond it gets no slot and is reported (event member_refused)",
     .min = 2, .max = 65536},
    {.field = "multicast", .key = "multicast", .alias = "multicast",
     .doc = "true: one IP multicast send reaches every member; false: unicast fan-out to the addresses "
            "in 'members'"},
    {.field = "group", .key = "group", .alias = "group",
     .doc = "IPv4 multicast group (224.0.0.0/4); empty = 239.255.X.Y derived from the FNV-1a hash of 'id'",
     .default_text = "(derived from id)"},
    {.field = "port", .key = "port", .alias = "port", .doc = "UDP port of the group", .min = 1, .max = 65535},
    {.field = "interface", .key = "interface", .alias = "interface",
     .doc = "network interface to use; empty = the capability file's NIC, else loopback, so one host works "
            "with no setup"},
    {.field = "ttl", .key = "ttl", .alias = "ttl", .doc = "IP multicast TTL (1 = this subnet only)", .min = 0,
     .max = 255},
    {.field = "loopback", .key = "loopback", .alias = "loopback",
     .doc = "deliver to members on the same host (IP_MULTICAST_LOOP)"},
    {.field = "point_to_point_ordering", .key = "point-to-point ordering", .alias = "point_to_point_ordering",
     .doc = "each sender's messages are delivered in the order sent: drop-stale (true; the paper's rule) "
            "drops anything not newer than the last delivered, strict waits in a bounded buffer for gaps",
     .per_message = false},
    {.field = "ordering_window", .key = "ordering window", .alias = "ordering_window",
     .doc = "strict ordering: packets held per sender at most", .min = 1, .max = 65536},
    {.field = "ordering_hold_us", .key = "ordering hold us", .alias = "ordering_hold_us",
     .doc = "strict ordering: longest wait for a gap to fill, in microseconds", .min = 1, .max = 60'000'000},
    {.field = "group_ordering", .key = "group ordering", .alias = "group_ordering",
     .doc = "every member delivers every message in the same total order (a sequencer: a member, or the "
            "network's when the capability file declares one)"},
    {.field = "sequencer", .key = "sequencer", .alias = "sequencer",
     .doc = "group ordering: the member that sequences; empty = the alive member with the smallest name"},
    {.field = "ordered_messages", .key = "ordered messages", .alias = "ordered_messages",
     .doc = "all: every message is ordered (point-to-point and group ordering) unless sent with the "
            "per-message 'ordered: false'; flagged: only messages sent with 'ordered: true' are",
     .one_of = kReliableMessages},
    {.field = "reliability", .key = "reliability", .alias = "reliability",
     .doc = "acknowledged delivery with retransmission: true (ack from all members) or a map naming who "
            "must acknowledge",
     .default_text = "false", .per_message = true},
    {.field = "error_checking", .key = "error checking", .alias = "error_checking",
     .doc = "detect corrupted payloads (CRC32C); placed on the NIC when the capability file says it "
            "verifies checksums, else in software",
     .true_word = "crc32c", .per_message = true},
    {.field = "security", .key = "security", .alias = "security",
     .doc = "none; authenticate: every datagram carries an AEAD tag under the group key (origin and integrity, "
            "replays dropped, payload readable); encrypt: the payload is encrypted too (docs/security.md)",
     .one_of = kSecurityModes},
    {.field = "key_file", .key = "key file", .alias = "key_file",
     .doc = "security: the file holding the group keys (never the keys themselves); OpenOptions::key_file "
            "or the Python key_file argument may give it instead"},
    {.field = "pacing", .key = "pacing", .alias = "pacing",
     .doc = "smooth sending with a token bucket and/or coalesce small messages into fewer datagrams; true = "
            "coalesce for at most 100 us",
     .default_text = "false"},
    {.field = "flow_control", .key = "flow control", .alias = "flow_control",
     .doc = "do not send faster than the members can receive", .default_text = "false"},
    {.field = "congestion_control", .key = "congestion control", .alias = "congestion_control",
     .doc = "back off when the network is congested: none, aimd (Reno-like) or cubic, following the slowest "
            "acknowledging receiver (needs reliability), or a controller of a loaded module",
     .type = "none | aimd | cubic"},
    {.field = "lifetime", .key = "lifetime", .alias = "lifetime",
     .doc = "messages may have a lifetime (a deadline after which they are worth nothing, as DDS's "
            "LIFESPAN): an expired or forgotten message is no longer repaired or waited for, its outcome says "
            "so, and no receiver delivers it after its deadline; true = per-message lifetimes only",
     .default_text = "false"},
    {.field = "synchronicity", .key = "synchronicity", .alias = "synchronicity",
     .doc = "async: send() returns once the message is handed to the network; sync: once its guarantees "
            "are met"},
    {.field = "duplexity", .key = "duplexity", .alias = "duplexity",
     .doc = "full: send and receive; send-only; receive-only (half duplex is not supported)"},
    {.field = "max_message_bytes", .key = "max message bytes", .alias = "max_message_bytes",
     .doc = "largest message send() accepts; larger than one datagram means fragmentation (at most 64 MiB)",
     .min = 1, .max = 64LL * 1024 * 1024},
    {.field = "faults", .key = "faults", .alias = "faults",
     .doc = "fault injection for tests and experiments (seeded, per channel)", .default_text = "(none)"},
    {.field = "modules", .key = "modules", .alias = "modules",
     .doc = "modules this channel needs (by name); the program loads them from a verified repository",
     .default_text = "[]"},
    {.field = "stages", .key = "stages", .alias = "stages",
     .doc = "module stages by kind with their parameters, e.g. {fec.xor: {k: 8}}; each is placed by the layer "
            "its module declares", .default_text = "{}"},
};

constexpr FieldMeta kMessageRows[] = {
    {.field = "reliability", .key = "reliability", .alias = "reliability",
     .doc = "this message needs acknowledgments (as the channel's 'reliability' says who)", .per_message = true},
    {.field = "error_checking", .key = "error checking", .alias = "error_checking",
     .doc = "this message carries a CRC32C", .true_word = "crc32c", .per_message = true},
    {.field = "ordered", .key = "ordered", .alias = "ordered",
     .doc = "per message only: false opts this message out of the channel's ordering (point-to-point and "
            "group); true opts it in on a channel with 'ordered messages: flagged'",
     .per_message = true},
    {.field = "lifetime_us", .key = "lifetime us", .alias = "lifetime_us",
     .doc = "per message only: this message's lifetime in microseconds (needs 'lifetime' on the channel)",
     .min = 1, .max = 3'600'000'000, .per_message = true},
};

}  // namespace

template <>
struct Schema<ReliabilitySpec> {
  static std::span<const FieldMeta> fields() { return kReliabilityRows; }
  static constexpr std::string_view type = "bool or map";
  static bool shorthand(const Value& v, ReliabilitySpec& s) {
    if (!v.is_bool()) return false;
    s.enabled = v.as_bool();
    return true;
  }
  static void on_map(ReliabilitySpec& s) { s.enabled = true; }
  static std::optional<std::string> short_form(const ReliabilitySpec& s) {
    ReliabilitySpec plain;
    plain.enabled = s.enabled;
    if (s == plain) return s.enabled ? "true" : "false";
    return std::nullopt;
  }
};

template <>
struct Schema<PacingSpec> {
  static std::span<const FieldMeta> fields() { return kPacingRows; }
  static constexpr std::string_view type = "bool or map";
  static bool shorthand(const Value& v, PacingSpec& s) {
    if (!v.is_bool()) return false;
    s.enabled = v.as_bool();
    return true;
  }
  static void on_map(PacingSpec& s) { s.enabled = true; }
  static std::optional<std::string> short_form(const PacingSpec& s) {
    PacingSpec plain;
    plain.enabled = s.enabled;
    if (s == plain) return s.enabled ? "true" : "false";
    return std::nullopt;
  }
};

template <>
struct Schema<FlowControlSpec> {
  static std::span<const FieldMeta> fields() { return kFlowRows; }
  static constexpr std::string_view type = "bool or map";
  static bool shorthand(const Value& v, FlowControlSpec& s) {
    if (!v.is_bool()) return false;
    s.enabled = v.as_bool();
    return true;
  }
  static void on_map(FlowControlSpec& s) { s.enabled = true; }
  static std::optional<std::string> short_form(const FlowControlSpec& s) {
    FlowControlSpec plain;
    plain.enabled = s.enabled;
    if (s == plain) return s.enabled ? "true" : "false";
    return std::nullopt;
  }
};

template <>
struct Schema<LifetimeSpec> {
  static std::span<const FieldMeta> fields() { return kLifetimeRows; }
  static constexpr std::string_view type = "bool or map";
  static bool shorthand(const Value& v, LifetimeSpec& s) {
    if (!v.is_bool()) return false;
    s.enabled = v.as_bool();
    return true;
  }
  static void on_map(LifetimeSpec& s) { s.enabled = true; }
  static std::optional<std::string> short_form(const LifetimeSpec& s) {
    LifetimeSpec plain;
    plain.enabled = s.enabled;
    if (s == plain) return s.enabled ? "true" : "false";
    return std::nullopt;
  }
};

template <>
struct Schema<FaultSpec> {
  static std::span<const FieldMeta> fields() { return kFaultRows; }
  static constexpr std::string_view type = "map";
};

template <>
struct Schema<Manifest> {
  static std::span<const FieldMeta> fields() { return kManifestRows; }
  static constexpr std::string_view what = "a manifest";
};

template <>
struct Schema<MessageManifest> {
  static std::span<const FieldMeta> fields() { return kMessageRows; }
  static constexpr std::string_view what = "a message manifest";
};

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

bool parse_member(std::string_view text, MemberEntry& out) {
  const auto at = text.find('@');
  const std::string_view name = text.substr(0, at);
  if (name.empty()) return false;
  for (char c : name) {
    if (c == ' ' || c == '\t' || c == '\n' || c == ':' || c == ',') return false;
  }
  std::string endpoint;
  if (at != std::string_view::npos) {
    std::uint32_t addr = 0;
    std::uint16_t port = 0;
    if (!parse_ip_port(text.substr(at + 1), addr, port)) return false;
    endpoint = std::string(text.substr(at + 1));
  }
  out.name = std::string(name);
  out.endpoint = std::move(endpoint);
  return true;
}

std::string derived_group(std::string_view id) {
  const std::uint32_t h = wire::channel_hash(id.data(), id.size());
  return "239.255." + std::to_string((h >> 8) & 0xffu) + "." + std::to_string(h & 0xffu);
}

const FieldMeta& manifest_row(std::string_view field) {
  const FieldMeta* row = find_row(kManifestRows, field);
  static const FieldMeta kNone{.field = "?", .key = "?", .alias = "?", .doc = "?"};
  return row != nullptr ? *row : kNone;
}

std::vector<std::string> manifest_schema_problems() {
  std::vector<std::string> out;
  schema_problems<Manifest>("Manifest", out);
  schema_problems<ReliabilitySpec>("ReliabilitySpec", out);
  schema_problems<PacingSpec>("PacingSpec", out);
  schema_problems<FlowControlSpec>("FlowControlSpec", out);
  schema_problems<LifetimeSpec>("LifetimeSpec", out);
  schema_problems<FaultSpec>("FaultSpec", out);
  schema_problems<MessageManifest>("MessageManifest", out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Rules between properties (ranges and word lists come from the rows)
// ---------------------------------------------------------------------------------------

namespace {

void check_rules(const Manifest& m, Checker& c) {
  if (m.id.empty()) c.error("id", "missing required property 'id' (the channel id)");

  if (!m.group.empty()) {
    std::uint32_t addr = 0;
    if (!parse_ipv4(m.group, addr) || (addr >> 28) != 0xEu) {
      c.error("group", "'group' must be an IPv4 multicast address (224.0.0.0/4), got " + quote(m.group));
    }
  }

  std::vector<std::string> names;
  for (std::size_t i = 0; i < m.members.size(); ++i) {
    const std::string path = "members[" + std::to_string(i) + "]";
    MemberEntry e;
    if (!parse_member(m.members[i], e)) {
      c.error(path, "'" + path + "' must be a name or \"name@ip:port\", got " + quote(m.members[i]));
      continue;
    }
    if (std::find(names.begin(), names.end(), e.name) != names.end()) {
      c.error(path, "'members' lists '" + e.name + "' more than once");
      continue;
    }
    names.push_back(e.name);
  }

  // Unicast fan-out binds the address listed under this member's own name; without it the
  // socket would take the group's port on every interface, which may be another member's.
  if (!m.multicast && !names.empty() && std::find(names.begin(), names.end(), m.name) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    c.error(m.name.empty() ? "multicast" : "name",
            (m.name.empty() ? std::string("'name' is not set") : "'name' is '" + m.name + "'") +
                ", which is not in 'members' (" + list +
                "); with 'multicast: false' this member binds the address listed under its own name");
  }

  const ReliabilitySpec& r = m.reliability;
  const int ways = (r.ack_from.empty() ? 0 : 1) + (r.ack_fraction != 0.0 ? 1 : 0) + (r.ack_k != 0 ? 1 : 0);
  if (ways > 1) {
    c.error("reliability", "'reliability': give at most one of 'ack from', 'ack fraction' and 'ack k'");
  }
  if (!m.members.empty() && r.ack_k > static_cast<std::int64_t>(m.members.size())) {
    c.error("reliability.ack k", "'reliability.ack k' is " + std::to_string(r.ack_k) + " but 'members' lists only " +
                                     std::to_string(m.members.size()));
  }
  std::vector<std::string_view> seen;
  for (const auto& who : r.ack_from) {
    if (std::find(seen.begin(), seen.end(), who) != seen.end()) {
      c.error("reliability.ack from", "'reliability.ack from' names '" + who + "' more than once");
      continue;
    }
    seen.push_back(who);
    if (!m.members.empty() && std::find(names.begin(), names.end(), who) == names.end()) {
      c.error("reliability.ack from", "'reliability.ack from' names '" + who + "', which is not in 'members'");
    }
  }
  if (static_cast<std::int64_t>(names.size()) > m.max_members) {
    c.error("members", "'members' lists " + std::to_string(names.size()) + " members but 'max members' is " +
                           std::to_string(m.max_members) + "; raise 'max members' to hold them all");
  }
  if (m.failure_timeout_us <= m.heartbeat_us) {
    c.error("failure timeout us", "'failure timeout us' (" + std::to_string(m.failure_timeout_us) +
                                      ") must be longer than 'heartbeat us' (" + std::to_string(m.heartbeat_us) +
                                      "), or every member would be declared failed between two heartbeats");
  }
  if (!m.sequencer.empty() && !m.group_ordering) {
    c.error("sequencer", "'sequencer' is set but 'group ordering' is not");
  }
  if (m.ordered_messages == "flagged" && !m.group_ordering && m.point_to_point_ordering == OrderingMode::off) {
    c.error("ordered messages", "'ordered messages: flagged' lets messages opt in to the channel's ordering, "
                                "but the channel orders nothing; set 'group ordering' or 'point-to-point "
                                "ordering'");
  }
  if (!m.sequencer.empty() && !names.empty() && std::find(names.begin(), names.end(), m.sequencer) == names.end()) {
    c.error("sequencer", "'sequencer' names '" + m.sequencer + "', which is not in 'members'");
  }
  if (m.flow_control.enabled && !m.reliability.enabled) {
    c.error("flow control", "'flow control' governs acknowledged messages (credit comes back with the "
                            "acknowledgments); set 'reliability' too");
  }
  // A word outside the built-ins names a module's controller, so it needs 'modules'; the
  // compiler then checks it against the registry the modules were loaded into.
  if (m.modules.empty() && std::find(std::begin(kCongestionControls), std::end(kCongestionControls),
                                     m.congestion_control) == std::end(kCongestionControls)) {
    c.error("congestion control", "'congestion control' must be one of none, aimd, cubic, got " +
                                      quote(m.congestion_control));
  } else if (m.congestion_control != "none" && !m.reliability.enabled) {
    c.error("congestion control", "'congestion control: " + m.congestion_control +
                                      "' needs acknowledgments to measure the network; set 'reliability'");
  }
}

bool check_manifest(const Manifest& m, Checker& c) {
  const std::size_t before = c.diag.items().size();
  check_struct(m, c, "");
  // A value already refused by its own range or word list is not judged again by the rules
  // between properties ("'congestion control: reno' needs acknowledgments" says nothing useful).
  for (std::size_t i = before; i < c.diag.items().size(); ++i) c.already.insert(c.diag.items()[i].key);
  check_rules(m, c);
  return c.diag.items().size() == before;
}

std::string file_of(const Value& v, std::string_view fallback) {
  return v.where.file.empty() ? std::string(fallback) : v.where.file;
}

// Read a manifest (fresh or on top of `m`) and check it, with every problem located.
bool read_manifest(const Value& v, std::string_view file, Manifest& m, Diagnostics& diag, const Manifest* base) {
  Diagnostics found;
  Reader r(found, std::string(file));
  r.remember("", v);
  read_struct(v, m, r, "", "map");
  if (base != nullptr && m.id != base->id) {
    found.error(location_of(r.locations, "id", r.file), "id",
                "'id' cannot be changed by update(): it names the channel (open a new channel instead)");
  }
  if (v.is_map()) {
    Checker c(found, r.file, &r.locations);
    for (const auto& d : found.items()) c.already.insert(d.key);
    check_manifest(m, c);
  }
  append_in_file_order(diag, found);
  return found.ok();
}

}  // namespace

}  // namespace tmc::detail

namespace tmc {

using detail::Checker;

const std::vector<PropertyInfo>& manifest_properties() {
  static const std::vector<PropertyInfo> rows = [] {
    std::vector<PropertyInfo> out;
    detail::property_rows<Manifest>("", "", true, out);
    // Per-message-only properties (not part of a channel's manifest).
    std::vector<PropertyInfo> message;
    detail::property_rows<MessageManifest>("", "", true, message);
    for (auto& p : message) {
      const bool on_channel =
          std::any_of(out.begin(), out.end(), [&](const PropertyInfo& q) { return q.key == p.key; });
      if (!on_channel) out.push_back(p);
    }
    return out;
  }();
  return rows;
}

bool validate_manifest(const Manifest& m, Diagnostics& diag) {
  Checker c(diag, "<manifest>", nullptr);
  return detail::check_manifest(m, c);
}

bool manifest_from_value(const Value& map, Manifest& out, Diagnostics& diag) {
  Manifest m;
  if (!detail::read_manifest(map, detail::file_of(map, "<map>"), m, diag, nullptr)) return false;
  out = std::move(m);
  return true;
}

bool parse_manifest(std::string_view yaml_text, std::string_view filename, Manifest& out, Diagnostics& diag) {
  Value v;
  if (!detail::yaml_to_value(yaml_text, filename, v, diag)) return false;
  Manifest m;
  if (!detail::read_manifest(v, filename, m, diag, nullptr)) return false;
  out = std::move(m);
  return true;
}

bool load_manifest(const std::string& path, Manifest& out, Diagnostics& diag) {
  std::string text;
  if (!detail::read_text_file(path, text, diag)) return false;
  return parse_manifest(text, path, out, diag);
}

bool update_manifest(const Manifest& base, const Value& changes, Manifest& out, Diagnostics& diag) {
  Manifest m = base;
  if (!detail::read_manifest(changes, detail::file_of(changes, "<map>"), m, diag, &base)) return false;
  out = std::move(m);
  return true;
}

bool message_manifest_from_value(const Value& map, MessageManifest& out, Diagnostics& diag) {
  const std::size_t before = diag.items().size();
  detail::Reader r(diag, detail::file_of(map, "<map>"));
  r.explain_unknown = [](std::string_view key) -> std::optional<std::string> {
    const auto rows = detail::Schema<Manifest>::fields();
    const detail::FieldMeta* row = detail::match_row(rows, key, {});
    if (row == nullptr) return std::nullopt;
    std::string why = "'" + std::string(row->key) + "' cannot be set per message: it is a property of the channel";
    if (row->field == "point_to_point_ordering" || row->field == "group_ordering") {
      why += " (a message may opt out of it with 'ordered: false', or in with 'ordered: true' when the "
             "channel has 'ordered messages: flagged')";
    } else {
      why += " (change it for the channel with update())";
    }
    return why;
  };
  MessageManifest m;
  detail::read_struct(map, m, r, "", "map");
  if (diag.items().size() != before) return false;
  out = m;
  return true;
}

std::string to_yaml(const Manifest& m) {
  std::string out;
  detail::write_struct(m, out, 0);
  return out;
}

Manifest ManifestBuilder::build() const {
  Diagnostics diag;
  Checker c(diag, "<builder>", nullptr);
  if (!detail::check_manifest(m_, c)) throw Error(Status(Code::INVALID_MANIFEST, diag.to_string()));
  return m_;
}

}  // namespace tmc
