// The module manager: loading, every refusal, module stages and controllers in the
// simulator and in real channels, and containment of a misbehaving module.
#include <dlfcn.h>
#include <doctest/doctest.h>

#include <cstddef>
#include <fstream>
#include <iterator>
#include <string>

#include "../runtime/runtime_test_util.hpp"
#include "sim/network.hpp"
#include "tmc/channel.hpp"
#include "tmc/manifest.hpp"
#include "tmc/module.hpp"
#include "tmc/modules.hpp"

namespace {

std::string module_path(const std::string& name) { return std::string(TMC_TEST_MODULE_DIR) + "/" + name + ".so"; }

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

tmc::Status load(const std::string& name, std::shared_ptr<const tmc::LoadedModule>& out,
                 std::string_view digest = {}) {
  return tmc::load_module_object(module_path(name), digest, out);
}

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("modules: a C++ module loads with its stage kind, controller and provenance") {
  const std::string path = module_path("tally");
  const std::string digest = tmc::sha256_hex(file_bytes(path));
  std::shared_ptr<const tmc::LoadedModule> m;
  const tmc::Status s = tmc::load_module_object(path, digest, m);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  CHECK(m->name() == "tally");
  CHECK(m->version() == "1.0.0");
  CHECK(m->sha256() == digest);
  CHECK(m->abi_version() == TMC_MODULE_ABI_VERSION);
  CHECK(m->provenance() == "module tally 1.0.0, sha256 " + digest);
  REQUIRE(m->stages().size() == 1);
  const tmc::StageInfo& info = m->stages()[0];
  CHECK(info.kind == "tally.count");
  CHECK(info.layer == tmc::StageLayer::datagram);
  CHECK(info.provenance == m->provenance());
  REQUIRE(info.params.size() == 3);
  CHECK(info.params[0].name == "mode");
  CHECK(info.params[0].one_of.size() == 3);
  CHECK(info.params[1].min == 0);
  CHECK(info.params[2].max == 1'000'000);
  // Its own counters, then the one the runtime adds for containment.
  REQUIRE(info.counters.size() == 4);
  CHECK(info.counters[0].name == "tally.count.sent");
  CHECK(info.counters[3].name == "tally.count.module_faults");
  REQUIRE(m->controllers().size() == 1);
  CHECK(m->controllers()[0] == "fixed");
  const tmc::CongestionLimits limits;
  auto c = m->make_controller("fixed", limits);
  REQUIRE(c != nullptr);
  CHECK(c->window_bytes() == std::uint64_t{limits.mss_bytes} * limits.initial_window_packets);
  CHECK(c->name() == "fixed");
  CHECK(m->make_controller("cubic", limits) == nullptr);
}

TEST_CASE("modules: every refusal names the module or file and the step") {
  std::shared_ptr<const tmc::LoadedModule> m;
  auto refused = [&](const tmc::Status& s, std::string_view step, std::string_view who) {
    CHECK(s.code() == tmc::Code::MODULE_ERROR);
    CHECK_MESSAGE(contains(s.message(), step), s.message());
    CHECK_MESSAGE(contains(s.message(), who), s.message());
    CHECK(m == nullptr);
  };
  SUBCASE("missing file") { refused(tmc::load_module_object("/nonexistent/x.so", {}, m), "read", "/nonexistent/x.so"); }
  SUBCASE("digest mismatch") {
    const std::string wrong(64, 'a');
    refused(load("tally", m, wrong), "digest", "tally.so");
  }
  SUBCASE("malformed digest") { refused(load("tally", m, "abc"), "digest", "tally.so"); }
  SUBCASE("not a shared object") {
    const std::string path = std::string(TMC_SOURCE_DIR) + "/tests/modules/variant.c";
    refused(tmc::load_module_object(path, {}, m), "dlopen", "variant.c");
  }
  SUBCASE("no entry point") { refused(load("cpass_no_entry", m), "entry point", "cpass_no_entry.so"); }
  SUBCASE("init failure") { refused(load("cpass_init_fail", m), "init", "cpass_init_fail.so"); }
  SUBCASE("newer ABI") {
    const tmc::Status s = load("cpass_newer", m);
    refused(s, "abi version", "module 'cpass'");
    CHECK_MESSAGE(contains(s.message(), "built for module ABI 2; this runtime speaks 1..1"), s.message());
  }
  SUBCASE("extension type in the built-in range") {
    const tmc::Status s = load("cpass_bad_ext", m);
    refused(s, "stage cpass.plain", "module 'cpass'");
    CHECK_MESSAGE(contains(s.message(), "outside 128..255"), s.message());
  }
}

TEST_CASE("modules: an older build of ABI 1 loads; its missing tail fields read as absent") {
  std::shared_ptr<const tmc::LoadedModule> m;
  const tmc::Status s = load("cpass_old", m);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  REQUIRE(m->stages().size() == 1);
  CHECK(m->stages()[0].kind == "cpass.old");
  CHECK(m->stages()[0].layer == tmc::StageLayer::bottom);
  auto stage = m->stages()[0].factory();
  REQUIRE(stage != nullptr);
  std::vector<std::string> errors;
  tmc::Params p;
  p.set("fault_on_receive", false);
  REQUIRE(stage->configure(p, {}, errors));
  CHECK(stage->held_packets() == 0);  // no held_packets in its table: 0, not a wild call
  CHECK(stage->send_backlog() == 0);
}

TEST_CASE("modules: modules written against revision 1 and revision 2 of tmc_io run side by side") {
  tmc::ModuleSet set;
  REQUIRE(set.load(module_path("cpass_old")).is_ok());    // the host table only
  REQUIRE(set.load(module_path("cpass_plain")).is_ok());  // the bound calls
  REQUIRE(set.load(module_path("tally")).is_ok());        // the C++ adapter: bound calls, counters in place
  tmc::sim::Config cfg;
  cfg.seed = 11;
  tmc::sim::Network net(cfg);
  const auto plan = tmc::sim::make_plan(
      {tmc::sim::stage("tally.count"), tmc::sim::stage("cpass.old"), tmc::sim::stage("cpass.plain")});
  for (int i = 0; i < 2; ++i) net.add_member(plan, set.registry());
  constexpr int kMessages = 12;
  for (int k = 0; k < kMessages; ++k) net.schedule_send(std::uint64_t(k) * 100'000, 0, std::vector<std::uint8_t>(16, 7));
  net.run_until(5'000'000);
  CHECK(net.deliveries(1).size() == kMessages);
  CHECK(net.counters(0).get("tally.count.sent") == kMessages);
  CHECK(net.counters(1).get("tally.count.received") == kMessages);
  for (std::size_t m = 0; m < 2; ++m) {
    CHECK(net.counters(m).get("cpass.old.module_faults") == 0);
    CHECK(net.counters(m).get("cpass.plain.module_faults") == 0);
  }
}

namespace {
// What a host built against a header before revision 2 sees of a module's calls.
struct OldHost {
  tmc_packet* down = nullptr;
  std::uint64_t counted[3] = {};
};
OldHost& old_host(void* ctx) { return *static_cast<OldHost*>(ctx); }
}  // namespace

TEST_CASE("modules: a C++ module runs under a host without revision 2, through the host table") {
  // dlopen directly: the loader's own host is always the newest.
  void* so = ::dlopen(module_path("tally").c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE(so != nullptr);
  auto entry = reinterpret_cast<tmc_module_entry_fn>(::dlsym(so, TMC_MODULE_ENTRY_SYMBOL));
  REQUIRE(static_cast<bool>(entry));
  tmc_host host{};
  host.struct_size = offsetof(tmc_host, io_size);  // ends before revision 2
  host.abi_version = TMC_MODULE_ABI_VERSION;
  host.down = [](void* ctx, tmc_packet* p) { old_host(ctx).down = p; };
  host.count = [](void* ctx, std::uint32_t i, std::uint64_t n) {
    if (i < 3) old_host(ctx).counted[i] += n;
  };
  const tmc_module* m = entry(&host);
  REQUIRE(m != nullptr);
  REQUIRE(m->n_stages == 1);
  const tmc_stage_kind* k = m->stages[0];
  const tmc_param_value values[] = {{"mode", "pass", TMC_PARAM_STRING, 0, 0, 0.0},
                                    {"fault_after", "0", TMC_PARAM_INT, 0, 0, 0.0},
                                    {"tick_us", "0", TMC_PARAM_INT, 0, 0, 0.0}};
  tmc_stage_env env{};
  env.struct_size = sizeof(env);
  char err[256] = {};
  void* state = k->create(values, 3, &env, err, sizeof(err));
  REQUIRE_MESSAGE(state != nullptr, err);

  OldHost ctx;
  std::uint64_t poison[3] = {};
  tmc_io io{};
  io.host = &host;
  io.ctx = &ctx;
  io.now_ns = 1000;
  // Revision-2 fields this host never wrote: a module that read them would crash or count here.
  io.counters = poison;
  io.n_counters = 3;
  tmc::PacketPool pool(2048, 4, 16);
  tmc::Packet* p = pool.alloc();
  REQUIRE(p != nullptr);
  auto* hp = reinterpret_cast<tmc_packet*>(p);
  CHECK(k->on_send(state, hp, &io) == 0);
  CHECK(ctx.down == hp);
  CHECK(ctx.counted[0] == 1);  // tally.count.sent
  CHECK(poison[0] == 0);
  p->release();
  k->destroy(state);
  // The module stays mapped: its adapter's table lives for the process (as under the loader).
}

TEST_CASE("modules: a ModuleSet layers module kinds over the built-ins and refuses conflicts") {
  tmc::ModuleSet set;
  CHECK(set.loaded_text() == "none");
  CHECK(set.registry().find("ordering.fifo") != nullptr);
  CHECK(set.registry().find("tally.count") == nullptr);
  REQUIRE(set.load(module_path("tally")).is_ok());
  REQUIRE(set.load(module_path("cpass_plain")).is_ok());
  CHECK(set.loaded_text() == "tally 1.0.0, cpass 0.1.0");
  CHECK(set.registry().find("tally.count") != nullptr);
  CHECK(set.registry().find("cpass.plain") != nullptr);
  CHECK(set.registry().find("ordering.fifo") != nullptr);
  CHECK(tmc::Registry::builtin().find("tally.count") == nullptr);  // the built-ins are untouched
  // congestion.window accepts the module's controller by name.
  const tmc::StageInfo* w = set.registry().find("congestion.window");
  REQUIRE(w != nullptr);
  bool found = false;
  for (const auto& p : w->params) {
    if (p.name == "algorithm") {
      for (auto word : p.one_of) found = found || word == "fixed";
    }
  }
  CHECK(found);
  CHECK(set.make_controller("fixed", {}) != nullptr);
  CHECK(set.make_controller("aimd", {}) != nullptr);
  CHECK(set.make_controller("vegas", {}) == nullptr);

  const tmc::Status again = set.load(module_path("tally"));
  CHECK(again.code() == tmc::Code::MODULE_ERROR);
  CHECK_MESSAGE(contains(again.message(), "conflict: a module of that name is already loaded"), again.message());
  const tmc::Status builtin = set.load(module_path("cpass_builtin"));
  CHECK_MESSAGE(contains(builtin.message(), "conflict: stage kind 'checksum.crc32c' is built in"), builtin.message());

  REQUIRE(set.load(module_path("cpass_ext_a")).is_ok());
  const tmc::Status ext = set.load(module_path("cpass_ext_b"));
  CHECK_MESSAGE(contains(ext.message(), "conflict: wire extension type 200 of 'cpass.ext_b' is owned by 'cpass.ext_a' "
                                        "of module 'cpass-ext-a'"),
                ext.message());

  CHECK(set.check_requested({"tally"}).is_ok());
  const tmc::Status missing = set.check_requested({"tally", "fec"});
  CHECK_MESSAGE(contains(missing.message(), "'fec', not loaded (loaded: tally 1.0.0, cpass 0.1.0, cpass-ext-a 0.1.0)"),
                missing.message());
}

TEST_CASE("modules: a module stage runs in the simulator like a built-in") {
  tmc::ModuleSet set;
  REQUIRE(set.load(module_path("tally")).is_ok());
  REQUIRE(set.load(module_path("cpass_plain")).is_ok());
  tmc::sim::Config cfg;
  cfg.seed = 7;
  tmc::sim::Network net(cfg);
  const auto plan = tmc::sim::make_plan({tmc::sim::stage("ordering.seq"), tmc::sim::stage("tally.count", {{"tick_us", "1000"}}),
                                         tmc::sim::stage("cpass.plain")});
  for (int i = 0; i < 3; ++i) net.add_member(plan, set.registry());
  constexpr int kMessages = 20;
  for (int k = 0; k < kMessages; ++k) {
    net.schedule_send(std::uint64_t(k) * 100'000, 0, std::vector<std::uint8_t>(32, std::uint8_t(k)));
  }
  net.run_until(10'000'000);
  const auto sender = net.counters(0);
  CHECK(sender.get("tally.count.sent") == kMessages);
  CHECK(sender.get("tally.count.ticks") >= 5);
  for (std::size_t r = 1; r < 3; ++r) {
    CHECK(net.deliveries(r).size() == kMessages);
    CHECK(net.counters(r).get("tally.count.received") == kMessages);
    CHECK(net.counters(r).get("tally.count.module_faults") == 0);
  }
}

TEST_CASE("modules: a stage that reports a fault is contained: counted, bypassed, the process lives") {
  tmc::ModuleSet set;
  REQUIRE(set.load(module_path("tally")).is_ok());
  REQUIRE(set.load(module_path("cpass_plain")).is_ok());
  tmc::sim::Config cfg;
  cfg.seed = 3;
  tmc::sim::Network net(cfg);
  SUBCASE("C++ adapter, on send") {
    const auto plan = tmc::sim::make_plan({tmc::sim::stage("tally.count", {{"mode", "fault"}, {"fault_after", "5"}})});
    net.add_member(plan, set.registry());
    net.add_member(plan, set.registry());
    for (int k = 0; k < 10; ++k) net.schedule_send(std::uint64_t(k) * 100'000, 0, std::vector<std::uint8_t>(8, 1));
    net.run_until(5'000'000);
    const auto c = net.counters(0);
    CHECK(c.get("tally.count.module_faults") == 1);
    CHECK(c.get("tally.count.sent") == 5);           // never called after the fault
    CHECK(c.get("drops.unsupported") == 6);          // the faulting message and the 5 after it
    CHECK(net.deliveries(1).size() == 4);
  }
  SUBCASE("C module, on receive") {
    const auto plan = tmc::sim::make_plan({tmc::sim::stage("cpass.plain", {{"fault_on_receive", "true"}})});
    net.add_member(plan, set.registry());
    net.add_member(plan, set.registry());
    for (int k = 0; k < 4; ++k) net.schedule_send(std::uint64_t(k) * 100'000, 0, std::vector<std::uint8_t>(8, 1));
    net.run_until(5'000'000);
    const auto c = net.counters(1);
    CHECK(c.get("cpass.plain.module_faults") == 1);
    CHECK(c.get("drops.unsupported") == 4);
    CHECK(net.deliveries(1).empty());
  }
}

TEST_CASE("modules: a stage whose configure throws fails the build with the module's message") {
  tmc::ModuleSet set;
  REQUIRE(set.load(module_path("tally")).is_ok());
  tmc::sim::Network net(tmc::sim::Config{});
  const auto plan = tmc::sim::make_plan({tmc::sim::stage("tally.count", {{"mode", "throw"}})});
  try {
    net.add_member(plan, set.registry());
    FAIL("the build should have failed");
  } catch (const tmc::Error& e) {
    const std::string what = e.what();
    CHECK_MESSAGE(contains(what, "module tally 1.0.0: create failed: threw: tally was asked to throw"), what);
  }
  // Parameters are validated against the module's own specs, like a built-in's.
  const auto bad = tmc::sim::make_plan({tmc::sim::stage("tally.count", {{"mode", "loud"}})});
  CHECK_THROWS_WITH_AS(net.add_member(bad, set.registry()), doctest::Contains("pass, fault, throw"), tmc::Error);
}

namespace {

std::shared_ptr<tmc::ModuleSet> test_modules() {
  auto set = std::make_shared<tmc::ModuleSet>();
  REQUIRE(set->load(module_path("tally")).is_ok());
  REQUIRE(set->load(module_path("cpass_plain")).is_ok());
  return set;
}

tmc::Manifest parse(const std::string& yaml) {
  tmc::Manifest m;
  tmc::Diagnostics diag;
  const bool ok = tmc::parse_manifest(yaml, "m.yaml", m, diag);
  REQUIRE_MESSAGE(ok, diag.to_string());
  return m;
}

}  // namespace

TEST_CASE("modules: the manifest requests module stages; the compiler places them by layer") {
  auto set = test_modules();
  const tmc::Manifest m = parse(
      "id: mods\nmodules: [tally, cpass]\nreliability: true\nerror checking: true\n"
      "point-to-point ordering: strict\nstages: {cpass.plain: {}, tally.count: {tick_us: 500, mode: pass}}\n");
  REQUIRE(m.stages.size() == 2);
  CHECK(m.stages[0].kind == "cpass.plain");
  CHECK(m.stages[1].params.at("tick_us") == "500");
  // The manifest prints and reads back the same.
  tmc::Manifest again;
  tmc::Diagnostics diag;
  REQUIRE_MESSAGE(tmc::parse_manifest(tmc::to_yaml(m), "again.yaml", again, diag), diag.to_string());
  CHECK(again == m);

  tmc::Plan plan;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), set->registry(), plan);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  const auto kinds = plan.software_kinds();
  // datagram layer: below ordering/sequencing, above reliability; bottom: above the checksum.
  const std::vector<std::string> want = {"ordering.fifo", "ordering.seq", "fragment.split", "tally.count", "reliability.arq",
                                         "membership.heartbeat", "cpass.plain", "checksum.crc32c"};
  std::string got;
  for (const auto& k : kinds) got += k + " ";
  CHECK_MESSAGE(kinds == want, got);
  const std::string text = plan.to_string();
  CHECK_MESSAGE(contains(text, "'stages' asks for it (module tally 1.0.0, sha256 " + set->find("tally")->sha256() + ")"),
                text);
  CHECK_MESSAGE(contains(text, "bottom layer"), text);
}

TEST_CASE("modules: requests the registry cannot satisfy are manifest errors naming the loaded modules") {
  auto set = test_modules();
  auto refused = [&](const std::string& yaml, std::string_view part) {
    tmc::Plan plan;
    const tmc::Status s = tmc::compile(parse(yaml), tmc::Capabilities::defaults(), set->registry(), plan);
    CHECK(s.code() == tmc::Code::INVALID_MANIFEST);
    CHECK_MESSAGE(contains(s.message(), part), s.message());
  };
  refused("id: x\nmodules: [tally]\nstages: {fec.xor: {k: 8}}\n",
          "'stages' asks for 'fec.xor', which no loaded module provides (loaded modules: cpass 0.1.0, tally 1.0.0)");
  refused("id: x\nstages: {ordering.fifo: {}}\n", "a built-in stage");
  refused("id: x\nmodules: [tally]\nstages: {tally.count: {mode: loud}}\n", "pass, fault, throw");
  refused("id: x\nmodules: [tally]\nstages: {tally.count: {volume: 3}}\n", "volume");
  refused("id: x\nmodules: [tally]\nreliability: true\ncongestion control: vegas\n",
          "'congestion control: vegas' is not a controller here (known: none, aimd, cubic, fixed; loaded modules: "
          "cpass 0.1.0, tally 1.0.0)");
  // Without 'modules', a word outside the built-ins is refused while parsing, as always.
  tmc::Manifest m;
  tmc::Diagnostics diag;
  CHECK_FALSE(tmc::parse_manifest("id: x\nreliability: true\ncongestion control: fixed\n", "m.yaml", m, diag));
  CHECK_MESSAGE(contains(diag.to_string(), "must be one of none, aimd, cubic, got \"fixed\""), diag.to_string());
}

TEST_CASE("modules: congestion control resolves to a module's controller") {
  auto set = test_modules();
  const tmc::Manifest m = parse("id: cc\nmodules: [tally]\nreliability: true\ncongestion control: fixed\n");
  tmc::Plan plan;
  const tmc::Status s = tmc::compile(m, tmc::Capabilities::defaults(), set->registry(), plan);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  tmc::sim::Network net(tmc::sim::Config{});
  net.add_member(plan, set->registry());
  net.add_member(plan, set->registry());
  for (int k = 0; k < 30; ++k) net.schedule_send(std::uint64_t(k) * 50'000, 0, std::vector<std::uint8_t>(100, 7));
  net.run_until(2'000'000'000);  // membership heartbeats keep it from going idle
  CHECK(net.deliveries(1).size() == 30);
  // The fixed window never moves: mss 1400 * 10 packets.
  CHECK(net.counters(0).get("congestion.max_window_bytes") == 14000);
}

TEST_CASE("modules: a real channel on loopback runs a module stage") {
  auto set = test_modules();
  tmc::Manifest m = tmc::test::manifest_for("modules-loopback", 3, "alice");
  m.members = {"alice", "bob"};
  m.modules = {"tally", "cpass"};
  m.stages = {{"tally.count", {}}, {"cpass.plain", {}}};
  tmc::OpenOptions o;
  o.modules = set;
  auto a = tmc::Channel::open(m, o);
  m.name = "bob";
  auto b = tmc::Channel::open(m, o);
  REQUIRE(tmc::test::send_n(a, 20, "x"));
  const auto got = tmc::test::receive_n(b, 20);
  CHECK(got.size() == 20);
  auto counter = [](const tmc::ChannelStats& st, std::string_view name) -> std::uint64_t {
    for (const auto& [n, v] : st.counters) {
      if (n == name) return v;
    }
    return 0;
  };
  CHECK(counter(a.stats(), "tally.count.sent") == 20);
  CHECK(counter(b.stats(), "tally.count.received") >= 20);
  CHECK(counter(b.stats(), "cpass.plain.module_faults") == 0);

  // Without the modules, the channel refuses to open, naming what is missing.
  tmc::Channel c;
  const tmc::Status none = tmc::Channel::try_open(m, tmc::OpenOptions{}, c);
  CHECK(none.code() == tmc::Code::MODULE_ERROR);
  auto only_tally = std::make_shared<tmc::ModuleSet>();
  REQUIRE(only_tally->load(module_path("tally")).is_ok());
  tmc::OpenOptions o2;
  o2.modules = only_tally;
  const tmc::Status missing = tmc::Channel::try_open(m, o2, c);
  CHECK_MESSAGE(contains(missing.message(), "'cpass', not loaded (loaded: tally 1.0.0)"), missing.message());
}
