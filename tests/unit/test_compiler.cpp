// The compiler: rules, canonical order, placement, transport sizing, refusals.
#include <doctest/doctest.h>

#include <functional>

#include "plan_test_support.hpp"
#include "tmc/manifest.hpp"
#include "tmc/wire.hpp"

using namespace tmc;
using tmc::test::planning_registry;

namespace {

Manifest manifest(const std::string& yaml) {
  Manifest m;
  Diagnostics d;
  const bool ok = parse_manifest(yaml, "m.yaml", m, d);
  INFO(d.to_string());
  REQUIRE(ok);
  return m;
}

Plan plan_of(const Manifest& m, const Capabilities& caps = Capabilities::defaults()) {
  Plan p;
  const Status s = compile(m, caps, planning_registry(), p);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  return p;
}

Status refusal(const Manifest& m, const Capabilities& caps = Capabilities::defaults(),
               const Registry& r = planning_registry()) {
  Plan p;
  const Status s = compile(m, caps, r, p);
  CHECK_FALSE(s.is_ok());
  return s;
}

std::vector<std::string> kinds(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.stages) out.push_back(s.kind);
  return out;
}

bool has_note(const Plan& p, std::string_view text) {
  for (const auto& n : p.notes) {
    if (n.find(text) != std::string::npos) return true;
  }
  return false;
}

Capabilities offload_caps() {
  Capabilities c = Capabilities::defaults();
  c.nic.checksum_rx = true;
  c.nic.checksum_tx = true;
  return c;
}

}  // namespace

TEST_CASE("best effort: no stages, zero extension bytes") {
  // 'max message bytes' that fits one datagram (1448 bytes of payload) needs no fragmentation.
  const Plan p = plan_of(manifest("id: t\ngroup: 239.1.2.3\nport: 5000\nmax message bytes: 1448\n"));
  CHECK(p.stages.empty());
  CHECK(p.channel_id == "t");
  CHECK(p.channel_hash == wire::channel_hash("t", 1));
  CHECK(p.transport.group == "239.1.2.3");
  CHECK(p.transport.port == 5000);
  CHECK(p.transport.multicast);
  CHECK(p.transport.udp_checksum);
  CHECK(p.transport.mtu_bytes == 1500);
  CHECK(p.transport.max_payload_bytes == 1500 - 20 - 8 - 24);
  CHECK(has_note(p, "congestion control: none (not requested)"));
  CHECK(has_note(p, "error checking: not requested"));
  CHECK(has_note(p, "fragmentation: not needed: 'max message bytes' (1448) fits one datagram"));
  CHECK(has_note(p, "reliability: not requested"));
}

TEST_CASE("fragmentation: placed whenever 'max message bytes' exceeds one datagram") {
  // The default (16 MiB) does not fit: best effort is fragmentation alone.
  const Plan p = plan_of(manifest("id: t\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"fragment.split"});
  CHECK(p.stages[0].placement == Placement::software);
  CHECK(p.stages[0].params == std::map<std::string, std::string, std::less<>>{
                                  {"fragment_bytes", std::to_string(1448 - 14)},
                                  {"max_message_bytes", "16777216"},
                                  {"reassembly_timeout_us", "2000000"},
                                  {"max_reassembly_bytes", "67108864"}});
  CHECK(p.stages[0].reason.rfind("'max message bytes' (16777216) exceeds one datagram's payload (1448 bytes)", 0) ==
        0);
  CHECK(p.stages[0].reason.find("dropped whole") != std::string::npos);
  // Fragments carry their own extension inside the datagram payload: the room stays the same.
  CHECK(p.transport.max_payload_bytes == 1448);
  CHECK_FALSE(has_note(p, "fragmentation: not needed"));

  // One byte over the room is enough to need it.
  CHECK(kinds(plan_of(manifest("id: t\nmax message bytes: 1449\n"))) == std::vector<std::string>{"fragment.split"});
  CHECK(plan_of(manifest("id: t\nmax message bytes: 1448\n")).stages.empty());

  // The room is what is left after every extension: with sequencing and a software checksum
  // 1448 - 10 - 4 = 1434 bytes fit, 1435 do not.
  const char* stack = "id: t\npoint-to-point ordering: true\nerror checking: true\n";
  CHECK(kinds(plan_of(manifest(std::string(stack) + "max message bytes: 1434\n"))) ==
        std::vector<std::string>{"ordering.fifo", "ordering.seq", "checksum.crc32c"});
  const Plan big = plan_of(manifest(std::string(stack) + "max message bytes: 1435\n"));
  REQUIRE(kinds(big) == std::vector<std::string>{"ordering.fifo", "ordering.seq", "fragment.split", "checksum.crc32c"});
  CHECK(big.stages[2].params.at("fragment_bytes") == std::to_string(1434 - 14));

  // With reliability every fragment is repaired, so reassembly may wait longer.
  const Plan rel = plan_of(manifest("id: t\nreliability: true\n"));
  REQUIRE(rel.stages.size() >= 2);
  CHECK(rel.stages[0].kind == "fragment.split");
  CHECK(rel.stages[0].params.at("reassembly_timeout_us") == "30000000");
  CHECK(rel.stages[0].params.at("fragment_bytes") == std::to_string(1448 - 10 - 14));
  CHECK(rel.stages[0].reason.find("every fragment is repaired") != std::string::npos);
}

TEST_CASE("point-to-point ordering needs per-sender sequencing (rule)") {
  const Plan p = plan_of(manifest("id: t\npoint-to-point ordering: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"ordering.fifo", "ordering.seq"});
  CHECK(p.stages[0].params == std::map<std::string, std::string, std::less<>>{
                                  {"mode", "drop-stale"}, {"window", "64"}, {"hold_us", "50000"}});
  CHECK(p.stages[1].params.empty());
  CHECK(p.stages[1].reason.rfind("rule: ordering needs per-sender sequencing", 0) == 0);
  CHECK(p.transport.max_payload_bytes == 1448 - 10);

  const Plan s = plan_of(manifest("id: t\npoint-to-point ordering: strict\nordering window: 8\nordering hold us: 900\n"));
  CHECK(s.stages[0].params.at("mode") == "strict");
  CHECK(s.stages[0].params.at("window") == "8");
  CHECK(s.stages[0].params.at("hold_us") == "900");
}

TEST_CASE("error checking: NIC offload when it checks both ways (host A), else software (host B)") {
  const Manifest m = manifest("id: t\nerror checking: true\nmax message bytes: 1000\n");
  const Plan a = plan_of(m, offload_caps());
  REQUIRE(a.stages.size() == 1);
  CHECK(a.stages[0].kind == "checksum.crc32c");
  CHECK(a.stages[0].placement == Placement::offload);
  CHECK(a.stages[0].offload == "nic.checksum");
  CHECK(a.stages[0].reason.find("host A") != std::string::npos);
  CHECK(a.software_kinds().empty());
  CHECK(a.transport.udp_checksum);
  CHECK(a.transport.max_payload_bytes == 1448);

  const Plan b = plan_of(m);
  CHECK(b.stages[0].placement == Placement::software);
  CHECK(b.stages[0].reason.find("host B") != std::string::npos);
  CHECK(b.transport.max_payload_bytes == 1448 - 4);

  Capabilities tx_only = Capabilities::defaults();
  tx_only.nic.checksum_tx = true;
  CHECK(plan_of(m, tx_only).stages[0].placement == Placement::software);

  // Not requested: absent, zero cost.
  CHECK(plan_of(manifest("id: t\nmax message bytes: 1000\n"), offload_caps()).stages.empty());
}

TEST_CASE("canonical order: ordering, sequencing, checksum, faults at the bottom") {
  const Plan p = plan_of(manifest("id: t\nfaults: {loss: 0.5, seed: 3}\nerror checking: true\npoint-to-point ordering: "
                                  "strict\nmax message bytes: 1000\n"));
  CHECK(kinds(p) == std::vector<std::string>{"ordering.fifo", "ordering.seq", "checksum.crc32c", "faults.inject"});
  CHECK(p.stages[3].params == std::map<std::string, std::string, std::less<>>{{"loss", "0.5"},
                                                                              {"duplicate", "0"},
                                                                              {"reorder", "0"},
                                                                              {"corrupt", "0"},
                                                                              {"delay_us", "0"},
                                                                              {"seed", "3"}});
  CHECK(p.transport.max_payload_bytes == 1448 - 10 - 4);
  // Faults with every probability zero and no delay ask for nothing.
  CHECK(plan_of(manifest("id: t\nfaults: {seed: 9}\nmax message bytes: 1000\n")).stages.empty());
}

using StageParams = std::map<std::string, std::string, std::less<>>;

namespace {

const PlannedStage& stage_of(const Plan& p, std::string_view kind) {
  for (const auto& s : p.stages) {
    if (s.kind == kind) return s;
  }
  FAIL("the plan has no stage " << kind);
  return p.stages.front();
}

bool starts_with(const std::string& text, std::string_view prefix) { return text.rfind(prefix, 0) == 0; }
bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("every property of Table 3 yields its stage, in the canonical order") {
  const Manifest m = manifest(
      "id: t\nmembers: [a, b, c]\ngroup ordering: true\npoint-to-point ordering: strict\nreliability: true\n"
      "flow control: true\ncongestion control: cubic\npacing: {rate bps: 1000000, coalesce us: 200}\n"
      "error checking: true\nfaults: {loss: 0.1}\n");
  const Plan p = plan_of(m);
  CHECK(kinds(p) == std::vector<std::string>{"ordering.group", "ordering.fifo", "ordering.seq", "fragment.split",
                                             "pacing.coalesce", "reliability.arq", "flow.credit", "congestion.window",
                                             "pacing.bucket", "membership.heartbeat", "checksum.crc32c",
                                             "faults.inject"});
  for (const auto& s : p.stages) {
    CAPTURE(s.kind);
    CHECK(s.placement == Placement::software);
    CHECK(s.reason.size() > 40);
  }
  // Sequencing (10), the reliable sequence (10) and the checksum trailer (4) on every datagram.
  CHECK(p.transport.max_payload_bytes == 1448 - 10 - 10 - 4);
  CHECK_FALSE(has_note(p, "reliability: not requested"));
  CHECK_FALSE(has_note(p, "congestion control: none"));
  // Every stage is built: the real registry accepts the whole plan with these parameters.
  Plan real;
  const Status s = compile(m, Capabilities::defaults(), Registry::builtin(), real);
  INFO(s.to_string());
  CHECK(s.is_ok());
}

TEST_CASE("reliability: ack, nack delay and min timeout us reach reliability.arq; their defaults are the stage's") {
  auto arq_of = [](const Plan& p) -> const StageParams& {
    for (const PlannedStage& s : p.stages) {
      if (s.kind == "reliability.arq") return s.params;
    }
    FAIL("no reliability.arq in the plan");
    return p.stages.front().params;
  };
  const Plan plain = plan_of(manifest("id: t\nreliability: true\n"));
  CHECK(arq_of(plain).count("ack_delay_us") == 0);
  CHECK(arq_of(plain).count("rto_min_us") == 0);
  CHECK(arq_of(plain).count("nack_delay_us") == 0);
  const Plan tuned =
      plan_of(manifest("id: t\nreliability: {ack delay us: 0, min timeout us: 20000, nack delay us: 6000}\n"));
  CHECK(arq_of(tuned).at("ack_delay_us") == "0");
  CHECK(arq_of(tuned).at("rto_min_us") == "20000");
  CHECK(arq_of(tuned).at("nack_delay_us") == "6000");
  // The manifest's defaults are the stage's, so leaving them out changes nothing.
  const StageInfo* info = Registry::builtin().find("reliability.arq");
  REQUIRE(info != nullptr);
  const ReliabilitySpec defaults;
  for (const ParamSpec& p : info->params) {
    if (p.name == "ack_delay_us") CHECK(p.default_value == std::to_string(defaults.ack_delay_us));
    if (p.name == "rto_min_us") CHECK(p.default_value == std::to_string(defaults.min_timeout_us));
    if (p.name == "nack_delay_us") CHECK(p.default_value == std::to_string(defaults.nack_delay_us));
  }
  Manifest bad;
  Diagnostics d;
  CHECK_FALSE(parse_manifest("id: t\nreliability: {min timeout us: 0}\n", "m.yaml", bad, d));
  CHECK_FALSE(parse_manifest("id: t\nreliability: {ack delay us: 2000000}\n", "m.yaml", bad, d));
}

TEST_CASE("reliability: acks application reaches reliability.arq; the default (receiver) adds nothing") {
  auto arq_of = [](const Plan& p) -> const StageParams& {
    for (const PlannedStage& s : p.stages) {
      if (s.kind == "reliability.arq") return s.params;
    }
    FAIL("no reliability.arq in the plan");
    return p.stages.front().params;
  };
  CHECK(arq_of(plan_of(manifest("id: t\nreliability: true\n"))).count("acks") == 0);
  CHECK(arq_of(plan_of(manifest("id: t\nreliability: {acks: receiver}\n"))).count("acks") == 0);
  const Plan rr = plan_of(manifest("id: t\nreliability: {messages: flagged, acks: application}\n"));
  CHECK(arq_of(rr).at("acks") == "application");
  const StageInfo* info = Registry::builtin().find("reliability.arq");
  REQUIRE(info != nullptr);
  for (const ParamSpec& p : info->params) {
    if (p.name == "acks") CHECK(p.default_value == ReliabilitySpec{}.acks);
  }
  Manifest bad;
  Diagnostics d;
  CHECK_FALSE(parse_manifest("id: t\nreliability: {acks: sender}\n", "m.yaml", bad, d));
}

TEST_CASE("reliability: acknowledgments from all, named members, a fraction or k; max retries") {
  const Plan all = plan_of(manifest("id: t\nreliability: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(all) == std::vector<std::string>{"reliability.arq", "membership.heartbeat"});
  const PlannedStage& arq = all.stages[0];
  CHECK(arq.params == StageParams{{"messages", "all"},
                             {"ack_from", ""},
                             {"ack_fraction", "0"},
                             {"ack_k", "0"},
                             {"max_retries", "8"}});
  CHECK(starts_with(arq.reason, "'reliability' asks for acknowledgments from every receiving member of the current "
                                "view for every message"));
  CHECK(contains(arq.reason, "after 8 retries"));
  CHECK(all.transport.max_payload_bytes == 1448 - 10);  // the reliable sequence extension
  CHECK_FALSE(has_note(all, "reliability: not requested"));

  const Plan from = plan_of(manifest("id: t\nmembers: [a, b, c]\nreliability: {ack from: [a, c], max retries: 3}\n"));
  const PlannedStage& f = stage_of(from, "reliability.arq");
  CHECK(f.params.at("messages") == "all");
  CHECK(f.params.at("ack_from") == "a,c");
  CHECK(f.params.at("max_retries") == "3");
  CHECK(contains(f.reason, "acknowledgments from the named members a,c"));
  CHECK(contains(f.reason, "after 3 retries"));

  const PlannedStage& frac = stage_of(plan_of(manifest("id: t\nreliability: {ack fraction: 0.5}\n")),
                                      "reliability.arq");
  CHECK(frac.params.at("ack_fraction") == "0.5");
  CHECK(frac.params.at("ack_from").empty());
  CHECK(frac.params.at("ack_k") == "0");
  CHECK(contains(frac.reason, "acknowledgments from a fraction 0.5 of the members"));

  const PlannedStage& k = stage_of(plan_of(manifest("id: t\nmembers: [a, b, c]\nreliability: {ack k: 2}\n")),
                                   "reliability.arq");
  CHECK(k.params.at("ack_k") == "2");
  CHECK(k.params.at("ack_fraction") == "0");
  CHECK(contains(k.reason, "acknowledgments from 2 of the members"));

  // Disabled with its settings kept is not a request.
  const Plan off = plan_of(manifest("id: t\nreliability: {enabled: false, ack k: 2}\nmax message bytes: 1000\n"));
  CHECK(off.stages.empty());
  CHECK(has_note(off, "reliability: not requested"));
}

TEST_CASE("point-to-point ordering with reliability waits for repairs (strict, the reliability window)") {
  // drop-stale would discard the repaired messages reliability promised: strict instead, with
  // a window and a hold no smaller than the reliability window and its retry budget.
  const Plan p = plan_of(manifest("id: t\npoint-to-point ordering: true\nreliability: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"ordering.fifo", "ordering.seq", "reliability.arq",
                                               "membership.heartbeat"});
  CHECK(p.stages[0].params == StageParams{{"mode", "strict"}, {"window", "4096"}, {"hold_us", "10000000"}});
  CHECK(starts_with(p.stages[0].reason, "'point-to-point ordering' with 'reliability': each sender's messages are "
                                        "delivered in the order sent, and a gap waits for its repair (strict mode; "
                                        "drop-stale would discard repaired messages that reliability promised"));
  // Larger settings are kept.
  const Plan big = plan_of(manifest("id: t\npoint-to-point ordering: strict\nordering window: 8192\n"
                                    "ordering hold us: 20000000\nreliability: true\n"));
  CHECK(stage_of(big, "ordering.fifo").params ==
        StageParams{{"mode", "strict"}, {"window", "8192"}, {"hold_us", "20000000"}});
  // Only flagged messages are reliable: the others may be lost, so ordering is as asked.
  const Plan flagged = plan_of(manifest("id: t\npoint-to-point ordering: true\nreliability: {messages: flagged}\n"));
  CHECK(stage_of(flagged, "ordering.fifo").params ==
        StageParams{{"mode", "drop-stale"}, {"window", "64"}, {"hold_us", "50000"}});
}

TEST_CASE("reliability: per message only ('messages: flagged')") {
  const Plan p = plan_of(manifest("id: t\nreliability: {messages: flagged, ack k: 1}\nmax message bytes: 1000\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"reliability.arq", "membership.heartbeat"});
  CHECK(p.stages[0].params.at("messages") == "flagged");
  CHECK(p.stages[0].params.at("ack_k") == "1");
  CHECK(starts_with(p.stages[0].reason, "'reliability: {messages: flagged}': only messages sent with the per-message "
                                        "'reliability: true' are acknowledged, by 1 of the members"));
  // A flagged message may need the extension, so the room is sized for it.
  CHECK(p.transport.max_payload_bytes == 1448 - 10);
  CHECK_FALSE(has_note(p, "reliability: not requested"));
  // Without full reliability a fragment may be lost for good: reassembly gives up sooner.
  const Plan big = plan_of(manifest("id: t\nreliability: {messages: flagged}\n"));
  CHECK(stage_of(big, "fragment.split").params.at("reassembly_timeout_us") == "2000000");
}

TEST_CASE("membership: heartbeats come with reliability, flow control or group ordering") {
  const Plan p = plan_of(manifest("id: t\nreliability: true\nheartbeat us: 20000\nfailure timeout us: 150000\n"
                                  "max message bytes: 1000\n"));
  const PlannedStage& hb = stage_of(p, "membership.heartbeat");
  CHECK(hb.params == StageParams{{"interval_us", "20000"}, {"timeout_us", "150000"}, {"receives", "true"}});
  CHECK(hb.reason ==
        "rule: reliability needs the membership view: every member announces itself every 20 ms and one silent for "
        "150 ms is reported failed.");
  CHECK(stage_of(plan_of(manifest("id: t\nreliability: true\nduplexity: send-only\n")), "membership.heartbeat")
            .params.at("receives") == "false");
  CHECK(stage_of(plan_of(manifest("id: t\nreliability: true\n")), "membership.heartbeat").params.at("interval_us") ==
        "100000");
  // Nothing that needs the view: no heartbeats.
  const Plan none = plan_of(manifest("id: t\npoint-to-point ordering: true\nerror checking: true\n"));
  for (const auto& s : none.stages) CHECK(s.kind != "membership.heartbeat");
}

TEST_CASE("group ordering: sequenced by a member, or by the network's sequencer") {
  // Alone, group ordering brings sequencing, per-message reliability (flagged) and membership.
  const Plan p = plan_of(manifest("id: t\ngroup ordering: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"ordering.group", "ordering.seq", "reliability.arq",
                                               "membership.heartbeat"});
  CHECK(p.stages[0].params ==
        StageParams{{"sequencer", ""}, {"network_sequencer", ""}, {"reliable", "false"}, {"hold_us", "50000"}});
  CHECK(starts_with(p.stages[0].reason, "'group ordering' is sequenced by a member (the alive member with the smallest "
                                        "name, replaced through the membership view when it fails)"));
  CHECK(contains(p.stages[0].reason, "a gap left open for 50 ms is skipped and reported (gap_skipped)"));
  CHECK(p.stages[2].params.at("messages") == "flagged");
  CHECK(starts_with(p.stages[2].reason, "rule: 'group ordering' channels accept the per-message 'reliability: true'"));
  CHECK(p.transport.max_payload_bytes == 1448 - 10 - 10);
  CHECK_FALSE(has_note(p, "reliability: not requested"));

  // A named sequencer, with reliability: no gaps.
  const Plan named = plan_of(manifest("id: t\nmembers: [a, b]\ngroup ordering: true\nsequencer: b\nreliability: true\n"
                                      "ordering hold us: 7000\n"));
  const PlannedStage& g = stage_of(named, "ordering.group");
  CHECK(g.params == StageParams{{"sequencer", "b"}, {"network_sequencer", ""}, {"reliable", "true"}, {"hold_us", "7000"}});
  CHECK(contains(g.reason, "sequenced by a member ('b',"));
  CHECK(contains(g.reason, "with reliability every member delivers the same sequence, without gaps"));
  CHECK(stage_of(named, "reliability.arq").params.at("messages") == "all");

  // The capabilities declare an in-network sequencer: it stamps the order (group_seq, 14 bytes).
  Capabilities seq = Capabilities::defaults();
  seq.network.sequencer = "10.0.0.254:4800";
  const Plan net = plan_of(manifest("id: t\ngroup ordering: true\nmax message bytes: 1000\n"), seq);
  const PlannedStage& n = stage_of(net, "ordering.group");
  CHECK(n.params.at("network_sequencer") == "10.0.0.254:4800");
  CHECK(starts_with(n.reason, "'group ordering' is sequenced by the network: the capabilities declare an in-network "
                              "sequencer at 10.0.0.254:4800"));
  CHECK(net.transport.max_payload_bytes == 1448 - 10 - 10 - 14);
  CHECK_FALSE(has_note(net, "not used"));
  // Declared but not asked for: a note, no stage.
  const Plan unused = plan_of(manifest("id: t\nmax message bytes: 1000\n"), seq);
  CHECK(unused.stages.empty());
  CHECK(has_note(unused, "network sequencer 10.0.0.254:4800: not used (group ordering not requested)"));
}

TEST_CASE("pacing: a token bucket for a rate, coalescing for small messages") {
  // `pacing: true` is coalescing for at most 100 us, no rate limit.
  const Plan t = plan_of(manifest("id: t\npacing: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(t) == std::vector<std::string>{"pacing.coalesce"});
  // The batch extension (2 + 3 bytes: count and record format) comes off the datagram's room.
  CHECK(t.stages[0].params ==
        StageParams{{"max_bytes", std::to_string(1448 - 5)}, {"delay_us", "100"}, {"records", "compact"}});
  CHECK(starts_with(t.stages[0].reason, "'pacing' trades latency for throughput: small messages wait at most 100 us "
                                        "to share one datagram (up to 1443 bytes of them)"));
  CHECK(t.transport.max_payload_bytes == 1448);

  // A rate alone: a token bucket with the default burst, no coalescing.
  const Plan r = plan_of(manifest("id: t\npacing: {rate bps: 1000000}\nmax message bytes: 1000\n"));
  REQUIRE(kinds(r) == std::vector<std::string>{"pacing.bucket"});
  CHECK(r.stages[0].params == StageParams{{"rate_bps", "1000000"}, {"burst_bytes", "65536"}});
  CHECK(r.stages[0].reason ==
        "'pacing' asks for at most 1000000 bit/s: a token bucket (burst 65536 bytes) spreads the datagrams.");

  // Both, with the burst and the delay given; a software checksum trailer shrinks the batch.
  const Plan both = plan_of(
      manifest("id: t\npacing: {rate bps: 8000000, burst bytes: 3000, coalesce us: 2000}\nerror checking: true\n"
               "max message bytes: 1000\n"));
  REQUIRE(kinds(both) == std::vector<std::string>{"pacing.coalesce", "pacing.bucket", "checksum.crc32c"});
  CHECK(both.stages[1].params == StageParams{{"rate_bps", "8000000"}, {"burst_bytes", "3000"}});
  CHECK(both.stages[0].params ==
        StageParams{{"max_bytes", std::to_string(1448 - 5 - 4)}, {"delay_us", "2000"}, {"records", "compact"}});
  CHECK(contains(both.stages[0].reason, "wait at most 2 ms"));

  CHECK(plan_of(manifest("id: t\npacing: {enabled: false, rate bps: 5}\nmax message bytes: 1000\n")).stages.empty());
}

TEST_CASE("flow control and congestion control: their stages below reliability") {
  const Plan p = plan_of(manifest("id: t\nreliability: true\nflow control: true\nmax message bytes: 1000\n"));
  REQUIRE(kinds(p) == std::vector<std::string>{"reliability.arq", "flow.credit", "membership.heartbeat"});
  CHECK(p.stages[1].params == StageParams{{"policy", "min"},
                                     {"window_bytes", "4194304"},
                                     {"slow_timeout_us", "1000000"},
                                     {"eject_slow", "false"}});
  CHECK(p.stages[1].reason ==
        "'flow control' (policy min): receivers advertise 4194304 bytes of credit; the sender waits for the slowest "
        "receiver; one that blocks it for 1 s is reported.");

  const Plan q = plan_of(manifest("id: t\nreliability: true\nflow control: {policy: quorum, window bytes: 65536, slow "
                                  "timeout us: 5000, eject slow: true}\n"));
  const PlannedStage& fq = stage_of(q, "flow.credit");
  CHECK(fq.params == StageParams{{"policy", "quorum"},
                            {"window_bytes", "65536"},
                            {"slow_timeout_us", "5000"},
                            {"eject_slow", "true"}});
  CHECK(contains(fq.reason, "the sender waits for the majority of receivers; one that blocks it for 5 ms is reported "
                            "and left behind."));
  CHECK(contains(stage_of(plan_of(manifest("id: t\nreliability: true\nflow control: {policy: max}\n")), "flow.credit")
                     .reason,
                 "fastest receiver"));

  for (const char* algorithm : {"aimd", "cubic"}) {
    CAPTURE(algorithm);
    const Plan c = plan_of(manifest(std::string("id: t\nreliability: true\ncongestion control: ") + algorithm +
                                    "\nmax message bytes: 1000\n"));
    REQUIRE(kinds(c) == std::vector<std::string>{"reliability.arq", "congestion.window", "membership.heartbeat"});
    CHECK(c.stages[1].params == StageParams{{"algorithm", algorithm}});
    CHECK(starts_with(c.stages[1].reason, std::string("'congestion control: ") + algorithm + "': a congestion window"));
    CHECK_FALSE(has_note(c, "congestion control: none"));
  }
}

TEST_CASE("rules between properties: each refused with an error naming its key") {
  struct Case {
    const char* yaml;
    const char* key;
    const char* message;
  };
  const Case cases[] = {
      {"flow control: true", "flow control",
       "'flow control' governs acknowledged messages (credit comes back with the acknowledgments); set "
       "'reliability' too"},
      {"flow control: true\nreliability: {enabled: false}", "flow control",
       "'flow control' governs acknowledged messages (credit comes back with the acknowledgments); set "
       "'reliability' too"},
      {"congestion control: aimd", "congestion control",
       "'congestion control: aimd' needs acknowledgments to measure the network; set 'reliability'"},
      {"heartbeat us: 200000\nfailure timeout us: 200000", "failure timeout us",
       "'failure timeout us' (200000) must be longer than 'heartbeat us' (200000), or every member would be "
       "declared failed between two heartbeats"},
      {"sequencer: a", "sequencer", "'sequencer' is set but 'group ordering' is not"},
      {"members: [a, b]\ngroup ordering: true\nsequencer: z", "sequencer",
       "'sequencer' names 'z', which is not in 'members'"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    // The parser reports it at the key...
    Manifest m;
    Diagnostics d;
    CHECK_FALSE(parse_manifest(std::string("id: t\n") + c.yaml + "\n", "m.yaml", m, d));
    REQUIRE(d.items().size() == 1);
    CHECK(d.items()[0].key == c.key);
    CHECK(d.items()[0].message == c.message);
    CHECK(d.items()[0].where.line >= 2);
  }
  // ...and compile() refuses a struct built by hand the same way.
  Manifest m;
  m.id = "t";
  m.flow_control.enabled = true;
  m.congestion_control = "cubic";
  m.heartbeat_us = 500'000;
  m.failure_timeout_us = 400'000;
  m.sequencer = "a";
  const Status s = refusal(m);
  CHECK(s.code() == Code::INVALID_MANIFEST);
  CHECK(s.message() ==
        "<manifest>: 'failure timeout us' (400000) must be longer than 'heartbeat us' (500000), or every member would "
        "be declared failed between two heartbeats\n"
        "<manifest>: 'sequencer' is set but 'group ordering' is not\n"
        "<manifest>: 'flow control' governs acknowledged messages (credit comes back with the acknowledgments); set "
        "'reliability' too\n"
        "<manifest>: 'congestion control: cubic' needs acknowledgments to measure the network; set 'reliability'");

  // At most 'max members' members (the membership view's slots); 65 fit by default.
  Manifest many;
  many.id = "t";
  for (int i = 0; i < 65; ++i) many.members.push_back("m" + std::to_string(i));
  Plan fits;
  CHECK(compile(many, Capabilities::defaults(), Registry::builtin(), fits).is_ok());
  CHECK(fits.max_members == kDefaultMaxMembers);
  many.max_members = 64;
  const Status big = refusal(many);
  CHECK(big.code() == Code::INVALID_MANIFEST);
  CHECK(big.message() == "<manifest>: 'members' lists 65 members but 'max members' is 64; raise 'max members' to hold them all");
  many.max_members = kDefaultMaxMembers;
  many.members.pop_back();
  many.max_message_bytes = 1000;
  CHECK(plan_of(many).members.size() == 64);

  // Flagged reliability is reliability: flow and congestion control accept it.
  const Plan flagged = plan_of(manifest("id: t\nreliability: {messages: flagged}\nflow control: true\n"
                                        "congestion control: aimd\n"));
  CHECK(stage_of(flagged, "flow.credit").params.at("policy") == "min");
  CHECK(stage_of(flagged, "congestion.window").params.at("algorithm") == "aimd");
}

TEST_CASE("multicast, unicast fan-out and the fallback") {
  Capabilities none = Capabilities::defaults();
  none.source = "n.yaml";
  none.network.multicast = false;
  const Manifest addressed = manifest("id: t\nname: b\nmembers: [a@10.0.0.1:1000, b@10.0.0.2:1000, c@10.0.0.3:1001]\n");
  const Plan fallback = plan_of(addressed, none);
  CHECK_FALSE(fallback.transport.multicast);
  CHECK(fallback.transport.peers == std::vector<std::string>{"10.0.0.1:1000", "10.0.0.3:1001"});  // not itself
  CHECK(has_note(fallback, "falls back") == false);
  CHECK(has_note(fallback, "sent by unicast to every addressed member"));
  CHECK(plan_of(addressed).transport.multicast);

  const Status s = refusal(manifest("id: t\nmembers: [a, b]\n"), none);
  CHECK(s.code() == Code::NOT_AVAILABLE);
  CHECK(s.message() ==
        "'multicast': the network has no IP multicast (capabilities n.yaml: network.multicast false) and 'members' "
        "gives no addresses to fall back to unicast fan-out; list every member as \"name@ip:port\"");
  CHECK(refusal(manifest("id: t\nmulticast: false\n")).message() ==
        "'multicast: false' needs every member listed as \"name@ip:port\"; libTMC does not discover members' "
        "addresses");
  const Plan uni = plan_of(manifest("id: t\nname: y\nmulticast: false\nmembers: [x@127.0.0.1:7000, y@127.0.0.1:7001]\n"));
  CHECK_FALSE(uni.transport.multicast);
  CHECK(uni.transport.peers == std::vector<std::string>{"127.0.0.1:7000"});
}

TEST_CASE("transport from manifest and capabilities") {
  Capabilities jumbo = Capabilities::defaults();
  jumbo.nic.name = "eth0";
  jumbo.nic.mtu_bytes = 9000;
  jumbo.nic.udp_gso = true;
  jumbo.nic.udp_gro = true;
  const Plan p = plan_of(manifest("id: t\nname: me\nttl: 3\nloopback: false\nduplexity: receive-only\nsynchronicity: "
                                  "sync\n"),
                         jumbo);
  CHECK(p.member == "me");
  CHECK(p.duplexity == Duplexity::receive_only);
  CHECK(p.synchronicity == Synchronicity::sync);
  CHECK(p.transport.interface == "eth0");
  CHECK(p.transport.ttl == 3);
  CHECK_FALSE(p.transport.loopback);
  CHECK(p.transport.gso);
  CHECK(p.transport.gro);
  CHECK(p.transport.mtu_bytes == 9000);
  CHECK(p.transport.max_payload_bytes == 9000 - 28 - 24);
  CHECK(p.transport.group.rfind("239.255.", 0) == 0);

  Capabilities loop = Capabilities::defaults();
  loop.nic.mtu_bytes = 65535;
  CHECK(plan_of(manifest("id: t\n"), loop).transport.max_payload_bytes == 65507 - 24);

  // The capabilities describe another NIC than the channel's: their offloads do not apply.
  Capabilities other = offload_caps();
  other.nic.name = "eth0";
  other.nic.mtu_bytes = 9000;
  const Plan q = plan_of(manifest("id: t\ninterface: eth1\nerror checking: true\n"), other);
  CHECK(q.transport.interface == "eth1");
  CHECK(q.transport.mtu_bytes == 1500);
  CHECK(q.stages[0].placement == Placement::software);
}

TEST_CASE("compile refuses invalid manifests and capabilities with every problem") {
  Manifest m;
  m.port = 0;
  const Status s = refusal(m);
  CHECK(s.code() == Code::INVALID_MANIFEST);
  CHECK(s.message() ==
        "<manifest>: 'port' must be in 1..65535, got 0\n<manifest>: missing required property 'id' (the channel id)");
  Capabilities tiny = Capabilities::defaults();
  tiny.nic.mtu_bytes = 100;
  CHECK(refusal(manifest("id: t\n"), tiny).code() == Code::INVALID_CAPABILITIES);
}

TEST_CASE("a kind the plan needs must be registered; its parameters must match") {
  const Registry empty;
  const Status s = refusal(manifest("id: t\npoint-to-point ordering: true\nerror checking: true\n"),
                           Capabilities::defaults(), empty);
  CHECK(s.code() == Code::UNKNOWN_STAGE);
  CHECK(s.message() ==
        "stage kind 'ordering.fifo' is not registered (needed by 'point-to-point ordering')\n"
        "stage kind 'ordering.seq' is not registered (needed by 'point-to-point ordering')\n"
        "stage kind 'fragment.split' is not registered (needed by 'max message bytes')\n"
        "stage kind 'checksum.crc32c' is not registered (needed by 'error checking')");
  const Status r = refusal(manifest("id: t\nmembers: [a]\ngroup ordering: true\npoint-to-point ordering: true\n"
                                    "reliability: true\nflow control: true\n"
                                    "congestion control: aimd\npacing: {rate bps: 1000, coalesce us: 10}\n"
                                    "max message bytes: 1000\n"),
                           Capabilities::defaults(), empty);
  CHECK(r.code() == Code::UNKNOWN_STAGE);
  CHECK(r.message() ==
        "stage kind 'ordering.group' is not registered (needed by 'group ordering')\n"
        "stage kind 'ordering.fifo' is not registered (needed by 'point-to-point ordering')\n"
        "stage kind 'ordering.seq' is not registered (needed by 'point-to-point ordering')\n"
        "stage kind 'pacing.coalesce' is not registered (needed by 'pacing')\n"
        "stage kind 'reliability.arq' is not registered (needed by 'reliability')\n"
        "stage kind 'flow.credit' is not registered (needed by 'flow control')\n"
        "stage kind 'congestion.window' is not registered (needed by 'congestion control')\n"
        "stage kind 'pacing.bucket' is not registered (needed by 'pacing')\n"
        "stage kind 'membership.heartbeat' is not registered (needed by 'reliability')");
  // Offloaded, error checking needs no software stage, so no registration either.
  Plan p;
  CHECK(compile(manifest("id: t\nerror checking: true\nmax message bytes: 1000\n"), offload_caps(), empty, p).is_ok());

  Registry wrong;
  REQUIRE(wrong
              .add(StageInfo{.kind = "ordering.fifo",
                             .synopsis = "",
                             .notes = "",
                             .params = {{"mode", ParamType::string, "drop-stale", ""}},
                             .counters = {},
                             .factory = [] { return std::make_unique<tmc::test::StubStage>(); }})
              .is_ok());
  REQUIRE(wrong
              .add(StageInfo{.kind = "ordering.seq",
                             .synopsis = "",
                             .notes = "",
                             .params = {},
                             .counters = {},
                             .factory = [] { return std::make_unique<tmc::test::StubStage>(); }})
              .is_ok());
  const Status w = refusal(manifest("id: t\npoint-to-point ordering: true\nmax message bytes: 1000\n"),
                           Capabilities::defaults(), wrong);
  CHECK(w.code() == Code::INTERNAL);
  CHECK(w.message().find("unknown parameter 'hold_us'") != std::string::npos);
}

TEST_CASE("the built-in registry accepts every stage the compiler emits") {
  // Uses Registry::builtin() as `tmc plan` does: every kind is built, and each accepts the
  // parameters the compiler gives it, in every variant of the manifest.
  Capabilities seq = Capabilities::defaults();
  seq.network.sequencer = "10.0.0.254:4800";
  const char* manifests[] = {
      "id: t\npoint-to-point ordering: strict\nerror checking: true\nfaults: {loss: 0.1}\n",
      "id: t\n",
      "id: t\ngroup ordering: true\n",
      "id: t\nmembers: [a, b]\ngroup ordering: true\nsequencer: a\nreliability: {ack from: [b], max retries: 2}\n",
      "id: t\nreliability: {messages: flagged, ack fraction: 0.5}\nflow control: {policy: quorum, eject slow: true}\n"
      "congestion control: cubic\n",
      "id: t\nreliability: {ack k: 1}\ncongestion control: aimd\npacing: {rate bps: 1000000, coalesce us: 50}\n",
      "id: t\npacing: true\nduplexity: send-only\n",
  };
  for (const char* yaml : manifests) {
    CAPTURE(yaml);
    for (const Capabilities& caps : {Capabilities::defaults(), seq, offload_caps()}) {
      Plan p;
      const Status s = compile(manifest(yaml), caps, Registry::builtin(), p);
      INFO(s.to_string());
      CHECK(s.is_ok());
    }
  }
}

namespace {

/// The built-in registry with one kind's description changed by `edit`.
Registry builtin_with(std::string_view kind, const std::function<void(StageInfo&)>& edit) {
  Registry r;
  for (const StageInfo* s : Registry::builtin().all()) {
    StageInfo copy = *s;
    if (copy.kind == kind) edit(copy);
    REQUIRE(r.add(std::move(copy)).is_ok());
  }
  return r;
}

}  // namespace

TEST_CASE("placement facts come from the stages' StageInfo, not from the compiler") {
  const Manifest m = manifest("id: t\nerror checking: true\npoint-to-point ordering: true\n");
  Plan base;
  REQUIRE(compile(m, Capabilities::defaults(), Registry::builtin(), base).is_ok());
  // A checksum stage that declared an 8-byte trailer would leave 4 bytes less payload room,
  // and the plan would say so: the compiler holds no copy of the trailer's size.
  const Registry wider = builtin_with("checksum.crc32c", [](StageInfo& s) { s.wire_bytes_per_datagram = 8; });
  Plan p;
  REQUIRE(compile(m, Capabilities::defaults(), wider, p).is_ok());
  CHECK(p.transport.max_payload_bytes + 4 == base.transport.max_payload_bytes);
  CHECK(p.to_string().find("a CRC32C trailer of 8 bytes") != std::string::npos);
  // The same for the sequence extension's size, which the plan's reason quotes.
  const Registry seq12 = builtin_with("ordering.seq", [](StageInfo& s) {
    s.wire_bytes_per_datagram = 14;
    s.extensions.at(0).body_bytes = 12;
  });
  REQUIRE(compile(m, Capabilities::defaults(), seq12, p).is_ok());
  CHECK(p.transport.max_payload_bytes + 4 == base.transport.max_payload_bytes);
  CHECK(p.to_string().find("(seq extension, 14 bytes)") != std::string::npos);
}

TEST_CASE("a stage's required neighbours must be in the plan on the side it declares") {
  const Manifest m = manifest("id: t\npoint-to-point ordering: true\n");
  const Registry below = builtin_with("ordering.fifo", [](StageInfo& s) { s.requires_below = {"faults.inject"}; });
  Plan p;
  Status s = compile(m, Capabilities::defaults(), below, p);
  CHECK(s.code() == Code::INTERNAL);
  CHECK(s.message().find("stage 'ordering.fifo' requires 'faults.inject' below it, and the plan has none there") !=
        std::string::npos);
  // ordering.seq is in the plan, but below ordering.fifo, not above it.
  const Registry above = builtin_with("ordering.fifo", [](StageInfo& info) { info.requires_above = {"ordering.seq"}; });
  s = compile(m, Capabilities::defaults(), above, p);
  CHECK(s.code() == Code::INTERNAL);
  CHECK(s.message().find("stage 'ordering.fifo' requires 'ordering.seq' above it") != std::string::npos);
  // Every built-in plan meets the built-in requirements (the golden plans compile too).
  CHECK(compile(manifest("id: t\nmembers: [a]\npoint-to-point ordering: true\nreliability: true\nflow control: "
                         "true\ncongestion control: aimd\n"),
                Capabilities::defaults(), Registry::builtin(), p)
            .is_ok());
}
