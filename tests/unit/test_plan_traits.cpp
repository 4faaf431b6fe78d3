// The plan's typed traits: what the compiler tells the shells about a channel, checked
// against the manifests that ask for each property and against the stages it placed.
#include <doctest/doctest.h>

#include <string>

#include "plan_test_support.hpp"
#include "tmc/manifest.hpp"

using namespace tmc;
using tmc::test::planning_registry;

namespace {

Plan plan_of(const std::string& yaml, const Capabilities& caps = Capabilities::defaults()) {
  Manifest m;
  Diagnostics d;
  const bool parsed = parse_manifest(yaml, "m.yaml", m, d);
  INFO(d.to_string());
  REQUIRE(parsed);
  Plan p;
  const Status s = compile(m, caps, planning_registry(), p);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  return p;
}

const PlannedStage* find(const Plan& p, std::string_view kind) {
  for (const auto& s : p.stages) {
    if (s.kind == kind) return &s;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("traits: best effort has none of them") {
  const Plan p = plan_of("id: t\nmax message bytes: 1000\n");
  ChannelTraits want;
  want.max_message_bytes = 1000;
  CHECK(p.traits == want);
  CHECK_FALSE(p.traits.reliable());
  CHECK_FALSE(p.traits.ordered());
  CHECK_FALSE(p.traits.fragments());
}

TEST_CASE("traits: reliability for every message or only flagged ones") {
  CHECK(plan_of("id: t\nreliability: true\n").traits.reliability == ReliabilityScope::all);
  CHECK(plan_of("id: t\nreliability: {messages: flagged}\n").traits.reliability == ReliabilityScope::flagged);
  // Group ordering alone brings reliability for flagged messages (the handshake of Listing 1).
  const Plan g = plan_of("id: t\ngroup ordering: true\n");
  CHECK(g.traits.reliability == ReliabilityScope::flagged);
  CHECK(g.traits.reliable());
  CHECK(g.traits.membership);
}

TEST_CASE("traits: point-to-point ordering as planned, not as asked") {
  CHECK(plan_of("id: t\npoint-to-point ordering: strict\n").traits.point_to_point_ordering == FifoOrdering::strict);
  CHECK(plan_of("id: t\npoint-to-point ordering: drop-stale\n").traits.point_to_point_ordering ==
        FifoOrdering::drop_stale);
  // With every message reliable the compiler makes ordering strict: the trait follows the stage.
  const Plan rel = plan_of("id: t\npoint-to-point ordering: drop-stale\nreliability: true\n");
  CHECK(rel.traits.point_to_point_ordering == FifoOrdering::strict);
  CHECK(find(rel, "ordering.fifo")->params.at("mode") == "strict");
  CHECK(rel.traits.ordered());
  CHECK_FALSE(rel.traits.group_ordering);
}

TEST_CASE("traits: group ordering, by a member or by the network") {
  const Plan member = plan_of("id: t\ngroup ordering: true\n");
  CHECK(member.traits.group_ordering);
  CHECK_FALSE(member.traits.network_sequenced);
  CHECK(member.traits.ordered());
  CHECK(member.traits.point_to_point_ordering == FifoOrdering::off);

  Capabilities seq = Capabilities::defaults();
  seq.network.sequencer = "10.0.0.254:4800";
  const Plan net = plan_of("id: t\ngroup ordering: true\n", seq);
  CHECK(net.traits.group_ordering);
  CHECK(net.traits.network_sequenced);
  // A sequencer declared but not used stamps nothing of ours.
  CHECK_FALSE(plan_of("id: t\nreliability: true\n", seq).traits.network_sequenced);
}

TEST_CASE("traits: 'ordered messages: flagged' only where there is ordering to opt into") {
  CHECK(plan_of("id: t\npoint-to-point ordering: strict\nordered messages: flagged\n").traits.ordered_flagged);
  CHECK(plan_of("id: t\ngroup ordering: true\nordered messages: flagged\n").traits.ordered_flagged);
  CHECK_FALSE(plan_of("id: t\npoint-to-point ordering: strict\n").traits.ordered_flagged);
}

TEST_CASE("traits: error checking in software or on the NIC") {
  const Plan sw = plan_of("id: t\nerror checking: true\n");
  CHECK(sw.traits.error_checking);
  CHECK(find(sw, "checksum.crc32c")->placement == Placement::software);
  Capabilities offload = Capabilities::defaults();
  offload.nic.checksum_rx = true;
  offload.nic.checksum_tx = true;
  const Plan nic = plan_of("id: t\nerror checking: true\n", offload);
  CHECK(nic.traits.error_checking);
  CHECK(find(nic, "checksum.crc32c")->placement == Placement::offload);
  CHECK_FALSE(plan_of("id: t\n").traits.error_checking);
}

TEST_CASE("traits: fragment size is the fragment stage's, and only with fragmentation") {
  const Plan big = plan_of("id: t\nmax message bytes: 100000\n");
  REQUIRE(find(big, "fragment.split") != nullptr);
  CHECK(big.traits.fragments());
  CHECK(std::to_string(big.traits.fragment_bytes) == find(big, "fragment.split")->params.at("fragment_bytes"));
  CHECK(big.traits.max_message_bytes == 100000);
  // Extensions of other stages shrink the datagram, and with it the fragment.
  const Plan rel = plan_of("id: t\nmax message bytes: 100000\nreliability: true\n");
  CHECK(rel.traits.fragment_bytes < big.traits.fragment_bytes);
  CHECK(std::to_string(rel.traits.fragment_bytes) == find(rel, "fragment.split")->params.at("fragment_bytes"));

  const Plan small = plan_of("id: t\nmax message bytes: 1000\n");
  CHECK(find(small, "fragment.split") == nullptr);
  CHECK(small.traits.fragment_bytes == 0);
  CHECK(small.traits.max_message_bytes == 1000);
}

TEST_CASE("traits: coalescing and membership follow their stages") {
  const Plan c = plan_of("id: t\npacing: true\n");
  CHECK(c.traits.coalescing);
  CHECK_FALSE(c.traits.membership);
  CHECK_FALSE(plan_of("id: t\npacing: {rate bps: 1000000}\n").traits.coalescing);
  // The network sequencer stamps each datagram: no coalescing under it.
  Capabilities seq = Capabilities::defaults();
  seq.network.sequencer = "10.0.0.254:4800";
  CHECK_FALSE(plan_of("id: t\ngroup ordering: true\npacing: true\n", seq).traits.coalescing);

  CHECK(plan_of("id: t\nreliability: {messages: flagged}\n").traits.membership);
  CHECK_FALSE(plan_of("id: t\nerror checking: true\npoint-to-point ordering: strict\n").traits.membership);
}

TEST_CASE("traits: every trait agrees with the stages of a full stack") {
  Capabilities jumbo = Capabilities::defaults();
  jumbo.nic.mtu_bytes = 9000;
  const Plan p = plan_of(
      "id: lab\nname: node-1\nmembers: [node-1, node-2, node-3]\ngroup ordering: true\n"
      "point-to-point ordering: strict\nreliability: {ack k: 2}\nflow control: {policy: quorum}\n"
      "congestion control: aimd\npacing: {rate bps: 1000000000, coalesce us: 50}\nerror checking: true\n"
      "max message bytes: 100000\n",
      jumbo);
  CHECK(p.traits.reliability == ReliabilityScope::all);
  CHECK(p.traits.point_to_point_ordering == FifoOrdering::strict);
  CHECK(p.traits.group_ordering);
  CHECK_FALSE(p.traits.network_sequenced);
  CHECK_FALSE(p.traits.ordered_flagged);
  CHECK(p.traits.error_checking);
  CHECK(p.traits.coalescing);
  CHECK(p.traits.membership);
  CHECK(std::to_string(p.traits.fragment_bytes) == find(p, "fragment.split")->params.at("fragment_bytes"));
  CHECK(p.traits.max_message_bytes == 100000);
}
