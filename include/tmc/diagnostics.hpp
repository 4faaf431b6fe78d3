// Diagnostics: every problem found in a manifest or capability file, with where it is.
#pragma once

#include <string>
#include <vector>

namespace tmc {

struct SourceLocation {
  std::string file;  ///< file name, or "<map>" / "<builder>" when not from a file
  int line = 0;      ///< 1-based; 0 = unknown
  int column = 0;    ///< 1-based; 0 = unknown
  [[nodiscard]] std::string to_string() const;  ///< "file:line:col", or "file"
};

struct Diagnostic {
  SourceLocation where;
  std::string key;      ///< the property path, e.g. "reliability.ack fraction"
  std::string message;  ///< what is wrong and, where possible, what would be right
  [[nodiscard]] std::string to_string() const;  ///< "file:3:1: 'gruop': unknown property ..."
};

class Diagnostics {
 public:
  void error(SourceLocation where, std::string key, std::string message) {
    items_.push_back({std::move(where), std::move(key), std::move(message)});
  }
  [[nodiscard]] bool ok() const noexcept { return items_.empty(); }
  [[nodiscard]] const std::vector<Diagnostic>& items() const noexcept { return items_; }
  /// One line per problem.
  [[nodiscard]] std::string to_string() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace tmc
