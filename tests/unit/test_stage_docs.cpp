// docs/stages.md is generated from the registry; this keeps it from rotting, and checks
// that every built-in stage describes itself fully.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "tmc/stage.hpp"

using namespace tmc;

TEST_CASE("stage docs: docs/stages.md matches stages_markdown(Registry::builtin())") {
  const std::string want = stages_markdown(Registry::builtin());
  const std::string path = std::string(TMC_SOURCE_DIR) + "/docs/stages.md";
  if (const char* update = std::getenv("TMC_UPDATE_DOCS"); update != nullptr && *update != '\0') {
    std::ofstream(path, std::ios::binary) << want;
    MESSAGE("wrote " << path);
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream have;
  have << in.rdbuf();
  INFO("docs/stages.md is out of date; regenerate it with: TMC_UPDATE_DOCS=1 <build>/tests/tmc_unit_tests "
       "-tc='stage docs*'");
  CHECK(have.str() == want);
}

TEST_CASE("stage docs: every built-in stage has a synopsis, notes, documented params and valid defaults") {
  const Registry& r = Registry::builtin();
  REQUIRE(!r.all().empty());
  for (const StageInfo* s : r.all()) {
    CAPTURE(s->kind);
    CHECK(!s->synopsis.empty());
    CHECK(!s->notes.empty());
    CHECK(s->kind.find('.') != std::string_view::npos);
    for (const ParamSpec& p : s->params) CHECK(!p.doc.empty());
    for (const CounterSpec& c : s->counters) CHECK(!c.doc.empty());
    Params params;
    std::vector<std::string> errors;
    CHECK(r.resolve_params(*s, {}, params, errors));
    for (const ParamSpec& p : s->params) CHECK(params.has(p.name));  // every default parses
    // Defaults configure cleanly, but for a stage that needs a file its defaults cannot name:
    // that one refuses, saying what is missing.
    std::unique_ptr<Stage> st = s->factory();
    if (s->kind == "security.aead") {
      CHECK_FALSE(st->configure(params, StageEnv{}, errors));
      REQUIRE(errors.size() == 1);
      CHECK(errors[0].find("no key file given") != std::string::npos);
      continue;
    }
    CHECK(st->configure(params, StageEnv{}, errors));
    CHECK(errors.empty());
  }
  for (const char* kind : {"ordering.seq", "ordering.fifo", "checksum.crc32c", "faults.inject"}) {
    CHECK(r.find(kind) != nullptr);
  }
}

TEST_CASE("stage docs: each section shows its parameters' allowed values and its placement facts") {
  Registry r;
  static constexpr std::string_view kModes[] = {"fast", "slow"};
  REQUIRE(r.add(StageInfo{.kind = "demo.stage",
                          .synopsis = "s",
                          .notes = "n",
                          .params = {{.name = "window", .type = ParamType::integer, .default_value = "8", .doc = "w",
                                      .min = 1, .max = 64},
                                     {.name = "mode", .type = ParamType::string, .default_value = "fast", .doc = "m",
                                      .one_of = kModes},
                                     {.name = "name", .type = ParamType::string, .default_value = "", .doc = "x"}},
                          .factory = [] { return std::unique_ptr<Stage>(); },
                          .wire_bytes_per_datagram = 10,
                          .wire_bytes_per_message = 2,
                          .serves = "reliability",
                          .requires_below = {"ordering.seq", "membership.heartbeat"},
                          .per_message = true,
                          .extensions = {{.type = 7, .name = "rel"}}})
              .is_ok());
  const std::string md = stages_markdown(r);
  CHECK(md.find("| `window` | int | `8` | 1..64 | w |") != std::string::npos);
  CHECK(md.find("| `mode` | string | `fast` | fast \\| slow | m |") != std::string::npos);
  CHECK(md.find("| `name` | string | `` | any | x |") != std::string::npos);
  CHECK(md.find("- Serves: `reliability`\n") != std::string::npos);
  CHECK(md.find("- Wire bytes: 10 per datagram, 2 per message\n") != std::string::npos);
  CHECK(md.find("- Requires below: `ordering.seq`, `membership.heartbeat`\n") != std::string::npos);
  CHECK(md.find("- Requires above: none\n") != std::string::npos);
  CHECK(md.find("- Per-message manifests: honoured\n") != std::string::npos);
  CHECK(md.find("- Wire extensions: `rel` (type 7)\n") != std::string::npos);
}
