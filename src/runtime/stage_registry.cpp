// Registry of stage kinds, parameter resolution, and the name tables of stage.hpp.
#include <algorithm>
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
    case ParamType::string_list: return "list of strings";
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
    std::string operator()(const std::vector<std::string>& list) const {
      std::string out;
      for (const auto& item : list) out += (out.empty() ? "" : ",") + item;
      return out;
    }
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
    case EventType::member_refused: return "member_refused";
    case EventType::delivery_forgotten: return "delivery_forgotten";
    case EventType::delivery_expired: return "delivery_expired";
  }
  return "?";
}

std::string_view event_cause_name(EventCause c) noexcept {
  switch (c) {
    case EventCause::none: return "";
    case EventCause::timeout: return "timeout";
    case EventCause::released: return "released";
    case EventCause::forgotten: return "forgotten";
    case EventCause::expired: return "expired";
  }
  return "?";
}

std::string_view stage_layer_name(StageLayer l) noexcept {
  switch (l) {
    case StageLayer::none: return "";
    case StageLayer::ordering: return "ordering";
    case StageLayer::message: return "message";
    case StageLayer::datagram: return "datagram";
    case StageLayer::repair: return "repair";
    case StageLayer::bottom: return "bottom";
  }
  return "";
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

const std::string& Params::text(std::string_view name) const {
  static const std::string kEmpty;
  auto it = values_.find(name);
  if (it == values_.end()) return kEmpty;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return kEmpty;
}

const std::vector<std::string>& Params::list(std::string_view name) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(name);
  if (it == values_.end()) return kEmpty;
  if (const auto* l = std::get_if<std::vector<std::string>>(&it->second)) return *l;
  return kEmpty;
}

// --- Allowed values ---------------------------------------------------------------------

namespace {

// Shortest text that reads back as the same double ("1", "0.5", "inf").
std::string real_text(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(d);
}

std::string words_text(std::span<const std::string_view> words, std::string_view sep) {
  std::string out;
  for (auto w : words) out += (out.empty() ? "" : std::string(sep)) + std::string(w);
  return out;
}

bool has_int_range(const ParamSpec& p) {
  return p.min != std::numeric_limits<std::int64_t>::min() || p.max != std::numeric_limits<std::int64_t>::max();
}

bool has_real_range(const ParamSpec& p) {
  return p.lo != -std::numeric_limits<double>::infinity() || p.hi != std::numeric_limits<double>::infinity();
}

}  // namespace

std::string param_allowed_text(const ParamSpec& p) {
  switch (p.type) {
    case ParamType::boolean: return {};
    case ParamType::integer:
      if (!has_int_range(p)) return {};
      if (p.min != std::numeric_limits<std::int64_t>::min() && p.max != std::numeric_limits<std::int64_t>::max()) {
        return std::to_string(p.min) + ".." + std::to_string(p.max);
      }
      if (p.min != std::numeric_limits<std::int64_t>::min()) return "at least " + std::to_string(p.min);
      return "at most " + std::to_string(p.max);
    case ParamType::real:
      if (!has_real_range(p)) return {};
      return std::string(p.lo_open ? "(" : "[") + real_text(p.lo) + ", " + real_text(p.hi) + "]";
    case ParamType::string:
    case ParamType::string_list: return words_text(p.one_of, " | ");
  }
  return {};
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
    case ParamType::string_list: {
      std::vector<std::string> items;
      std::size_t start = 0;
      while (start <= text.size() && !text.empty()) {
        const std::size_t comma = std::min(text.find(',', start), text.size());
        // Blanks around an item are not part of it ("a, b" is a and b).
        std::string_view item = text.substr(start, comma - start);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (item.empty()) return false;  // an empty item: "a,,b", ",a", "a," or "a, ,b"
        items.emplace_back(item);
        start = comma + 1;
      }
      out = std::move(items);
      return true;
    }
  }
  return false;
}

bool allowed_word(const ParamSpec& spec, std::string_view word) {
  return spec.one_of.empty() || std::find(spec.one_of.begin(), spec.one_of.end(), word) != spec.one_of.end();
}

/// Why `v` is outside what `spec` allows ("must be in 1..65536, got 0"), or empty.
std::string range_problem(const ParamSpec& spec, const ParamValue& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (*i >= spec.min && *i <= spec.max) return {};
    const std::string allowed = param_allowed_text(spec);
    return "must be " + std::string(allowed.find("..") != std::string::npos ? "in " : "") + allowed + ", got " +
           std::to_string(*i);
  }
  if (const auto* d = std::get_if<double>(&v)) {
    const bool above = spec.lo_open ? *d > spec.lo : *d >= spec.lo;
    if (above && *d <= spec.hi) return {};  // false for NaN as well
    return "must be in " + param_allowed_text(spec) + ", got " + real_text(*d);
  }
  if (const auto* s = std::get_if<std::string>(&v)) {
    if (allowed_word(spec, *s)) return {};
    return "must be one of " + words_text(spec.one_of, ", ") + ", got \"" + *s + "\"";
  }
  if (const auto* l = std::get_if<std::vector<std::string>>(&v)) {
    for (const auto& item : *l) {
      if (!allowed_word(spec, item)) {
        return "items must be among " + words_text(spec.one_of, ", ") + ", got \"" + item + "\"";
      }
    }
  }
  return {};
}

}  // namespace

Status Registry::add(StageInfo info) {
  if (info.kind.empty() || !info.factory) {
    return {Code::INVALID_ARGUMENT, "stage registration needs a kind and a factory"};
  }
  std::string kind(info.kind);
  if (kinds_.count(kind) != 0) {
    return {Code::INVALID_ARGUMENT, "stage kind '" + kind + "' is registered twice"};
  }
  for (std::size_t i = 0; i < info.params.size(); ++i) {
    const ParamSpec& p = info.params[i];
    for (std::size_t j = 0; j < i; ++j) {
      if (info.params[j].name == p.name) {
        return {Code::INVALID_ARGUMENT,
                "stage '" + kind + "': parameter '" + std::string(p.name) + "' is declared twice"};
      }
    }
    ParamValue v;
    if (!parse_value(p.type, p.default_value, v)) {
      return {Code::INVALID_ARGUMENT, "stage '" + kind + "': the default of parameter '" + std::string(p.name) +
                                          "' is not of type " + std::string(param_type_name(p.type)) + ": '" +
                                          std::string(p.default_value) + "'"};
    }
    if (std::string why = range_problem(p, v); !why.empty()) {
      return {Code::INVALID_ARGUMENT,
              "stage '" + kind + "': the default of parameter '" + std::string(p.name) + "' " + why};
    }
  }
  for (std::size_t i = 0; i < info.gauges.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (info.gauges[j].name == info.gauges[i].name) {
        return {Code::INVALID_ARGUMENT,
                "stage '" + kind + "': gauge '" + std::string(info.gauges[i].name) + "' is declared twice"};
      }
    }
  }
  kinds_.emplace(std::move(kind), std::move(info));
  return Status::ok();
}

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
    if (std::string why = range_problem(*spec, v); !why.empty()) {
      errors.push_back("stage '" + std::string(info.kind) + "': parameter '" + name + "' " + why);
      ok = false;
      continue;
    }
    out.set(name, std::move(v));
  }
  // Defaults were checked when the kind was registered.
  for (const auto& s : info.params) {
    if (out.has(s.name)) continue;
    ParamValue v;
    if (parse_value(s.type, s.default_value, v)) out.set(std::string(s.name), std::move(v));
  }
  return ok;
}

}  // namespace tmc
