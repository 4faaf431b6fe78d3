// Internals of manifests, capabilities and the compiler shared by src/runtime, the `tmc`
// tool and the tests. Not installed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "primitives/common/endpoint.hpp"
#include "tmc/capabilities.hpp"
#include "tmc/manifest.hpp"

namespace tmc::detail {

struct FieldMeta;

/// A `members` entry: "name" or "name@ip:port". `endpoint` is empty for a bare name.
struct MemberEntry {
  std::string name;
  std::string endpoint;  ///< "ip:port", or empty
};
bool parse_member(std::string_view text, MemberEntry& out);
/// The group a manifest without 'group' uses: 239.255.X.Y with X.Y the low 16 bits of the
/// FNV-1a hash of the channel id (the same hash the wire header carries), so every member
/// with the same id derives the same group with no coordination.
std::string derived_group(std::string_view id);

/// The row of the manifest table for a Manifest member ("reliability"), for the compiler's
/// messages (key as the paper spells it, and where an unavailable property is planned).
const FieldMeta& manifest_row(std::string_view field);

/// Rows that do not match their struct (missing, extra, out of order, duplicated keys).
/// Empty when the tables are right; the unit tests assert that.
std::vector<std::string> manifest_schema_problems();
std::vector<std::string> capabilities_schema_problems();

/// Rows of the capability table, for `tmc capabilities` and docs/capabilities.md.
std::vector<PropertyInfo> capability_properties();

/// Markdown table of properties (the `--markdown` form of `tmc properties`).
std::string properties_markdown(const std::vector<PropertyInfo>& rows);
/// Plain-text table of properties.
std::string properties_text(const std::vector<PropertyInfo>& rows);

/// What `tmc plan` prints for one manifest text: the plan (returns true) or every problem,
/// one per line (returns false). Shared by the tool and the golden tests so that both show
/// exactly the same text.
bool render_plan(std::string_view manifest_yaml, std::string_view manifest_name, const Capabilities& caps,
                 const Registry& registry, std::string& out);

}  // namespace tmc::detail
