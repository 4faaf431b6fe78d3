// The property table as text: `tmc properties` and docs/manifest.md.
#include <algorithm>

#include "runtime/manifest/internal.hpp"

namespace tmc::detail {

namespace {

std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else {
      out += c;
    }
  }
  return out;
}

std::string code(std::string_view s) { return s.empty() ? "" : "`" + md_cell(s) + "`"; }

}  // namespace

std::string properties_markdown(const std::vector<PropertyInfo>& rows) {
  std::string out = "| key | alias | type | default | per message | available | doc |\n";
  out += "|---|---|---|---|---|---|---|\n";
  for (const auto& p : rows) {
    out += "| " + code(p.key) + " | " + (p.alias == p.key ? std::string("") : code(p.alias)) + " | " + md_cell(p.type) +
           " | " + code(p.default_value) + " | " + (p.per_message ? "yes" : "") + " | " +
           (p.available ? "yes" : "not yet") + " | " + md_cell(p.doc) + " |\n";
  }
  return out;
}

std::string properties_text(const std::vector<PropertyInfo>& rows) {
  std::size_t key_w = 3;
  std::size_t type_w = 4;
  std::size_t def_w = 7;
  for (const auto& p : rows) {
    key_w = std::max(key_w, p.key.size());
    type_w = std::max(type_w, p.type.size());
    def_w = std::max(def_w, p.default_value.size());
  }
  auto pad = [](std::string s, std::size_t w) {
    s.resize(std::max(s.size(), w), ' ');
    return s;
  };
  std::string out = pad("key", key_w) + "  " + pad("type", type_w) + "  " + pad("default", def_w) + "  flags\n";
  for (const auto& p : rows) {
    std::string flags;
    if (p.per_message) flags += "per-message ";
    if (!p.available) flags += "not-yet ";
    out += pad(p.key, key_w) + "  " + pad(p.type, type_w) + "  " + pad(p.default_value, def_w) + "  " + flags + "\n";
    out += pad("", key_w) + "  " + (p.alias != p.key ? "alias " + p.alias + ": " : std::string()) + p.doc + "\n";
  }
  return out;
}

}  // namespace tmc::detail
