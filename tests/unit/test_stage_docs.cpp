// docs/stages.md is generated from the registry; this keeps it from rotting, and checks
// that every built-in stage describes itself fully.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
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
