// One generic reader, printer, checker and doc-table builder for the plain structs of
// manifest.hpp and capabilities.hpp.
//
// How it fits together
//   - Each struct is adapted with BOOST_HANA_ADAPT_STRUCT in the .cpp that owns it, so
//     Hana can list its members (name + accessor) at compile time.
//   - Next to it, Schema<S>::fields() is the struct's table of rows (FieldMeta), keyed by
//     member name: the key as the paper writes it, its snake_case alias, doc, ranges,
//     whether it may be set per message and whether its stage exists yet.
//   - FieldCodec<T> knows one member type: how to read it from a Value, print it as YAML,
//     name its type, and check its range. Structs that have a Schema are a member type too,
//     which is how nesting (reliability: {ack k: 2}) works without special code.
// Nothing here is written per field: adding a member to a struct means adding it to the
// ADAPT list and adding one row; schema_problems() (run by the unit tests) catches a
// member without a row, a row without a member, and rows listed out of member order.
#pragma once

#include <boost/hana.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tmc/diagnostics.hpp"
#include "tmc/manifest.hpp"

namespace tmc::detail {

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

struct FieldMeta {
  std::string_view field;  ///< C++ member name (must match the Hana-adapted name)
  std::string_view key;    ///< the paper's spelling, e.g. "group ordering"
  std::string_view alias;  ///< snake_case, e.g. "group_ordering"
  std::string_view doc;
  /// Rows that share a group are written nested under it ("checksum offload: {rx, tx}").
  std::string_view group = {};
  std::string_view group_alias = {};
  std::string_view type = {};          ///< overrides the codec's type name (messages, docs)
  std::string_view default_text = {};  ///< overrides the printed default (docs)
  std::string_view true_word = {};     ///< a string that also means `true` (e.g. "crc32c")
  std::int64_t min = std::numeric_limits<std::int64_t>::min();  ///< ints: smallest allowed
  std::int64_t max = std::numeric_limits<std::int64_t>::max();  ///< ints: largest allowed
  double lo = -std::numeric_limits<double>::infinity();         ///< reals: lower bound
  double hi = std::numeric_limits<double>::infinity();          ///< reals: upper bound
  bool lo_open = false;                                         ///< reals: lo itself not allowed
  bool zero_means_unset = false;  ///< 0 is always accepted (it means "not used")
  std::span<const std::string_view> one_of = {};  ///< strings: the allowed words
  bool per_message = false;
  bool available = true;
  std::string_view planned = {};  ///< with available=false: which feature will bring it
  bool always = false;            ///< printed by to_yaml even when it equals the default
  bool hidden = false;            ///< not a key (filled by the program)
};

template <class S>
struct Schema;  // specialised next to each BOOST_HANA_ADAPT_STRUCT

template <class S>
concept Reflected = requires {
  { Schema<S>::fields() } -> std::convertible_to<std::span<const FieldMeta>>;
};

// ---------------------------------------------------------------------------------------
// Text helpers (stable: golden tests compare messages that use them)
// ---------------------------------------------------------------------------------------

std::string quote(std::string_view s);        ///< "\"abc\"" with escapes, long strings cut
std::string yaml_quote(std::string_view s);   ///< a double-quoted YAML scalar, every byte kept
std::string format_real(double d);            ///< shortest text that reads back the same
std::string describe(const Value& v);         ///< "string \"abc\"", "int 42", "map", ...
std::string join_path(std::string_view path, std::string_view key);
std::size_t edit_distance(std::string_view a, std::string_view b);  ///< with transpositions
/// The nearest candidate within a sensible distance of `word`, or empty.
std::string_view nearest(std::string_view word, const std::vector<std::string_view>& candidates);

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Append `from` to `into` in the order the problems appear in the file (line, then column;
/// problems without a line keep their place at the end), so reading errors and the checks
/// that run after reading interleave the way a person reads the file.
void append_in_file_order(Diagnostics& into, const Diagnostics& from);

class Reader {
 public:
  Reader(Diagnostics& d, std::string default_file) : diag(d), file(std::move(default_file)) {}

  Diagnostics& diag;
  std::string file;  ///< used for Values that carry no file (e.g. built by hand)
  /// Where each property path was written ("reliability.ack k" -> file:4:5), for checks
  /// that run after reading.
  std::map<std::string, SourceLocation, std::less<>> locations;
  /// At the top level only: a better message for a key this schema does not know (the
  /// message-manifest reader uses it to explain channel-only properties).
  std::function<std::optional<std::string>(std::string_view key)> explain_unknown;

  [[nodiscard]] SourceLocation where(const Value& v) const {
    SourceLocation w = v.where;
    if (w.file.empty()) w.file = file;
    return w;
  }
  void error(const Value& v, const std::string& path, std::string message) {
    diag.error(where(v), path, std::move(message));
  }
  void type_error(const Value& v, const std::string& path, std::string_view expected) {
    error(v, path, "'" + path + "' expects " + std::string(expected) + ", got " + describe(v));
  }
  void remember(const std::string& path, const Value& v) { locations[path] = where(v); }
};

/// Where a path was written: the path itself, else its nearest parent, else the file.
SourceLocation location_of(const std::map<std::string, SourceLocation, std::less<>>& locations,
                           std::string_view path, const std::string& file);

class Checker {
 public:
  Checker(Diagnostics& d, std::string default_file, const std::map<std::string, SourceLocation, std::less<>>* locs)
      : diag(d), file(std::move(default_file)), locations(locs) {}
  Diagnostics& diag;
  std::string file;
  const std::map<std::string, SourceLocation, std::less<>>* locations;

  [[nodiscard]] SourceLocation at(std::string_view path) const {
    if (locations == nullptr) return SourceLocation{file, 0, 0};
    return location_of(*locations, path, file);
  }
  /// Paths that already have a reading error: checks stay quiet about them, since the
  /// value they would check is the default that stood in for the bad one.
  std::set<std::string, std::less<>> already;

  void error(const std::string& path, std::string message) {
    if (already.count(path) != 0) return;
    diag.error(at(path), path, std::move(message));
  }
};

template <class T>
struct FieldCodec;

template <class S, class F>
void with_member(S& s, std::string_view field, F&& f) {
  namespace hana = boost::hana;
  hana::for_each(hana::accessors<std::remove_const_t<S>>(), [&](auto pair) {
    if (std::string_view(hana::to<char const*>(hana::first(pair))) == field) f(hana::second(pair)(s));
  });
}

inline const FieldMeta* find_row(std::span<const FieldMeta> rows, std::string_view field) {
  for (const auto& r : rows) {
    if (r.field == field) return &r;
  }
  return nullptr;
}

/// The row whose key or alias is `key`, among the rows of `group` ("" = ungrouped rows).
inline const FieldMeta* match_row(std::span<const FieldMeta> rows, std::string_view key, std::string_view group) {
  for (const auto& r : rows) {
    if (r.hidden || r.group != group) continue;
    if (r.key == key || r.alias == key) return &r;
  }
  return nullptr;
}

inline std::string_view match_group(std::span<const FieldMeta> rows, std::string_view key) {
  for (const auto& r : rows) {
    if (r.hidden || r.group.empty()) continue;
    if (r.group == key || r.group_alias == key) return r.group;
  }
  return {};
}

inline void report_unknown(Reader& r, const Value& item, const std::string& path, std::string_view key,
                           std::span<const FieldMeta> rows, std::string_view group) {
  const std::string full = join_path(path, key);
  if (path.empty() && r.explain_unknown) {
    if (auto why = r.explain_unknown(key)) {
      r.error(item, full, *why);
      return;
    }
  }
  std::vector<std::string_view> candidates;
  for (const auto& row : rows) {
    if (row.hidden) continue;
    if (row.group == group) {
      candidates.push_back(row.key);
      candidates.push_back(row.alias);
    } else if (group.empty()) {
      candidates.push_back(row.group);
      candidates.push_back(row.group_alias);
    }
  }
  std::string message = "unknown property '" + full + "'";
  if (auto near = nearest(key, candidates); !near.empty()) message += " (did you mean '" + std::string(near) + "'?)";
  r.error(item, full, std::move(message));
}

/// Record that `field` was set in this map; false (after reporting it) if it already was,
/// for example once under its key and once under its alias.
inline bool first_time(std::vector<std::pair<std::string_view, std::string>>& seen, std::string_view field,
                       std::string_view spelled, const Value& item, Reader& r, const std::string& path,
                       std::string_view canonical) {
  for (const auto& [f, how] : seen) {
    if (f == field) {
      const std::string full = join_path(path, canonical);
      r.error(item, full,
              "'" + full + "' is given more than once (as '" + how + "' and as '" + std::string(spelled) + "')");
      return false;
    }
  }
  seen.emplace_back(field, std::string(spelled));
  return true;
}

template <class S>
void read_group(const Value& v, S& s, Reader& r, const std::string& path, std::string_view group,
                std::span<const FieldMeta> rows) {
  r.remember(path, v);
  if (v.is_bool()) {  // "checksum offload: true" sets every member of the group
    for (const auto& row : rows) {
      if (row.group != group) continue;
      with_member(s, row.field, [&](auto& member) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(member)>, bool>) member = v.as_bool();
      });
    }
    return;
  }
  if (!v.is_map()) {
    r.type_error(v, path, "bool or map");
    return;
  }
  std::vector<std::pair<std::string_view, std::string>> seen;
  for (const auto& entry : v.as_map()) {
    // Named references, not a structured binding: lambdas below capture them, which
    // clang before 16 refuses for bindings.
    const std::string& key = entry.first;
    const Value& item = entry.second;
    const FieldMeta* row = match_row(rows, key, group);
    if (row == nullptr) {
      report_unknown(r, item, path, key, rows, group);
      continue;
    }
    if (!first_time(seen, row->field, key, item, r, path, row->key)) continue;
    const std::string sub = join_path(path, row->key);
    r.remember(sub, item);
    with_member(s, row->field, [&](auto& member) {
      FieldCodec<std::remove_cvref_t<decltype(member)>>::read(item, member, r, sub, *row);
    });
  }
}

template <Reflected S>
void read_struct(const Value& v, S& s, Reader& r, const std::string& path, std::string_view expected) {
  if (!v.is_map()) {
    if constexpr (requires(S& x) { Schema<S>::shorthand(v, x); }) {
      if (Schema<S>::shorthand(v, s)) return;
    }
    if constexpr (requires { Schema<S>::what; }) {
      if (path.empty()) {
        r.error(v, path, std::string(Schema<S>::what) + " must be a map of properties, got " + describe(v));
        return;
      }
    }
    r.type_error(v, path, expected);
    return;
  }
  if constexpr (requires(S& x) { Schema<S>::on_map(x); }) Schema<S>::on_map(s);
  const auto rows = Schema<S>::fields();
  std::vector<std::pair<std::string_view, std::string>> seen;
  for (const auto& entry : v.as_map()) {
    // Named references, not a structured binding: lambdas below capture them, which
    // clang before 16 refuses for bindings.
    const std::string& key = entry.first;
    const Value& item = entry.second;
    if (const FieldMeta* row = match_row(rows, key, {}); row != nullptr) {
      if (!first_time(seen, row->field, key, item, r, path, row->key)) continue;
      const std::string sub = join_path(path, row->key);
      r.remember(sub, item);
      with_member(s, row->field, [&](auto& member) {
        FieldCodec<std::remove_cvref_t<decltype(member)>>::read(item, member, r, sub, *row);
      });
      continue;
    }
    if (std::string_view group = match_group(rows, key); !group.empty()) {
      if (!first_time(seen, group, key, item, r, path, group)) continue;
      read_group(item, s, r, join_path(path, group), group, rows);
      continue;
    }
    report_unknown(r, item, path, key, rows, {});
  }
}

// ---------------------------------------------------------------------------------------
// Printing (YAML that reads back to the same struct)
// ---------------------------------------------------------------------------------------

template <Reflected S>
void write_struct(const S& s, std::string& out, int indent) {
  namespace hana = boost::hana;
  const S defaults{};
  const auto rows = Schema<S>::fields();
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::string_view open_group;
  std::string group_text;
  auto flush_group = [&] {
    if (!group_text.empty()) out += pad + std::string(open_group) + ":\n" + group_text;
    group_text.clear();
    open_group = {};
  };
  hana::for_each(hana::accessors<S>(), [&](auto pair) {
    const FieldMeta* row = find_row(rows, hana::to<char const*>(hana::first(pair)));
    if (row == nullptr || row->hidden) return;
    const auto& member = hana::second(pair)(s);
    using T = std::remove_cvref_t<decltype(member)>;
    if (row->group != open_group) flush_group();
    const bool differs = !(member == hana::second(pair)(defaults));
    if (!differs && !row->always) return;
    if (!row->group.empty()) {
      open_group = row->group;
      group_text += pad + "  " + std::string(row->key) + ":";
      FieldCodec<T>::write(member, group_text, indent + 2);
      return;
    }
    out += pad + std::string(row->key) + ":";
    FieldCodec<T>::write(member, out, indent);
  });
  flush_group();
}

// ---------------------------------------------------------------------------------------
// Checking ranges and word lists (cross-field rules are written by hand next to the schema)
// ---------------------------------------------------------------------------------------

inline std::string path_of(std::string_view path, const FieldMeta& row) {
  return row.group.empty() ? join_path(path, row.key) : join_path(join_path(path, row.group), row.key);
}

template <Reflected S>
void check_struct(const S& s, Checker& c, const std::string& path) {
  namespace hana = boost::hana;
  const auto rows = Schema<S>::fields();
  hana::for_each(hana::accessors<S>(), [&](auto pair) {
    const FieldMeta* row = find_row(rows, hana::to<char const*>(hana::first(pair)));
    if (row == nullptr || row->hidden) return;
    const auto& member = hana::second(pair)(s);
    FieldCodec<std::remove_cvref_t<decltype(member)>>::check(member, c, path_of(path, *row), *row);
  });
}

inline std::string int_range_message(const std::string& path, const FieldMeta& row, std::int64_t v) {
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  std::string range;
  if (row.min != kMin && row.max != kMax) {
    range = "in " + std::to_string(row.min) + ".." + std::to_string(row.max);
  } else if (row.min != kMin) {
    range = "at least " + std::to_string(row.min);
  } else {
    range = "at most " + std::to_string(row.max);
  }
  return "'" + path + "' must be " + range + ", got " + std::to_string(v);
}

inline void check_int(std::int64_t v, Checker& c, const std::string& path, const FieldMeta& row) {
  if (row.zero_means_unset && v == 0) return;
  if (v >= row.min && v <= row.max) return;
  c.error(path, int_range_message(path, row, v));
}

inline void check_real(double v, Checker& c, const std::string& path, const FieldMeta& row) {
  if (row.zero_means_unset && v == 0.0) return;
  const bool above = row.lo_open ? v > row.lo : v >= row.lo;
  if (above && v <= row.hi) return;  // false for NaN as well
  c.error(path, "'" + path + "' must be in " + std::string(row.lo_open ? "(" : "[") + format_real(row.lo) + ", " +
                    format_real(row.hi) + "], got " + format_real(v));
}

// ---------------------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------------------

template <>
struct FieldCodec<bool> {
  static std::string type_name(const FieldMeta& row) {
    return row.true_word.empty() ? "bool" : "bool or \"" + std::string(row.true_word) + "\"";
  }
  static void read(const Value& v, bool& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if (v.is_bool()) {
      out = v.as_bool();
    } else if (!row.true_word.empty() && v.is_string() && v.as_string() == row.true_word) {
      out = true;
    } else {
      r.type_error(v, path, type_name(row));
    }
  }
  static std::string text(bool b) { return b ? "true" : "false"; }
  static void write(bool b, std::string& out, int) { out += " " + text(b) + "\n"; }
  static void check(bool, Checker&, const std::string&, const FieldMeta&) {}
};

template <>
struct FieldCodec<std::int64_t> {
  static std::string type_name(const FieldMeta&) { return "int"; }
  static void read(const Value& v, std::int64_t& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if (v.is_int()) {
      out = v.as_int();
    } else {
      r.type_error(v, path, type_name(row));
    }
  }
  static std::string text(std::int64_t i) { return std::to_string(i); }
  static void write(std::int64_t i, std::string& out, int) { out += " " + text(i) + "\n"; }
  static void check(std::int64_t v, Checker& c, const std::string& path, const FieldMeta& row) {
    check_int(v, c, path, row);
  }
};

template <>
struct FieldCodec<std::uint32_t> {
  static std::string type_name(const FieldMeta&) { return "int"; }
  static void read(const Value& v, std::uint32_t& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if (!v.is_int()) {
      r.type_error(v, path, type_name(row));
      return;
    }
    // Out of the member's range: report it now with the row's range, since storing it
    // would wrap and the later check would see a different number.
    const std::int64_t i = v.as_int();
    if (i < 0 || i > std::int64_t{std::numeric_limits<std::uint32_t>::max()}) {
      r.error(v, path, int_range_message(path, row, i));
      return;
    }
    out = static_cast<std::uint32_t>(i);
  }
  static std::string text(std::uint32_t i) { return std::to_string(i); }
  static void write(std::uint32_t i, std::string& out, int) { out += " " + text(i) + "\n"; }
  static void check(std::uint32_t v, Checker& c, const std::string& path, const FieldMeta& row) {
    check_int(static_cast<std::int64_t>(v), c, path, row);
  }
};

template <>
struct FieldCodec<double> {
  static std::string type_name(const FieldMeta&) { return "number"; }
  static void read(const Value& v, double& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if (v.is_int() || v.is_real()) {
      out = v.as_real();
    } else {
      r.type_error(v, path, type_name(row));
    }
  }
  static std::string text(double d) { return format_real(d); }
  static void write(double d, std::string& out, int) { out += " " + text(d) + "\n"; }
  static void check(double v, Checker& c, const std::string& path, const FieldMeta& row) { check_real(v, c, path, row); }
};

template <>
struct FieldCodec<std::string> {
  static std::string type_name(const FieldMeta& row) {
    if (row.one_of.empty()) return "string";
    std::string s;
    for (auto w : row.one_of) s += (s.empty() ? "" : " | ") + std::string(w);
    return s;
  }
  static void read(const Value& v, std::string& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if (v.is_string()) {
      out = v.as_string();
    } else if (v.is_int() && row.one_of.empty()) {  // `id: 42` means the string "42"
      out = std::to_string(v.as_int());
    } else {
      r.type_error(v, path, "string");
    }
  }
  static std::string text(const std::string& s) { return s.empty() ? "\"\"" : s; }
  static void write(const std::string& s, std::string& out, int) { out += " " + yaml_quote(s) + "\n"; }
  static void check(const std::string& v, Checker& c, const std::string& path, const FieldMeta& row) {
    if (row.one_of.empty()) return;
    if (std::find(row.one_of.begin(), row.one_of.end(), v) != row.one_of.end()) return;
    std::string words;
    for (auto w : row.one_of) words += (words.empty() ? "" : ", ") + std::string(w);
    c.error(path, "'" + path + "' must be one of " + words + ", got " + quote(v));
  }
};

template <>
struct FieldCodec<std::vector<std::string>> {
  static std::string type_name(const FieldMeta&) { return "list of strings"; }
  static void read(const Value& v, std::vector<std::string>& out, Reader& r, const std::string& path,
                   const FieldMeta& row) {
    if (!v.is_list()) {
      r.type_error(v, path, type_name(row));
      return;
    }
    std::vector<std::string> items;
    bool ok = true;
    std::size_t i = 0;
    for (const auto& item : v.as_list()) {
      r.remember(path + "[" + std::to_string(i) + "]", item);
      if (item.is_string()) {
        items.push_back(item.as_string());
      } else if (item.is_int()) {
        items.push_back(std::to_string(item.as_int()));
      } else {
        r.type_error(item, path + "[" + std::to_string(i) + "]", "string");
        ok = false;
      }
      ++i;
    }
    if (ok) out = std::move(items);
  }
  static std::string text(const std::vector<std::string>& l) {
    std::string s = "[";
    for (std::size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + yaml_quote(l[i]);
    return s + "]";
  }
  static void write(const std::vector<std::string>& l, std::string& out, int) { out += " " + text(l) + "\n"; }
  static void check(const std::vector<std::string>&, Checker&, const std::string&, const FieldMeta&) {}
};

/// `stages:` — a map of stage kind to a map of parameters (scalars, or lists written as
/// comma-joined text); `kind:` alone asks for the defaults.
template <>
struct FieldCodec<std::vector<StageRequest>> {
  static std::string type_name(const FieldMeta&) { return "map of stage kind to parameters"; }
  static bool scalar_text(const Value& v, std::string& out) {
    if (v.is_bool()) {
      out = v.as_bool() ? "true" : "false";
    } else if (v.is_int()) {
      out = std::to_string(v.as_int());
    } else if (v.is_real()) {
      out = format_real(v.as_real());
    } else if (v.is_string()) {
      out = v.as_string();
    } else if (v.is_list()) {
      out.clear();
      for (const auto& item : v.as_list()) {
        std::string t;
        if (item.is_list() || item.is_map() || !scalar_text(item, t)) return false;
        out += (out.empty() ? "" : ",") + t;
      }
    } else {
      return false;
    }
    return true;
  }
  static void read(const Value& v, std::vector<StageRequest>& out, Reader& r, const std::string& path,
                   const FieldMeta& row) {
    if (!v.is_map()) {
      r.type_error(v, path, type_name(row));
      return;
    }
    std::vector<StageRequest> items;
    bool ok = true;
    for (const auto& [kind, params] : v.as_map()) {
      const std::string at = path + "." + kind;
      r.remember(at, params);
      StageRequest req;
      req.kind = kind;
      if (!params.is_null() && !params.is_map()) {
        r.type_error(params, at, "map of parameter to value");
        ok = false;
        continue;
      }
      if (params.is_map()) {
        for (const auto& [name, value] : params.as_map()) {
          std::string text;
          if (!scalar_text(value, text)) {
            r.type_error(value, at + "." + name, "bool, int, number, string or list of them");
            ok = false;
            continue;
          }
          req.params[name] = std::move(text);
        }
      }
      items.push_back(std::move(req));
    }
    if (ok) out = std::move(items);
  }
  static std::string text(const std::vector<StageRequest>& l) {
    std::string s = "{";
    for (std::size_t i = 0; i < l.size(); ++i) {
      s += (i ? ", " : "") + yaml_quote(l[i].kind) + ": {";
      std::size_t k = 0;
      for (const auto& [name, value] : l[i].params) s += (k++ ? ", " : "") + yaml_quote(name) + ": " + yaml_quote(value);
      s += "}";
    }
    return s + "}";
  }
  static void write(const std::vector<StageRequest>& l, std::string& out, int) { out += " " + text(l) + "\n"; }
  static void check(const std::vector<StageRequest>&, Checker&, const std::string&, const FieldMeta&) {}
};

template <>
struct FieldCodec<std::optional<bool>> {
  static std::string type_name(const FieldMeta& row) { return FieldCodec<bool>::type_name(row); }
  static void read(const Value& v, std::optional<bool>& out, Reader& r, const std::string& path,
                   const FieldMeta& row) {
    if (v.is_null()) {
      out.reset();
      return;
    }
    bool b = false;
    const std::size_t before = r.diag.items().size();
    FieldCodec<bool>::read(v, b, r, path, row);
    if (r.diag.items().size() == before) out = b;
  }
  static std::string text(const std::optional<bool>& b) { return b ? FieldCodec<bool>::text(*b) : "(channel's)"; }
  static void write(const std::optional<bool>& b, std::string& out, int) { out += " " + text(b) + "\n"; }
  static void check(const std::optional<bool>&, Checker&, const std::string&, const FieldMeta&) {}
};

template <>
struct FieldCodec<std::optional<std::int64_t>> {
  static std::string type_name(const FieldMeta& row) { return FieldCodec<std::int64_t>::type_name(row); }
  static void read(const Value& v, std::optional<std::int64_t>& out, Reader& r, const std::string& path,
                   const FieldMeta& row) {
    if (v.is_null()) {
      out.reset();
      return;
    }
    std::int64_t i = 0;
    const std::size_t before = r.diag.items().size();
    FieldCodec<std::int64_t>::read(v, i, r, path, row);
    if (r.diag.items().size() == before) out = i;
  }
  static std::string text(const std::optional<std::int64_t>& i) {
    return i ? FieldCodec<std::int64_t>::text(*i) : "(channel's)";
  }
  static void write(const std::optional<std::int64_t>& i, std::string& out, int) { out += " " + text(i) + "\n"; }
  static void check(const std::optional<std::int64_t>& v, Checker& c, const std::string& path, const FieldMeta& row) {
    if (v) check_int(*v, c, path, row);
  }
};

// Enums: each has an EnumTable<E> with its words (first spelling of a value is the one
// printed), optional extra spellings, words refused with an explanation, and what a YAML
// bool means if anything.
struct EnumWord {
  std::string_view word;
  int value;
};
struct RefusedWord {
  std::string_view word;
  std::string_view why;
};
template <class E>
struct EnumTable;

template <class E>
  requires std::is_enum_v<E>
struct FieldCodec<E> {
  using Table = EnumTable<E>;
  static std::string type_name(const FieldMeta&) {
    std::string s;
    std::set<int> shown;
    for (const auto& w : Table::words) {
      if (!shown.insert(w.value).second) continue;
      s += (s.empty() ? "" : " | ") + std::string(w.word);
    }
    if constexpr (Table::bool_true >= 0) s += " (or bool)";
    return s;
  }
  static std::string words_text() {
    std::string s;
    std::set<int> shown;
    for (const auto& w : Table::words) {
      if (!shown.insert(w.value).second) continue;
      s += (s.empty() ? "" : ", ") + std::string(w.word);
    }
    return s;
  }
  static void read(const Value& v, E& out, Reader& r, const std::string& path, const FieldMeta& row) {
    if constexpr (Table::bool_true >= 0) {
      if (v.is_bool()) {
        out = static_cast<E>(v.as_bool() ? Table::bool_true : Table::bool_false);
        return;
      }
    }
    if (!v.is_string()) {
      r.type_error(v, path, type_name(row));
      return;
    }
    const std::string& s = v.as_string();
    for (const auto& w : Table::words) {
      if (w.word == s) {
        out = static_cast<E>(w.value);
        return;
      }
    }
    for (const auto& w : Table::refused) {
      if (w.word == s) {
        r.error(v, path, "'" + path + "': " + std::string(w.why));
        return;
      }
    }
    r.error(v, path, "'" + path + "' must be one of " + words_text() + ", got " + quote(s));
  }
  static std::string text(E e) {
    for (const auto& w : Table::words) {
      if (w.value == static_cast<int>(e)) return std::string(w.word);
    }
    return "?";
  }
  static void write(E e, std::string& out, int) { out += " " + yaml_quote(text(e)) + "\n"; }
  static void check(E, Checker&, const std::string&, const FieldMeta&) {}
};

template <Reflected S>
struct FieldCodec<S> {
  static std::string type_name(const FieldMeta&) {
    if constexpr (requires { Schema<S>::type; }) {
      return std::string(Schema<S>::type);
    } else {
      return "map";
    }
  }
  static void read(const Value& v, S& out, Reader& r, const std::string& path, const FieldMeta& row) {
    read_struct(v, out, r, path, type_name(row));
  }
  static std::string text(const S& s) {
    if constexpr (requires { Schema<S>::short_form(s); }) {
      if (auto t = Schema<S>::short_form(s)) return *t;
    }
    return "{}";
  }
  static void write(const S& s, std::string& out, int indent) {
    if constexpr (requires { Schema<S>::short_form(s); }) {
      if (auto t = Schema<S>::short_form(s)) {
        out += " " + *t + "\n";
        return;
      }
    }
    out += "\n";
    write_struct(s, out, indent + 2);
  }
  static void check(const S& s, Checker& c, const std::string& path, const FieldMeta&) { check_struct(s, c, path); }
};

// ---------------------------------------------------------------------------------------
// Docs rows and self-checks
// ---------------------------------------------------------------------------------------

template <Reflected S>
void property_rows(std::string_view key_prefix, std::string_view alias_prefix, bool parent_available,
                   std::vector<PropertyInfo>& out) {
  namespace hana = boost::hana;
  const S defaults{};
  const auto rows = Schema<S>::fields();
  hana::for_each(hana::accessors<S>(), [&](auto pair) {
    const FieldMeta* row = find_row(rows, hana::to<char const*>(hana::first(pair)));
    if (row == nullptr || row->hidden) return;
    const auto& member = hana::second(pair)(defaults);
    using T = std::remove_cvref_t<decltype(member)>;
    PropertyInfo p;
    const std::string group_key = row->group.empty() ? "" : std::string(row->group) + ".";
    const std::string group_alias = row->group.empty() ? "" : std::string(row->group_alias) + ".";
    p.key = std::string(key_prefix) + group_key + std::string(row->key);
    p.alias = std::string(alias_prefix) + group_alias + std::string(row->alias);
    p.type = row->type.empty() ? FieldCodec<T>::type_name(*row) : std::string(row->type);
    p.default_value = row->default_text.empty() ? FieldCodec<T>::text(member) : std::string(row->default_text);
    p.doc = std::string(row->doc);
    p.per_message = row->per_message;
    p.available = parent_available && row->available;
    out.push_back(p);
    if constexpr (Reflected<T>) property_rows<T>(p.key + ".", p.alias + ".", p.available, out);
  });
}

template <Reflected S>
void schema_problems(std::string_view type, std::vector<std::string>& out) {
  namespace hana = boost::hana;
  const auto rows = Schema<S>::fields();
  std::vector<std::string_view> members;
  hana::for_each(hana::accessors<S>(), [&](auto pair) {
    members.emplace_back(hana::to<char const*>(hana::first(pair)));
  });
  const std::string t(type);
  if (rows.size() != members.size()) {
    out.push_back(t + ": " + std::to_string(members.size()) + " members but " + std::to_string(rows.size()) + " rows");
  }
  for (std::size_t i = 0; i < rows.size() && i < members.size(); ++i) {
    if (rows[i].field != members[i]) {
      out.push_back(t + ": row " + std::to_string(i) + " is '" + std::string(rows[i].field) + "' but member " +
                    std::to_string(i) + " is '" + std::string(members[i]) + "'");
    }
  }
  std::set<std::pair<std::string_view, std::string_view>> spellings;
  for (const auto& r : rows) {
    if (r.hidden) continue;
    if (r.key.empty() || r.alias.empty() || r.doc.empty()) out.push_back(t + "." + std::string(r.field) + ": empty key, alias or doc");
    if (!spellings.insert({r.group, r.key}).second) out.push_back(t + ": key '" + std::string(r.key) + "' twice");
    if (r.alias != r.key && !spellings.insert({r.group, r.alias}).second) {
      out.push_back(t + ": alias '" + std::string(r.alias) + "' twice");
    }
  }
}

}  // namespace tmc::detail
