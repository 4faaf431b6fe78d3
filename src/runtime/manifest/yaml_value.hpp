// YAML text -> tmc::Value, the only place that talks to yaml-cpp.
#pragma once

#include <string>
#include <string_view>

#include "tmc/diagnostics.hpp"
#include "tmc/manifest.hpp"

namespace tmc::detail {

/// Deepest nesting accepted; manifests and capability files need three levels.
inline constexpr int kMaxYamlDepth = 32;
/// Most nodes one document may expand to (aliases included), so that "billion laughs"
/// documents are refused instead of exhausting memory.
inline constexpr std::size_t kMaxYamlNodes = 10000;

/// Parse `text` as one YAML document. Never throws: syntax errors, over-deep nesting and
/// oversized documents become diagnostics at the position yaml-cpp reports (1-based).
bool yaml_to_value(std::string_view text, std::string_view file, Value& out, Diagnostics& diag);

/// Read a whole file; on failure, one diagnostic naming the file and the reason.
bool read_text_file(const std::string& path, std::string& out, Diagnostics& diag);

}  // namespace tmc::detail
