// Small readers over a parsed YAML map, shared by the repository's file formats (index,
// trust file, key and signature files, state file). Not installed.
#pragma once

#include <string>
#include <string_view>

#include "tmc/manifest.hpp"

namespace tmc::modules::detail {

/// The value under `key` in `map`, or nullptr (also when `map` is not a map).
inline const Value* field(const Value& map, std::string_view key) {
  if (!map.is_map()) return nullptr;
  for (const auto& [k, v] : map.as_map()) {
    if (k == key) return &v;
  }
  return nullptr;
}

/// The line a value was written on, or the fallback when it carries none.
inline int line_of(const Value& v, int fallback = 0) { return v.where.line > 0 ? v.where.line : fallback; }

}  // namespace tmc::modules::detail
