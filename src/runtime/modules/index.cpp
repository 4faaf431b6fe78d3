#include "runtime/modules/index.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

#include "runtime/manifest/yaml_value.hpp"
#include "runtime/modules/fields.hpp"

namespace tmc::modules {
namespace {

using detail::field;
using detail::line_of;

constexpr std::string_view kStep = "index";

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool is_name(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_name_char); }

// A relative path that stays inside the repository directory.
bool is_contained_path(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    const std::size_t end = std::min(p.find('/', start), p.size());
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

// Reads one map's fields, refusing unknown keys and wrong types with the field's line.
class Reader {
 public:
  Reader(const Value& map, const std::string& file, std::string module)
      : map_(map), file_(file), module_(std::move(module)) {}

  Status fail(const Value* at, std::string_view reason) const {
    return refusal(kStep, file_, at != nullptr ? line_of(*at, line_of(map_)) : line_of(map_), module_, reason);
  }

  Status unknown_keys(std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : map_.as_map()) {
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        std::string list;
        for (std::string_view n : known) list += (list.empty() ? "" : ", ") + std::string(n);
        return fail(&v, "unknown field '" + k + "' (known: " + list + ")");
      }
    }
    return Status::ok();
  }

  Status string(std::string_view key, std::string& out, bool required = true) const {
    const Value* v = field(map_, key);
    if (v == nullptr) return required ? fail(nullptr, "missing field '" + std::string(key) + "'") : Status::ok();
    if (!v->is_string()) {
      return fail(v, "field '" + std::string(key) + "' must be a string (quote it), not " + std::string(v->type_name()));
    }
    out = v->as_string();
    return Status::ok();
  }

  Status integer(std::string_view key, std::int64_t& out, std::int64_t min, bool required = true) const {
    const Value* v = field(map_, key);
    if (v == nullptr) return required ? fail(nullptr, "missing field '" + std::string(key) + "'") : Status::ok();
    if (!v->is_int()) {
      return fail(v, "field '" + std::string(key) + "' must be an integer, not " + std::string(v->type_name()));
    }
    if (v->as_int() < min) {
      return fail(v, "field '" + std::string(key) + "' must be at least " + std::to_string(min) + ", not " +
                         std::to_string(v->as_int()));
    }
    out = v->as_int();
    return Status::ok();
  }

  Status names(std::string_view key, std::vector<std::string>& out) const {
    const Value* v = field(map_, key);
    if (v == nullptr || v->is_null()) return Status::ok();
    if (!v->is_list()) return fail(v, "field '" + std::string(key) + "' must be a list of names");
    for (const Value& item : v->as_list()) {
      if (!item.is_string() || !is_name(item.as_string())) {
        return fail(&item, "field '" + std::string(key) + "' must list names made of letters, digits, '.', '_', '-'");
      }
      out.push_back(item.as_string());
    }
    return Status::ok();
  }

  [[nodiscard]] const Value* at(std::string_view key) const { return field(map_, key); }

 private:
  const Value& map_;
  const std::string& file_;
  std::string module_;
};

Status parse_module(const Value& v, const std::string& file, IndexMode mode, ModuleEntry& m) {
  m.line = line_of(v);
  if (!v.is_map()) return refusal(kStep, file, m.line, "", "each entry of 'modules' must be a map");
  // The name first, so that every later refusal can name the module.
  if (Status s = Reader(v, file, "").string("name", m.name); !s) return s;
  if (!is_name(m.name)) {
    return Reader(v, file, "").fail(field(v, "name"), "field 'name' must be made of letters, digits, '.', '_', '-'");
  }
  const Reader r(v, file, m.name);
  if (Status s = r.unknown_keys({"name", "version", "abi", "file", "sha256", "stages", "controllers"}); !s) return s;
  if (Status s = r.string("version", m.version); !s) return s;
  if (Status s = r.integer("abi", m.abi, 1); !s) return s;
  if (Status s = r.string("file", m.file); !s) return s;
  if (!is_contained_path(m.file)) {
    return r.fail(r.at("file"), "field 'file' must be a relative path inside the repository (no '..', no leading '/')");
  }
  std::string hex;
  if (Status s = r.string("sha256", hex, mode == IndexMode::signed_index); !s) return s;
  if (!hex.empty()) {
    Sha256 d{};
    if (!from_hex(hex, d)) return r.fail(r.at("sha256"), "field 'sha256' must be 64 hex digits");
    m.sha256 = d;
  }
  if (Status s = r.names("stages", m.stages); !s) return s;
  if (Status s = r.names("controllers", m.controllers); !s) return s;
  return Status::ok();
}

std::string yaml_string(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string name_list(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + yaml_string(names[i]);
  return out + "]";
}

}  // namespace

const ModuleEntry* Index::find(std::string_view name) const {
  for (const ModuleEntry& m : modules) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const ModuleEntry* Index::provider_of(std::string_view kind) const {
  for (const ModuleEntry& m : modules) {
    if (std::find(m.stages.begin(), m.stages.end(), kind) != m.stages.end() ||
        std::find(m.controllers.begin(), m.controllers.end(), kind) != m.controllers.end()) {
      return &m;
    }
  }
  return nullptr;
}

std::optional<std::chrono::sys_seconds> parse_utc(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SSZ, exactly.
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text[19] != 'Z') {
    return std::nullopt;
  }
  auto num = [&](std::size_t pos, std::size_t len, int& out) {
    out = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) || !num(17, 2, s)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(y), std::chrono::month(static_cast<unsigned>(mo)),
                                        std::chrono::day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  return std::chrono::sys_days(ymd) + std::chrono::hours(h) + std::chrono::minutes(mi) + std::chrono::seconds(s);
}

std::string format_utc(std::chrono::sys_seconds t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd(day);
  const std::chrono::hh_mm_ss hms(t - day);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

Result<Index> parse_index(std::string_view text, const std::string& file, IndexMode mode) {
  Value doc;
  Diagnostics diag;
  if (!tmc::detail::yaml_to_value(text, file, doc, diag)) {
    const Diagnostic& d = diag.items().front();
    return refusal(kStep, file, d.where.line, "", "malformed YAML: " + d.message);
  }
  if (!doc.is_map()) return refusal(kStep, file, 1, "", "the index must be a YAML map (format, repository, ...)");
  const Reader r(doc, file, "");
  if (Status s = r.unknown_keys({"format", "repository", "version", "expires", "modules"}); !s) return s;
  Index idx;
  if (Status s = r.integer("format", idx.format, 1); !s) return s;
  if (idx.format != kIndexFormat) {
    return r.fail(r.at("format"), "index format " + std::to_string(idx.format) + " is not supported (this build reads format " +
                                      std::to_string(kIndexFormat) + ")");
  }
  if (Status s = r.string("repository", idx.repository); !s) return s;
  if (!is_name(idx.repository)) {
    return r.fail(r.at("repository"), "field 'repository' must be made of letters, digits, '.', '_', '-'");
  }
  const bool required = mode == IndexMode::signed_index;
  if (Status s = r.integer("version", idx.version, 1, required); !s) return s;
  std::string expires;
  if (Status s = r.string("expires", expires, required); !s) return s;
  if (!expires.empty()) {
    idx.expires = parse_utc(expires);
    if (!idx.expires) {
      return r.fail(r.at("expires"), "field 'expires' must be a UTC time like \"2027-01-06T09:00:00Z\", not '" + expires + "'");
    }
  }
  const Value* mods = r.at("modules");
  if (mods == nullptr) return r.fail(nullptr, "missing field 'modules'");
  if (!mods->is_null()) {
    if (!mods->is_list()) return r.fail(mods, "field 'modules' must be a list");
    std::set<std::string> names;
    for (const Value& v : mods->as_list()) {
      ModuleEntry m;
      if (Status s = parse_module(v, file, mode, m); !s) return s;
      if (!names.insert(m.name).second) return refusal(kStep, file, m.line, m.name, "the module is listed twice");
      // A kind is found by name, so exactly one module may provide it.
      for (const auto* kinds : {&m.stages, &m.controllers}) {
        for (const std::string& kind : *kinds) {
          if (const ModuleEntry* other = idx.provider_of(kind)) {
            return refusal(kStep, file, m.line, m.name,
                           "'" + kind + "' is already provided by module '" + other->name + "'");
          }
        }
      }
      idx.modules.push_back(std::move(m));
    }
  }
  return idx;
}

std::string render_index(const Index& index) {
  std::string out = "# libTMC module repository index: written by `tmc modules sign`, signed in index.yaml.sig.\n";
  out += "format: " + std::to_string(index.format) + "\n";
  out += "repository: " + yaml_string(index.repository) + "\n";
  if (index.version > 0) out += "version: " + std::to_string(index.version) + "\n";
  if (index.expires) out += "expires: " + yaml_string(format_utc(*index.expires)) + "\n";
  out += index.modules.empty() ? "modules: []\n" : "modules:\n";
  for (const ModuleEntry& m : index.modules) {
    out += "  - name: " + yaml_string(m.name) + "\n";
    out += "    version: " + yaml_string(m.version) + "\n";
    out += "    abi: " + std::to_string(m.abi) + "\n";
    out += "    file: " + yaml_string(m.file) + "\n";
    if (m.sha256) out += "    sha256: " + yaml_string(to_hex(*m.sha256)) + "\n";
    out += "    stages: " + name_list(m.stages) + "\n";
    out += "    controllers: " + name_list(m.controllers) + "\n";
  }
  return out;
}

}  // namespace tmc::modules
