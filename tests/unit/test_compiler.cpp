// The compiler: rules, canonical order, placement, transport sizing, refusals.
#include <doctest/doctest.h>

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
  const Plan p = plan_of(manifest("id: t\ngroup: 239.1.2.3\nport: 5000\n"));
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
  CHECK(has_note(p, "fragmentation: not available yet: messages above 1448 bytes are refused at send"));
}

TEST_CASE("point-to-point ordering needs per-sender sequencing (rule)") {
  const Plan p = plan_of(manifest("id: t\npoint-to-point ordering: true\n"));
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
  const Manifest m = manifest("id: t\nerror checking: true\n");
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
  CHECK(plan_of(manifest("id: t\n"), offload_caps()).stages.empty());
}

TEST_CASE("canonical order: ordering, sequencing, checksum, faults at the bottom") {
  const Plan p = plan_of(manifest("id: t\nfaults: {loss: 0.5, seed: 3}\nerror checking: true\npoint-to-point ordering: "
                                  "strict\n"));
  CHECK(kinds(p) == std::vector<std::string>{"ordering.fifo", "ordering.seq", "checksum.crc32c", "faults.inject"});
  CHECK(p.stages[3].params == std::map<std::string, std::string, std::less<>>{{"loss", "0.5"},
                                                                              {"duplicate", "0"},
                                                                              {"reorder", "0"},
                                                                              {"corrupt", "0"},
                                                                              {"delay_us", "0"},
                                                                              {"seed", "3"}});
  CHECK(p.transport.max_payload_bytes == 1448 - 10 - 4);
  // Faults with every probability zero and no delay ask for nothing.
  CHECK(plan_of(manifest("id: t\nfaults: {seed: 9}\n")).stages.empty());
}

TEST_CASE("planned properties are refused by name, never ignored") {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"group ordering: true", "'group ordering' is not available yet (planned: issue 5)"},
      {"reliability: true", "'reliability' is not available yet (planned: issue 4)"},
      {"pacing: true", "'pacing' is not available yet (planned: issue 4)"},
      {"flow control: true", "'flow control' is not available yet (planned: issue 4)"},
      {"congestion control: aimd", "'congestion control: aimd' is not available yet (planned: issue 4)"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    const Status s = refusal(manifest(std::string("id: t\n") + c.yaml + "\n"));
    CHECK(s.code() == Code::NOT_AVAILABLE);
    CHECK(s.message() == c.message);
  }
  const Status all = refusal(manifest("id: t\nreliability: true\npacing: true\ngroup ordering: true\n"));
  CHECK(all.message() ==
        "'group ordering' is not available yet (planned: issue 5)\n"
        "'reliability' is not available yet (planned: issue 4)\n"
        "'pacing' is not available yet (planned: issue 4)");
  Capabilities seq = Capabilities::defaults();
  seq.network.sequencer = "10.0.0.254:4800";
  CHECK(refusal(manifest("id: t\ngroup ordering: true\n"), seq).message() ==
        "'group ordering' (with the network sequencer at 10.0.0.254:4800) is not available yet (planned: issue 5)");
  // Disabled with settings kept is not a request.
  CHECK(plan_of(manifest("id: t\nreliability: {enabled: false, ack k: 2}\n")).stages.empty());
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
        "'multicast: false' needs every member listed as \"name@ip:port\"; finding members' addresses by discovery "
        "is not available yet (planned: issue 5)");
  const Plan uni = plan_of(manifest("id: t\nmulticast: false\nmembers: [x@127.0.0.1:7000]\n"));
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
        "stage kind 'checksum.crc32c' is not registered (needed by 'error checking')");
  // Offloaded, error checking needs no software stage, so no registration either.
  Plan p;
  CHECK(compile(manifest("id: t\nerror checking: true\n"), offload_caps(), empty, p).is_ok());

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
  const Status w = refusal(manifest("id: t\npoint-to-point ordering: true\n"), Capabilities::defaults(), wrong);
  CHECK(w.code() == Code::INTERNAL);
  CHECK(w.message().find("unknown parameter 'hold_us'") != std::string::npos);
}

TEST_CASE("the built-in registry accepts every stage the compiler emits") {
  // Uses Registry::builtin() as `tmc plan` does; a kind not built yet is reported, not faked.
  const Manifest m = manifest("id: t\npoint-to-point ordering: strict\nerror checking: true\nfaults: {loss: 0.1}\n");
  Plan p;
  const Status s = compile(m, Capabilities::defaults(), Registry::builtin(), p);
  INFO(s.to_string());
  CHECK((s.is_ok() || s.code() == Code::UNKNOWN_STAGE));
  CHECK(s.code() != Code::INTERNAL);
}
