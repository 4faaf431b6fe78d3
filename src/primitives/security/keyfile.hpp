// Group key files for the `security` property (docs/security.md, "Key file").
//
//   # comment lines and blank lines are ignored
//   <id> <key>
//
// One key per line: `id` a decimal integer in 0..255, `key` 32 bytes written as 64 hex
// digits or as 44 characters of standard base64. The last line is the key this member sends
// with; every listed key is accepted on receive, which is how a key is rolled over with an
// overlap (docs/security.md, "Rotation"). Ids must be distinct; at most kMaxGroupKeys keys.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tmc::security {

inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kMaxGroupKeys = 16;

struct GroupKey {
  std::uint8_t id = 0;
  std::array<std::uint8_t, kKeyBytes> key{};
};

/// Parse key file text. On failure returns false with `error` naming `filename` and the
/// line ("keys.txt:3: key must be 64 hex digits or 44 base64 characters, got 12 characters").
/// Never puts key material in the error.
bool parse_key_file(std::string_view text, std::string_view filename, std::vector<GroupKey>& out,
                    std::string& error);

/// Read and parse `path`; a missing or unreadable file is an error naming it and the reason.
bool load_key_file(const std::string& path, std::vector<GroupKey>& out, std::string& error);

}  // namespace tmc::security
