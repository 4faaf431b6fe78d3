// Registry of stage kinds, parameter resolution, and the name tables of stage.hpp.
#include <charconv>
#include <cstdlib>

#include "tmc/stage.hpp"

namespace tmc {

std::string_view param_type_name(ParamType t) noexcept {
  switch (t) {
    case ParamType::boolean: return "bool";
    case ParamType::integer: return "int";
    case ParamType::real: return "real";
    case ParamType::string: return "string";
  }
  return "?";
}

std::string param_value_to_string(const ParamValue& v) {
  struct V {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      std::string s = std::to_string(d);
      while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
      return s;
    }
    std::string operator()(const std::string& s) const { return s; }
  };
  return std::visit(V{}, v);
}

std::string_view event_type_name(EventType t) noexcept {
  switch (t) {
    case EventType::gap_skipped: return "gap_skipped";
    case EventType::epoch_changed: return "epoch_changed";
    case EventType::delivery_met: return "delivery_met";
    case EventType::delivery_failed: return "delivery_failed";
    case EventType::member_joined: return "member_joined";
    case EventType::member_left: return "member_left";
    case EventType::slow_member: return "slow_member";
    case EventType::member_failed: return "member_failed";
    case EventType::member_restarted: return "member_restarted";
    case EventType::sequencer_changed: return "sequencer_changed";
  }
  return "?";
}

std::string_view drop_reason_name(DropReason r) noexcept {
  switch (r) {
#define TMC_DROP_NAME(name, text) \
  case DropReason::name:          \
    return #name;
    TMC_DROP_MAP(TMC_DROP_NAME)
#undef TMC_DROP_NAME
    case DropReason::count_: break;
  }
  return "?";
}

std::string_view drop_reason_text(DropReason r) noexcept {
  switch (r) {
#define TMC_DROP_TEXT(name, text) \
  case DropReason::name:          \
    return text;
    TMC_DROP_MAP(TMC_DROP_TEXT)
#undef TMC_DROP_TEXT
    case DropReason::count_: break;
  }
  return "?";
}

// --- Params -----------------------------------------------------------------------------

bool Params::has(std::string_view name) const { return values_.find(name) != values_.end(); }

bool Params::get_bool(std::string_view name, bool fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  if (const bool* b = std::get_if<bool>(&it->second)) return *b;
  return fallback;
}

std::int64_t Params::get_int(std::string_view name, std::int64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  if (const auto* i = std::get_if<std::int64_t>(&it->second)) return *i;
  return fallback;
}

double Params::get_real(std::string_view name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  if (const auto* d = std::get_if<double>(&it->second)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&it->second)) return static_cast<double>(*i);
  return fallback;
}

std::string Params::get_string(std::string_view name, std::string fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return fallback;
}

// --- Registry ---------------------------------------------------------------------------

const Registry& Registry::builtin() {
  static const Registry r = [] {
    Registry reg;
    register_builtin_stages(reg);
    return reg;
  }();
  return r;
}

Status Registry::add(StageInfo info) {
  if (info.kind.empty() || !info.factory) {
    return {Code::INVALID_ARGUMENT, "stage registration needs a kind and a factory"};
  }
  std::string kind(info.kind);
  if (kinds_.count(kind) != 0) {
    return {Code::INVALID_ARGUMENT, "stage kind '" + kind + "' is registered twice"};
  }
  kinds_.emplace(std::move(kind), std::move(info));
  return Status::ok();
}

const StageInfo* Registry::find(std::string_view kind) const noexcept {
  auto it = kinds_.find(kind);
  return it == kinds_.end() ? nullptr : &it->second;
}

std::vector<const StageInfo*> Registry::all() const {
  std::vector<const StageInfo*> out;
  out.reserve(kinds_.size());
  for (const auto& [k, v] : kinds_) out.push_back(&v);
  return out;
}

namespace {

bool parse_value(ParamType type, std::string_view text, ParamValue& out) {
  switch (type) {
    case ParamType::boolean:
      if (text == "true" || text == "yes" || text == "on") {
        out = true;
        return true;
      }
      if (text == "false" || text == "no" || text == "off") {
        out = false;
        return true;
      }
      return false;
    case ParamType::integer: {
      std::int64_t v = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || ptr != text.data() + text.size()) return false;
      out = v;
      return true;
    }
    case ParamType::real: {
      std::string s(text);
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) return false;
      out = v;
      return true;
    }
    case ParamType::string:
      out = std::string(text);
      return true;
  }
  return false;
}

}  // namespace

bool Registry::resolve_params(const StageInfo& info, const std::map<std::string, std::string, std::less<>>& given,
                              Params& out, std::vector<std::string>& errors) const {
  bool ok = true;
  for (const auto& [name, text] : given) {
    const ParamSpec* spec = nullptr;
    for (const auto& s : info.params) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      std::string known;
      for (const auto& s : info.params) known += (known.empty() ? "" : ", ") + std::string(s.name);
      errors.push_back("stage '" + std::string(info.kind) + "': unknown parameter '" + name + "'" +
                       (known.empty() ? " (it takes none)" : " (known: " + known + ")"));
      ok = false;
      continue;
    }
    ParamValue v;
    if (!parse_value(spec->type, text, v)) {
      errors.push_back("stage '" + std::string(info.kind) + "': parameter '" + name + "' expects " +
                       std::string(param_type_name(spec->type)) + ", got '" + text + "'");
      ok = false;
      continue;
    }
    out.set(name, std::move(v));
  }
  for (const auto& s : info.params) {
    if (out.has(s.name)) continue;
    ParamValue v;
    if (parse_value(s.type, s.default_value, v)) out.set(std::string(s.name), std::move(v));
  }
  return ok;
}

}  // namespace tmc
