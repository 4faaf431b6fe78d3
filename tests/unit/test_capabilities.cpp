// Capability files: every key, both spellings, shorthands, defaults, errors.
#include <doctest/doctest.h>

#include <filesystem>

#include "plan_test_support.hpp"
#include "runtime/manifest/internal.hpp"
#include "tmc/capabilities.hpp"

using namespace tmc;

namespace {

Capabilities caps_ok(const std::string& yaml) {
  Capabilities c;
  Diagnostics d;
  const bool ok = parse_capabilities(yaml, "c.yaml", c, d);
  INFO(d.to_string());
  REQUIRE(ok);
  return c;
}

std::string caps_errors(const std::string& yaml) {
  Capabilities c;
  Diagnostics d;
  CHECK_FALSE(parse_capabilities(yaml, "c.yaml", c, d));
  return d.to_string();
}

}  // namespace

TEST_CASE("defaults: no NIC offloads but UDP GSO (software segmentation), MTU 1500, multicast on") {
  const Capabilities c = Capabilities::defaults();
  CHECK(c.source == "(defaults)");
  CHECK_FALSE(c.nic.checksum_rx);
  CHECK_FALSE(c.nic.checksum_tx);
  CHECK(c.nic.udp_gso);
  CHECK_FALSE(c.nic.udp_gro);
  CHECK_FALSE(c.nic.timestamping);
  CHECK(c.nic.mtu_bytes == 1500);
  CHECK(c.network.multicast);
  CHECK(c.network.sequencer.empty());
  const Capabilities empty = caps_ok("# nothing declared\n");
  CHECK(empty.nic == c.nic);
  CHECK(empty.network == c.network);
  CHECK(empty.source == "c.yaml");
}

TEST_CASE("paper-style keys and snake_case aliases give the same capabilities") {
  const Capabilities a = caps_ok(
      "nic: {name: eth0, checksum offload: {rx: true, tx: true}, udp gso: true, udp gro: false, timestamping: false, "
      "mtu: 9000}\n"
      "network: {multicast: true, sequencer: \"10.0.0.254:4800\"}\n");
  const Capabilities b = caps_ok(
      "nic:\n"
      "  name: eth0\n"
      "  checksum_offload:\n"
      "    rx: true\n"
      "    tx: true\n"
      "  udp_gso: true\n"
      "  udp_gro: false\n"
      "  mtu_bytes: 9000\n"
      "network:\n"
      "  multicast: true\n"
      "  sequencer: 10.0.0.254:4800\n");
  CHECK(a == b);
  CHECK(a.nic.name == "eth0");
  CHECK(a.nic.checksum_rx);
  CHECK(a.nic.checksum_tx);
  CHECK(a.nic.udp_gso);
  CHECK_FALSE(a.nic.udp_gro);
  CHECK(a.nic.mtu_bytes == 9000);
  CHECK(a.network.sequencer == "10.0.0.254:4800");
  // "checksum offload: true" means both directions.
  const Capabilities both = caps_ok("nic: {checksum offload: true}\n");
  CHECK(both.nic.checksum_rx);
  CHECK(both.nic.checksum_tx);
}

TEST_CASE("capability errors: exact text and position") {
  CHECK(caps_errors("nic: {udp gos: true}\n") == "c.yaml:1:16: unknown property 'nic.udp gos' (did you mean 'udp gso'?)");
  CHECK(caps_errors("nic:\n  checksum offload: {rxx: true}\n") ==
        "c.yaml:2:27: unknown property 'nic.checksum offload.rxx' (did you mean 'rx'?)");
  CHECK(caps_errors("nic: {mtu: 100}\n") == "c.yaml:1:12: 'nic.mtu' must be in 576..65535, got 100");
  CHECK(caps_errors("nic: {mtu: 99999999999}\n") == "c.yaml:1:12: 'nic.mtu' must be in 576..65535, got 99999999999");
  CHECK(caps_errors("nic: {mtu: big}\n") == "c.yaml:1:12: 'nic.mtu' expects int, got string \"big\"");
  CHECK(caps_errors("network: {sequencer: 10.0.0.1}\n") ==
        "c.yaml:1:22: 'network.sequencer' must be \"ip:port\", got \"10.0.0.1\"");
  CHECK(caps_errors("network: {multicast: maybe}\n") ==
        "c.yaml:1:22: 'network.multicast' expects bool, got string \"maybe\"");
  CHECK(caps_errors("nics: {}\n") == "c.yaml:1:7: unknown property 'nics' (did you mean 'nic'?)");
  CHECK(caps_errors("nic: [eth0]\n") == "c.yaml:1:6: 'nic' expects map, got list");
  CHECK(caps_errors("just a string\n") == "c.yaml:1:1: a capability file must be a map of properties, got string \"just a string\"");
  CHECK(caps_errors("nic: {mtu: 1}\nnetwork: {sequencer: x}\nsource: me\n") ==
        "c.yaml:1:12: 'nic.mtu' must be in 576..65535, got 1\n"
        "c.yaml:2:22: 'network.sequencer' must be \"ip:port\", got \"x\"\n"
        "c.yaml:3:9: unknown property 'source'");
}

TEST_CASE("every example capability file loads") {
  for (const auto& e : std::filesystem::directory_iterator(tmc::test::source_dir() / "examples" / "caps")) {
    Capabilities c;
    Diagnostics d;
    CAPTURE(e.path().string());
    CHECK_MESSAGE(load_capabilities(e.path().string(), c, d), d.to_string());
    CHECK(c.source == e.path().string());
  }
  Capabilities c;
  Diagnostics d;
  CHECK_FALSE(load_capabilities("/nonexistent/caps.yaml", c, d));
  CHECK(d.to_string() == "/nonexistent/caps.yaml: cannot open file");
}

TEST_CASE("capability table for docs") {
  const auto rows = detail::capability_properties();
  std::vector<std::string> keys;
  for (const auto& r : rows) keys.push_back(r.key);
  CHECK(keys == std::vector<std::string>{"nic", "nic.name", "nic.checksum offload.tx", "nic.checksum offload.rx",
                                         "nic.udp gso", "nic.udp gro", "nic.timestamping", "nic.mtu", "nic.crypto offload", "network",
                                         "network.multicast", "network.sequencer"});
}
