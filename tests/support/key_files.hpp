// Group key files for tests of the `security` property: a fresh directory under /tmp,
// removed with everything in it at the end of the scope, and keys made from a seed.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace testkeys {

/// 32 key bytes as 64 hex digits, derived from `seed` (tests only: not a secret).
inline std::string hex_key(std::uint64_t seed) {
  std::string out;
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < 32; ++i) {
    s ^= s >> 31;
    s *= 0xBF58476D1CE4E5B9ull;
    s ^= s >> 29;
    char b[3];
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(s & 0xff));
    out += b;
  }
  return out;
}

class KeyDir {
 public:
  KeyDir() {
    char tmpl[] = "/tmp/tmc-keys-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~KeyDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  KeyDir(const KeyDir&) = delete;
  KeyDir& operator=(const KeyDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }

  /// Write `name` with one line "<id> <key>" per entry (the last one sends); returns its path.
  std::string write(const std::string& name, const std::vector<std::pair<int, std::uint64_t>>& keys) {
    std::string text = "# test keys\n";
    for (const auto& [id, seed] : keys) text += std::to_string(id) + " " + hex_key(seed) + "\n";
    return write_text(name, text);
  }
  std::string write_text(const std::string& name, const std::string& text) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::trunc) << text;
    return file;
  }

 private:
  std::string path_;
};

}  // namespace testkeys
