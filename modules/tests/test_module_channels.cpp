// The module objects in real channels on loopback (libuv runtime, real sockets): a
// reliable channel with fec.xor and ordering.causal loaded through OpenOptions::modules and
// fault injection dropping 5% of the datagrams. Everything arrives once; the FEC module
// rebuilds datagrams the faults dropped. No time is asserted; waits are bounded.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <set>

#include "../../tests/runtime/runtime_test_util.hpp"
#include "tmc/channel.hpp"
#include "tmc/manifest.hpp"
#include "tmc/modules.hpp"

namespace {

std::uint64_t counter(const tmc::ChannelStats& st, std::string_view name) {
  for (const auto& [n, v] : st.counters) {
    if (n == name) return v;
  }
  return 0;
}

}  // namespace

TEST_CASE("module channels: fec.xor and ordering.causal loaded into real channels on loopback") {
  auto set = std::make_shared<tmc::ModuleSet>();
  for (const char* mod : {"fec", "causal"}) {
    const tmc::Status s = set->load(std::string(TMC_MODULE_DIR) + "/tmc_" + mod + ".so");
    REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  }
  tmc::Manifest m = tmc::test::manifest_for("modules-fec-causal", 7, "alice");
  m.members = {"alice", "bob"};
  m.reliability.enabled = true;
  m.faults.loss = 0.05;
  m.faults.seed = 11;
  m.modules = {"fec", "causal"};
  m.stages = {{"fec.xor", {{"k", "4"}, {"flush_us", "2000"}}}, {"ordering.causal", {}}};
  tmc::OpenOptions o;
  o.modules = set;
  auto a = tmc::Channel::open(m, o);
  m.name = "bob";
  m.faults.seed = 12;
  auto b = tmc::Channel::open(m, o);
  REQUIRE(a.wait_for_members(1, std::chrono::seconds(10)).is_ok());
  REQUIRE(b.wait_for_members(1, std::chrono::seconds(10)).is_ok());

  constexpr int kCount = 200;
  REQUIRE(tmc::test::send_n(a, kCount, "a"));
  const auto got = tmc::test::receive_n(b, kCount, std::chrono::milliseconds(10'000));
  CHECK(got.size() == kCount);
  const std::set<std::string> distinct(got.begin(), got.end());
  CHECK(distinct.size() == got.size());  // exactly once
  const auto sa = a.stats();
  const auto sb = b.stats();
  CHECK(counter(sa, "fec.protected_sent") >= kCount);
  CHECK(counter(sa, "fec.parity_sent") >= kCount / 4);
  CHECK(counter(sa, "ordering.causal_stamped") == kCount);
  CHECK(counter(sb, "fec.parity_received") > 0);
  // 5% of about 250 datagrams dropped: some blocks lost one and were rebuilt.
  CHECK(counter(sb, "fec.rebuilt") > 0);
  CHECK(counter(sb, "fec.xor.module_faults") == 0);
  CHECK(counter(sb, "ordering.causal.module_faults") == 0);
}
