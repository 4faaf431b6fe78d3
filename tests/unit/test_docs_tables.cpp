// docs/manifest.md and docs/capabilities.md embed the tables `tmc properties --markdown` and
// `tmc capabilities --markdown` print; this keeps them equal to the code's property tables.
// After changing a row: TMC_UPDATE_DOCS=1 build/tests/tmc_unit_tests -tc='docs tables*'
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>

#include "plan_test_support.hpp"
#include "runtime/manifest/internal.hpp"
#include "tmc/manifest.hpp"
#include "tmc/stage.hpp"
#include "tmc/wire.hpp"

using namespace tmc;

namespace {

void check_embedded(const char* doc, const std::string& marker, const std::string& table) {
  const auto path = tmc::test::source_dir() / "docs" / doc;
  std::string text = tmc::test::read_file(path);
  const std::string begin = "<!-- BEGIN " + marker + " -->\n";
  const std::string end = "<!-- END " + marker + " -->";
  const auto b = text.find(begin);
  const auto e = text.find(end);
  REQUIRE_MESSAGE(b != std::string::npos, doc << " lacks the marker " << begin);
  REQUIRE(e != std::string::npos);
  REQUIRE(b < e);
  const std::string current = text.substr(b + begin.size(), e - b - begin.size());
  const char* update = std::getenv("TMC_UPDATE_DOCS");
  if (update != nullptr && std::string(update) == "1") {
    text.replace(b + begin.size(), e - b - begin.size(), table);
    tmc::test::write_file(path, text);
    return;
  }
  CHECK_MESSAGE(current == table, doc << " is out of date; TMC_UPDATE_DOCS=1 rewrites its table");
}

}  // namespace

TEST_CASE("docs tables: manifest.md and capabilities.md match the property tables") {
  check_embedded("manifest.md", "tmc properties --markdown", detail::properties_markdown(manifest_properties()));
  check_embedded("capabilities.md", "tmc capabilities --markdown",
                 detail::properties_markdown(detail::capability_properties()));
}

TEST_CASE("docs tables: wire-format.md's extension table matches the stages' StageInfo") {
  check_embedded("wire-format.md", "wire_extensions_markdown", wire_extensions_markdown(Registry::builtin()));
}

TEST_CASE("docs tables: every built-in extension type has exactly one owner") {
  std::map<int, std::string> owner;
  for (const StageInfo* s : Registry::builtin().all()) {
    for (const WireExtension& e : s->extensions) {
      CAPTURE(s->kind);
      CAPTURE(int{e.type});
      CHECK(e.type >= 1);
      CHECK(e.type < static_cast<int>(wire::Ext::module_first));
      CHECK(!e.name.empty());
      CHECK(!e.carried_on.empty());
      CHECK(!e.body.empty());
      CHECK(owner.emplace(e.type, std::string(s->kind)).second);
    }
  }
}
