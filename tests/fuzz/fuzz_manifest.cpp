// libFuzzer target: manifest and capability parsing, printing and compiling.
//
// Every input is fed to parse_manifest() and parse_capabilities(). Neither may throw,
// crash, hang or exhaust memory, whatever the bytes. A manifest that parses must also
// survive to_yaml() -> parse_manifest() unchanged, and compile() (any status is fine).
//
//   clang++ -fsanitize=fuzzer,address ... ; ./fuzz_manifest tests/fuzz/seeds/manifest -max_total_time=20
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tmc/capabilities.hpp"
#include "tmc/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (tmc::parse_manifest(text, "fuzz.yaml", m, diag)) {
    if (!diag.ok()) std::abort();  // success with problems reported is a contract break
    const std::string yaml = tmc::to_yaml(m);
    tmc::Manifest back;
    tmc::Diagnostics again;
    if (!tmc::parse_manifest(yaml, "roundtrip.yaml", back, again) || !(back == m)) std::abort();
    tmc::Plan plan;
    (void)tmc::compile(m, tmc::Capabilities::defaults(), tmc::Registry::builtin(), plan);
    (void)plan.to_string();
  } else if (diag.ok()) {
    std::abort();  // failure must say why
  }

  tmc::Capabilities caps;
  tmc::Diagnostics cdiag;
  if (tmc::parse_capabilities(text, "fuzz-caps.yaml", caps, cdiag) != cdiag.ok()) std::abort();
  return 0;
}
