// Manifests: what a channel (or one message) must guarantee — the paper's Table 3.
//
// One schema, three spellings:
//   YAML      parse_manifest() / load_manifest()            keys as the paper writes them
//   C++       ManifestBuilder                               typed setters
//   map       manifest_from_value(Value)                    what the Python layer passes
// Keys are the paper's, with spaces ("group ordering", "error checking"); snake_case
// aliases ("group_ordering") are accepted everywhere. The one table of properties
// (name, type, default, doc) lives in src/runtime/manifest/ and is reflected with
// Boost.Hana over the plain structs below; parsing, printing, validation and
// docs/manifest.md all come from it.
//
// Every property of Table 3 has a place here, and each one the manifest asks for becomes
// a stage (or an offload) in the plan; what cannot be had on this network (multicast with
// no addresses to fall back to) fails with Code::NOT_AVAILABLE naming it — never silently
// ignored.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tmc/capabilities.hpp"
#include "tmc/diagnostics.hpp"
#include "tmc/plan.hpp"
#include "tmc/stage.hpp"
#include "tmc/status.hpp"

namespace tmc {

// ---------------------------------------------------------------------------------------
// Value: a small tree (null, bool, int, real, string, list, map) with source locations.
// YAML and Python dicts are converted to it; the manifest parser reads only Values.
// ---------------------------------------------------------------------------------------
class Value {
 public:
  using List = std::vector<Value>;
  using Map = std::vector<std::pair<std::string, Value>>;  ///< keeps the written order

  Value() = default;  // null
  Value(bool b) : v_(b) {}                                                // NOLINT
  Value(int i) : v_(static_cast<std::int64_t>(i)) {}                      // NOLINT
  Value(std::int64_t i) : v_(i) {}                                        // NOLINT
  Value(double d) : v_(d) {}                                              // NOLINT
  Value(const char* s) : v_(std::string(s)) {}                            // NOLINT
  Value(std::string s) : v_(std::move(s)) {}                              // NOLINT
  Value(List l) : v_(std::make_shared<List>(std::move(l))) {}             // NOLINT
  Value(Map m) : v_(std::make_shared<Map>(std::move(m))) {}               // NOLINT

  [[nodiscard]] bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  [[nodiscard]] bool is_bool() const { return std::holds_alternative<bool>(v_); }
  [[nodiscard]] bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  [[nodiscard]] bool is_real() const { return std::holds_alternative<double>(v_); }
  [[nodiscard]] bool is_string() const { return std::holds_alternative<std::string>(v_); }
  [[nodiscard]] bool is_list() const { return std::holds_alternative<std::shared_ptr<List>>(v_); }
  [[nodiscard]] bool is_map() const { return std::holds_alternative<std::shared_ptr<Map>>(v_); }
  [[nodiscard]] bool as_bool() const { return std::get<bool>(v_); }
  [[nodiscard]] std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  [[nodiscard]] double as_real() const { return is_int() ? static_cast<double>(as_int()) : std::get<double>(v_); }
  [[nodiscard]] const std::string& as_string() const { return std::get<std::string>(v_); }
  [[nodiscard]] const List& as_list() const { return *std::get<std::shared_ptr<List>>(v_); }
  [[nodiscard]] const Map& as_map() const { return *std::get<std::shared_ptr<Map>>(v_); }
  [[nodiscard]] std::string_view type_name() const;  ///< "null", "bool", "int", ...

  SourceLocation where;  ///< where it was written (YAML mark), if known

 private:
  std::variant<std::monostate, bool, std::int64_t, double, std::string, std::shared_ptr<List>, std::shared_ptr<Map>> v_;
};

// ---------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------

enum class OrderingMode : std::uint8_t {
  off,         ///< no point-to-point ordering
  drop_stale,  ///< the paper's rule: drop anything not newer than the last delivered (`true`)
  strict,      ///< hold out-of-order messages in a bounded buffer until the gap fills or times out
};

/// Reliability (paper §3.2): who must acknowledge. `enabled` with every other field left
/// default means "ack from all members".
struct ReliabilitySpec {
  bool enabled = false;
  std::vector<std::string> ack_from;  ///< named subset; empty = all members
  double ack_fraction = 0.0;          ///< (0, 1]: fraction of members; 0 = unused
  std::int64_t ack_k = 0;             ///< k of n; 0 = unused
  std::int64_t max_retries = 8;       ///< retransmissions before a message is reported failed
  /// "all": every message is acknowledged; "flagged": only messages sent with the
  /// per-message property (send(msg, {'reliability': true})).
  std::string messages = "all";
  std::int64_t ack_delay_us = 500;      ///< longest a receiver holds back an ack to coalesce (0 = ack at once)
  std::int64_t min_timeout_us = 2000;   ///< lower bound of the retransmission timeout
  /// "receiver": receivers acknowledge; "application": replies do (request/response): the
  /// sender's application calls Channel::acknowledge when a member's reply arrives,
  /// receivers send no acks and deliver a retransmitted message again.
  std::string acks = "receiver";
  std::int64_t nack_delay_us = 1000;    ///< longest a receiver waits before it NACKs a gap
  /// Send the newest unacknowledged message again when no ack came for about two round
  /// trips, so that a loss at the end of a burst is NACKed at once instead of waiting for
  /// the retransmission timeout.
  bool tail_probe = false;
  bool operator==(const ReliabilitySpec&) const = default;
};

/// Pacing (Table 3): a token bucket when rate_bps > 0, message coalescing when
/// coalesce_us > 0 or coalesce_turn. `pacing: true` alone means coalescing with a 100 us bound, no rate limit.
struct PacingSpec {
  bool enabled = false;
  std::int64_t rate_bps = 0;       ///< token-bucket rate in bits per second; 0 = no rate limit
  std::int64_t burst_bytes = 0;    ///< bucket depth; 0 = 64 KiB
  std::int64_t coalesce_us = 0;    ///< max delay to coalesce small messages into one datagram; 0 = 100 when no rate
  /// Coalesce what is sent within one turn of the event loop (e.g. the messages a handler
  /// sends for one input) and send it when the turn ends: no added wait (coalesce_us unused).
  bool coalesce_turn = false;
  bool operator==(const PacingSpec&) const = default;
};

struct FlowControlSpec {
  bool enabled = false;
  std::string policy = "min";      ///< min | max | quorum
  std::int64_t window_bytes = 4 * 1024 * 1024;  ///< each receiver's advertised window
  std::int64_t slow_timeout_us = 1'000'000;     ///< a receiver blocking longer is reported slow
  bool eject_slow = false;                      ///< a slow receiver no longer holds the sender back
  /// Receivers shrink their window with their application's load (receive queue fill,
  /// Channel::hint_load), so senders slow down before a receiver drops.
  bool load_hints = true;
  bool operator==(const FlowControlSpec&) const = default;
};

/// Lifetime (as DDS's LIFESPAN): a message not yet settled when its lifetime runs out is
/// worth nothing. The sender stops repairing it and reports it expired; a receiver never
/// delivers it after its deadline. `enabled` alone allows per-message lifetimes only.
struct LifetimeSpec {
  bool enabled = false;
  std::int64_t duration_us = 0;  ///< every message's lifetime; 0 = only messages that give their own
  /// Bound on the one-way delay plus the drift between the sender's and a receiver's clocks
  /// over a lifetime: a receiver takes it off the remaining lifetime a datagram carries.
  std::int64_t skew_us = 1000;
  bool operator==(const LifetimeSpec&) const = default;
};

/// Fault injection (tests and experiments): seeded, per channel instance.
struct FaultSpec {
  double loss = 0.0;       ///< probability a datagram is dropped
  double duplicate = 0.0;  ///< probability it is sent twice
  double reorder = 0.0;    ///< probability it is held back behind later ones
  double corrupt = 0.0;    ///< probability one byte is flipped
  std::int64_t delay_us = 0;  ///< added delay
  std::int64_t seed = 1;
  [[nodiscard]] bool any() const { return loss > 0 || duplicate > 0 || reorder > 0 || corrupt > 0 || delay_us > 0; }
  bool operator==(const FaultSpec&) const = default;
};

/// A stage the manifest asks for by kind (`stages:`), with its parameters in YAML spelling:
/// a module's stage, placed by its StageInfo::layer and validated against its ParamSpecs.
struct StageRequest {
  std::string kind;
  std::map<std::string, std::string, std::less<>> params;
  bool operator==(const StageRequest&) const = default;
};

struct Manifest {
  // identity and membership
  std::string id;                    ///< channel id (required); hashed into the wire header
  std::string name;                  ///< this member's name; empty = generated (host-pid-n)
  std::vector<std::string> members;  ///< names, or "name@ip:port" for unicast fan-out
  std::int64_t heartbeat_us = 100'000;        ///< membership: heartbeat interval
  std::int64_t failure_timeout_us = 1'000'000;  ///< membership: silent this long = failed
  std::int64_t max_members = 4096;            ///< membership: slots of the group view, self included
  // multicast (Table 3) and transport
  bool multicast = true;             ///< false: unicast fan-out to `members`
  std::string group;                 ///< IPv4 multicast group; empty = derived from id
  std::int64_t port = 4747;
  std::string interface;             ///< empty = loopback, so one host works with no setup
  std::int64_t ttl = 1;
  bool loopback = true;              ///< IP_MULTICAST_LOOP
  // ordering
  OrderingMode point_to_point_ordering = OrderingMode::off;
  std::int64_t ordering_window = 64;      ///< strict mode: packets held per sender at most
  std::int64_t ordering_hold_us = 50000;  ///< strict mode: longest wait for a gap to fill
  bool group_ordering = false;
  std::string sequencer;  ///< group ordering: the sequencing member's name; empty = the smallest alive name
  /// "all": every message is ordered (point-to-point and group) unless sent with the
  /// per-message 'ordered: false'; "flagged": only messages sent with 'ordered: true' are.
  std::string ordered_messages = "all";
  // reliability and error checking
  ReliabilitySpec reliability;
  bool error_checking = false;
  // security (docs/security.md)
  std::string security = "none";  ///< none | authenticate | encrypt
  std::string key_file;           ///< the group key file (never the key itself); OpenOptions may give it
  // pacing, flow and congestion control
  PacingSpec pacing;
  FlowControlSpec flow_control;
  std::string congestion_control = "none";  ///< none | aimd | cubic
  LifetimeSpec lifetime;                    ///< message lifetime (deadline) and forgetting
  // API shape
  Synchronicity synchronicity = Synchronicity::async;
  Duplexity duplexity = Duplexity::full;
  // size and testing
  std::int64_t max_message_bytes = 16 * 1024 * 1024;
  FaultSpec faults;
  // modules (libTMC_MM)
  std::vector<std::string> modules;   ///< modules the channel needs; they must be loaded
  std::vector<StageRequest> stages;   ///< stages requested by kind, in the order written
  bool operator==(const Manifest&) const = default;
};

/// The properties one message may set for itself (send(msg, {...})). Unset = the channel's.
struct MessageManifest {
  std::optional<bool> reliability;
  std::optional<bool> error_checking;
  std::optional<bool> ordered;  ///< false: opt out of the channel's ordering; true: opt in ('ordered messages: flagged')
  std::optional<std::int64_t> lifetime_us;  ///< this message's lifetime (needs 'lifetime' on the channel)
  bool operator==(const MessageManifest&) const = default;
};

/// One row of the property table, for docs, `tmc properties` and the Python layer.
struct PropertyInfo {
  std::string key;          ///< paper spelling, e.g. "group ordering"
  std::string alias;        ///< snake_case, e.g. "group_ordering"
  std::string type;         ///< "bool", "int", "string", "list of strings", "map", ...
  std::string default_value;
  std::string doc;
  bool per_message = false;  ///< may appear in a MessageManifest
  bool available = true;     ///< false: schema only; compile() refuses it for now
};
const std::vector<PropertyInfo>& manifest_properties();

// --- parsing (every problem reported, with file:line where there is one) ----------------
bool parse_manifest(std::string_view yaml_text, std::string_view filename, Manifest& out, Diagnostics& diag);
bool load_manifest(const std::string& path, Manifest& out, Diagnostics& diag);
bool manifest_from_value(const Value& map, Manifest& out, Diagnostics& diag);
bool message_manifest_from_value(const Value& map, MessageManifest& out, Diagnostics& diag);
/// Apply `changes` (a partial map, as update() receives) on top of `base`.
bool update_manifest(const Manifest& base, const Value& changes, Manifest& out, Diagnostics& diag);
/// YAML text that parses back to the same manifest.
std::string to_yaml(const Manifest& m);

/// Typed builder: ManifestBuilder("2PC").group("239.0.0.2").group_ordering(true).build()
class ManifestBuilder {
 public:
  explicit ManifestBuilder(std::string id) { m_.id = std::move(id); }
  ManifestBuilder& name(std::string v) { m_.name = std::move(v); return *this; }
  ManifestBuilder& members(std::vector<std::string> v) { m_.members = std::move(v); return *this; }
  ManifestBuilder& multicast(bool v) { m_.multicast = v; return *this; }
  ManifestBuilder& group(std::string v) { m_.group = std::move(v); return *this; }
  ManifestBuilder& port(std::int64_t v) { m_.port = v; return *this; }
  ManifestBuilder& interface(std::string v) { m_.interface = std::move(v); return *this; }
  ManifestBuilder& ttl(std::int64_t v) { m_.ttl = v; return *this; }
  ManifestBuilder& loopback(bool v) { m_.loopback = v; return *this; }
  ManifestBuilder& point_to_point_ordering(OrderingMode v) { m_.point_to_point_ordering = v; return *this; }
  ManifestBuilder& group_ordering(bool v) { m_.group_ordering = v; return *this; }
  ManifestBuilder& reliability(ReliabilitySpec v) { m_.reliability = std::move(v); return *this; }
  ManifestBuilder& error_checking(bool v) { m_.error_checking = v; return *this; }
  ManifestBuilder& security(std::string v) { m_.security = std::move(v); return *this; }
  ManifestBuilder& key_file(std::string v) { m_.key_file = std::move(v); return *this; }
  ManifestBuilder& synchronicity(Synchronicity v) { m_.synchronicity = v; return *this; }
  ManifestBuilder& duplexity(Duplexity v) { m_.duplexity = v; return *this; }
  ManifestBuilder& max_message_bytes(std::int64_t v) { m_.max_message_bytes = v; return *this; }
  ManifestBuilder& faults(FaultSpec v) { m_.faults = v; return *this; }
  /// Validates like the parsers do; throws tmc::Error(INVALID_MANIFEST) listing every problem.
  [[nodiscard]] Manifest build() const;

 private:
  Manifest m_;
};

/// Check a manifest's values (ranges, addresses, combinations). Parsers call it too.
bool validate_manifest(const Manifest& m, Diagnostics& diag);

// --- the compiler --------------------------------------------------------------------
/// manifest + capabilities + registry -> plan. Fails with INVALID_MANIFEST (listing every
/// problem) or NOT_AVAILABLE (naming what this network cannot provide).
Status compile(const Manifest& m, const Capabilities& caps, const Registry& registry, Plan& out);

}  // namespace tmc
