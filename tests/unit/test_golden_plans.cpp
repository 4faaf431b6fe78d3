// Golden plans: every tests/manifests/*.yaml compiled as `tmc plan` would, compared with
// the .plan (a compiled plan) or .errors (every problem) file beside it; and the example
// manifests of examples/ with the capability files listed in tests/manifests/examples.list.
//
// To accept new output after an intended change:  TMC_UPDATE_GOLDEN=1 ./tmc_unit_tests
// then review the diff of tests/manifests/ like any other change.
//
// A manifest chooses its capability file with a comment line "# caps: PATH" (relative to
// the source tree); without one it is compiled with Capabilities::defaults().
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <vector>

#include "plan_test_support.hpp"
#include "runtime/manifest/internal.hpp"
#include "tmc/capabilities.hpp"
#include "tmc/manifest.hpp"

namespace fs = std::filesystem;
using namespace tmc;
using tmc::test::read_file;
using tmc::test::source_dir;

namespace {

bool updating() {
  const char* v = std::getenv("TMC_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// A message that shows where the texts part: the first differing line, both versions of
// it, and the whole actual output, ready to paste into the golden file after review.
std::string diff_message(const std::string& name, const std::string& want, const std::string& got) {
  const auto a = lines_of(want);
  const auto b = lines_of(got);
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::ostringstream m;
  m << name << " differs from its golden file at line " << (i + 1) << "\n"
    << "  expected: " << (i < a.size() ? a[i] : "(end of file)") << "\n"
    << "  actual:   " << (i < b.size() ? b[i] : "(end of output)") << "\n"
    << "--- actual output (TMC_UPDATE_GOLDEN=1 accepts it) ---\n"
    << got;
  return m.str();
}

std::string caps_directive(const std::string& manifest_text) {
  for (const auto& line : lines_of(manifest_text)) {
    const std::string tag = "# caps: ";
    if (line.rfind(tag, 0) == 0) return line.substr(tag.size());
  }
  return {};
}

// Compile one manifest as `tmc plan` would and compare with <stem>.plan or <stem>.errors.
void check_golden(const std::string& manifest_rel, const std::string& caps_rel, const fs::path& stem) {
  CAPTURE(manifest_rel);
  CAPTURE(caps_rel);
  Capabilities caps = Capabilities::defaults();
  if (!caps_rel.empty()) {
    Diagnostics diag;
    REQUIRE_MESSAGE(parse_capabilities(read_file(source_dir() / caps_rel), caps_rel, caps, diag), diag.to_string());
  }
  std::string out;
  const bool planned = detail::render_plan(read_file(source_dir() / manifest_rel), manifest_rel, caps,
                                           tmc::test::planning_registry(), out);
  fs::path expected = stem;
  expected += planned ? ".plan" : ".errors";
  fs::path other = stem;
  other += planned ? ".errors" : ".plan";
  if (updating()) {
    tmc::test::write_file(expected, out);
    if (fs::exists(other)) fs::remove(other);
    return;
  }
  CHECK_MESSAGE(!fs::exists(other), manifest_rel << " now " << (planned ? "compiles" : "fails") << " but "
                                                 << other.string() << " expects otherwise:\n"
                                                 << out);
  REQUIRE_MESSAGE(fs::exists(expected), expected.string() << " is missing; TMC_UPDATE_GOLDEN=1 writes it:\n" << out);
  const std::string want = read_file(expected);
  CHECK_MESSAGE(want == out, diff_message(manifest_rel, want, out));
}

}  // namespace

TEST_CASE("golden plans: tests/manifests/*.yaml") {
  const fs::path dir = source_dir() / "tests" / "manifests";
  std::vector<fs::path> manifests;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".yaml") manifests.push_back(e.path());
  }
  std::sort(manifests.begin(), manifests.end());
  REQUIRE(manifests.size() >= 20);  // a broken glob must not pass by checking nothing

  std::set<std::string> stems;
  for (const auto& p : manifests) {
    const std::string rel = "tests/manifests/" + p.filename().string();
    stems.insert(p.stem().string());
    check_golden(rel, caps_directive(read_file(p)), dir / p.stem());
  }
  // A golden file whose manifest was removed or renamed is an error, not dead weight.
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (ext != ".plan" && ext != ".errors") continue;
    CHECK_MESSAGE(stems.count(e.path().stem().string()) == 1, e.path().string() << " has no manifest");
  }
}

TEST_CASE("golden plans: examples/ manifests with examples/caps") {
  const fs::path list = source_dir() / "tests" / "manifests" / "examples.list";
  int cases = 0;
  for (const auto& line : lines_of(read_file(list))) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string manifest;
    std::string caps;
    words >> manifest >> caps;
    std::string name = fs::path(manifest).stem().string();
    if (!caps.empty()) name += "--" + fs::path(caps).stem().string();
    check_golden(manifest, caps, source_dir() / "tests" / "manifests" / "examples" / name);
    ++cases;
  }
  CHECK(cases >= 6);
}

TEST_CASE("Fig. 3: host A offloads error checking, host B runs it in software") {
  Manifest m;
  Diagnostics diag;
  REQUIRE(load_manifest((source_dir() / "examples/manifests/ordered-checked.yaml").string(), m, diag));
  auto plan_with = [&](const char* caps_file) {
    Capabilities caps;
    Diagnostics d;
    REQUIRE(load_capabilities((source_dir() / caps_file).string(), caps, d));
    Plan plan;
    const Status s = compile(m, caps, tmc::test::planning_registry(), plan);
    REQUIRE_MESSAGE(s.is_ok(), s.to_string());
    return plan;
  };
  const Plan a = plan_with("examples/caps/host-a-offload.yaml");
  const Plan b = plan_with("examples/caps/host-b-plain.yaml");
  auto crc = [](const Plan& p) {
    auto it = std::find_if(p.stages.begin(), p.stages.end(),
                           [](const PlannedStage& s) { return s.kind == "checksum.crc32c"; });
    REQUIRE(it != p.stages.end());
    return *it;
  };
  CHECK(crc(a).placement == Placement::offload);
  CHECK(crc(a).offload == "nic.checksum");
  CHECK(crc(b).placement == Placement::software);
  CHECK(a.software_kinds() == std::vector<std::string>{"ordering.fifo", "ordering.seq"});
  CHECK(b.software_kinds() == std::vector<std::string>{"ordering.fifo", "ordering.seq", "checksum.crc32c"});
  // Offloaded, the checksum costs no bytes; in software its trailer takes 4.
  CHECK(a.transport.max_payload_bytes == b.transport.max_payload_bytes + 4);
  CHECK(a.transport.udp_checksum);
  CHECK(b.transport.udp_checksum);
}
