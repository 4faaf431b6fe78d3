// Value, diagnostics, the shared text helpers, and YAML -> Value.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/manifest/reflect.hpp"
#include "runtime/manifest/yaml_value.hpp"

namespace tmc {

std::string_view Value::type_name() const {
  if (is_null()) return "null";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_real()) return "real";
  if (is_string()) return "string";
  if (is_list()) return "list";
  return "map";
}

std::string SourceLocation::to_string() const {
  if (file.empty() && line <= 0) return {};
  std::string out = file.empty() ? "<input>" : file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out;
}

std::string Diagnostic::to_string() const {
  std::string w = where.to_string();
  return w.empty() ? message : w + ": " + message;
}

std::string Diagnostics::to_string() const {
  std::string out;
  for (const auto& d : items_) {
    if (!out.empty()) out += "\n";
    out += d.to_string();
  }
  return out;
}

}  // namespace tmc

namespace tmc::detail {

namespace {

void escape_into(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\t': out += "\\t"; return;
    case '\r': out += "\\r"; return;
    default: break;
  }
  if (c < 0x20 || c == 0x7f) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
    return;
  }
  out += static_cast<char>(c);
}

}  // namespace

std::string quote(std::string_view s) {
  constexpr std::size_t kShown = 60;
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < kShown; ++i) escape_into(out, static_cast<unsigned char>(s[i]));
  out += "\"";
  if (s.size() > kShown) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string yaml_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) escape_into(out, static_cast<unsigned char>(c));
  return out + "\"";
}

std::string format_real(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, d);
  if (ec != std::errc()) return "?";
  return std::string(buf, ptr);
}

std::string describe(const Value& v) {
  if (v.is_null()) return "null";
  if (v.is_bool()) return std::string("bool ") + (v.as_bool() ? "true" : "false");
  if (v.is_int()) return "int " + std::to_string(v.as_int());
  if (v.is_real()) return "real " + format_real(v.as_real());
  if (v.is_string()) return "string " + quote(v.as_string());
  if (v.is_list()) return "list";
  return "map";
}

std::string join_path(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out(path);
  out += ".";
  out += key;
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment: insertions, deletions, substitutions and transpositions of
  // neighbours each cost one, so "gruop" is one step from "group".
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::size_t> d((n + 1) * (m + 1));
  auto at = [&](std::size_t i, std::size_t j) -> std::size_t& { return d[i * (m + 1) + j]; };
  for (std::size_t i = 0; i <= n; ++i) at(i, 0) = i;
  for (std::size_t j = 0; j <= m; ++j) at(0, j) = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      std::size_t best = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) best = std::min(best, at(i - 2, j - 2) + 1);
      at(i, j) = best;
    }
  }
  return at(n, m);
}

std::string_view nearest(std::string_view word, const std::vector<std::string_view>& candidates) {
  // Words longer than any key cannot be near one; skip the quadratic work for them.
  if (word.size() > 64) return {};
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  std::string_view best;
  std::size_t best_d = limit + 1;
  for (auto c : candidates) {
    if (c.empty()) continue;
    const std::size_t dist = edit_distance(word, c);
    if (dist < best_d) {
      best_d = dist;
      best = c;
    }
  }
  return best;
}

void append_in_file_order(Diagnostics& into, const Diagnostics& from) {
  std::vector<const Diagnostic*> items;
  for (const auto& d : from.items()) items.push_back(&d);
  std::stable_sort(items.begin(), items.end(), [](const Diagnostic* a, const Diagnostic* b) {
    const int la = a->where.line > 0 ? a->where.line : std::numeric_limits<int>::max();
    const int lb = b->where.line > 0 ? b->where.line : std::numeric_limits<int>::max();
    if (la != lb) return la < lb;
    return a->where.column < b->where.column;
  });
  for (const Diagnostic* d : items) into.error(d->where, d->key, d->message);
}

SourceLocation location_of(const std::map<std::string, SourceLocation, std::less<>>& locations,
                           std::string_view path, const std::string& file) {
  std::string_view p = path;
  while (true) {
    if (auto it = locations.find(p); it != locations.end()) return it->second;
    if (p.empty()) break;
    const auto dot = p.rfind('.');
    p = dot == std::string_view::npos ? std::string_view{} : p.substr(0, dot);
  }
  return SourceLocation{file, 0, 0};
}

// ---------------------------------------------------------------------------------------
// YAML -> Value
// ---------------------------------------------------------------------------------------

namespace {

bool all_digits(std::string_view s, int base) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                               : (c >= '0' && c < static_cast<char>('0' + base));
    if (!ok) return false;
  }
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (YAML 1.2 core schema floats)
bool looks_real(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  std::size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    std::size_t exp = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) != 0) ++i, ++exp;
    if (exp == 0) return false;
  }
  return i == s.size();
}

// A plain (unquoted, untagged) scalar, resolved the way YAML's core schema does, plus the
// yes/no/on/off booleans yaml-cpp itself accepts.
Value resolve_plain(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Value();
  for (const char* t : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}) {
    if (s == t) return Value(true);
  }
  for (const char* f : {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}) {
    if (s == f) return Value(false);
  }
  std::string_view body = s;
  bool negative = false;
  if (body.front() == '-' || body.front() == '+') {
    negative = body.front() == '-';
    body.remove_prefix(1);
  }
  int base = 10;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o')) {
    base = body[1] == 'x' ? 16 : 8;
    body.remove_prefix(2);
  }
  if (all_digits(body, base)) {
    std::uint64_t magnitude = 0;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), magnitude, base);
    constexpr std::uint64_t kMaxPos = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (ec == std::errc() && ptr == body.data() + body.size() && magnitude <= kMaxPos + (negative ? 1 : 0)) {
      if (negative) {
        return Value(magnitude == kMaxPos + 1 ? std::numeric_limits<std::int64_t>::min()
                                              : -static_cast<std::int64_t>(magnitude));
      }
      return Value(static_cast<std::int64_t>(magnitude));
    }
    // Too big for 64 bits: keep it as a real so the message still shows the number.
    if (base == 10) return Value(std::strtod(s.c_str(), nullptr));
    return Value(s);
  }
  if (looks_real(s)) return Value(std::strtod(s.c_str(), nullptr));
  for (const char* inf : {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}) {
    if (s == inf) return Value(std::numeric_limits<double>::infinity());
  }
  for (const char* inf : {"-.inf", "-.Inf", "-.INF"}) {
    if (s == inf) return Value(-std::numeric_limits<double>::infinity());
  }
  for (const char* nan : {".nan", ".NaN", ".NAN"}) {
    if (s == nan) return Value(std::numeric_limits<double>::quiet_NaN());
  }
  return Value(s);
}

SourceLocation to_location(const YAML::Mark& m, std::string_view file) {
  if (m.is_null()) return SourceLocation{std::string(file), 0, 0};
  return SourceLocation{std::string(file), m.line + 1, m.column + 1};
}

class Converter {
 public:
  Converter(std::string_view file, Diagnostics& diag) : file_(file), diag_(diag) {}

  bool convert(const YAML::Node& node, const SourceLocation& fallback, int depth, Value& out) {
    SourceLocation where = to_location(node.Mark(), file_);
    if (where.line == 0) where = fallback;
    if (++nodes_ > kMaxYamlNodes) {
      if (!budget_reported_) {
        diag_.error(where, "", "document too large: more than " + std::to_string(kMaxYamlNodes) +
                                   " values (are aliases expanding it?)");
        budget_reported_ = true;
      }
      return false;
    }
    if (depth > kMaxYamlDepth) {
      diag_.error(where, "", "nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels");
      return false;
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out = Value();
        break;
      case YAML::NodeType::Scalar: {
        const std::string& tag = node.Tag();
        const bool is_str = tag == "!" || tag == "tag:yaml.org,2002:str";
        out = is_str ? Value(node.Scalar()) : resolve_plain(node.Scalar());
        break;
      }
      case YAML::NodeType::Sequence: {
        Value::List list;
        for (const auto& item : node) {
          Value v;
          if (!convert(item, where, depth + 1, v)) return false;
          list.push_back(std::move(v));
        }
        out = Value(std::move(list));
        break;
      }
      case YAML::NodeType::Map: {
        Value::Map map;
        for (auto it = node.begin(); it != node.end(); ++it) {
          const SourceLocation key_where = to_location(it->first.Mark(), file_);
          if (!it->first.IsScalar()) {
            diag_.error(key_where.line ? key_where : where, "", "map keys must be plain words, got a " +
                                                                    std::string(it->first.IsMap() ? "map" : "list"));
            return false;
          }
          Value v;
          if (!convert(it->second, key_where.line ? key_where : where, depth + 1, v)) return false;
          map.emplace_back(it->first.Scalar(), std::move(v));
        }
        out = Value(std::move(map));
        break;
      }
    }
    out.where = where;
    return true;
  }

 private:
  std::string_view file_;
  Diagnostics& diag_;
  std::size_t nodes_ = 0;
  bool budget_reported_ = false;
};

}  // namespace

bool yaml_to_value(std::string_view text, std::string_view file, Value& out, Diagnostics& diag) {
  const std::size_t before = diag.items().size();
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    Converter c(file, diag);
    Value v;
    if (!c.convert(root, SourceLocation{std::string(file), 1, 1}, 0, v)) return false;
    out = std::move(v);
  } catch (const YAML::Exception& e) {
    if (e.msg == YAML::ErrorMsg::BAD_FILE) {
      // yaml-cpp's only use of "bad file" in a parse: its own recursion limit, hit long
      // before the converter could apply ours.
      diag.error(to_location(e.mark, file), "",
                 "nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels (the YAML parser gave up here)");
      return false;
    }
    // yaml-cpp's own message carries the position too; keep only its words, ours go in `where`.
    diag.error(to_location(e.mark, file), "", "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    diag.error(SourceLocation{std::string(file), 0, 0}, "", std::string("YAML parser failed: ") + e.what());
  }
  return diag.items().size() == before;
}

bool read_text_file(const std::string& path, std::string& out, Diagnostics& diag) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // An ifstream opens a directory and then reads nothing, which would parse as null.
    diag.error(SourceLocation{path, 0, 0}, "", "is a directory, not a file");
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diag.error(SourceLocation{path, 0, 0}, "", "cannot open file");
    return false;
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) {
    diag.error(SourceLocation{path, 0, 0}, "", "cannot read file");
    return false;
  }
  out = s.str();
  return true;
}

}  // namespace tmc::detail
