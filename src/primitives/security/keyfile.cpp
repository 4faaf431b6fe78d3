// Group key files: parsing (see keyfile.hpp for the format).
#include "primitives/security/keyfile.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tmc::security {

namespace {

bool decode_key(std::string_view text, std::array<std::uint8_t, kKeyBytes>& out) {
  std::size_t n = 0;
  if (text.size() == 2 * kKeyBytes) {
    return sodium_hex2bin(out.data(), out.size(), text.data(), text.size(), nullptr, &n, nullptr) == 0 &&
           n == kKeyBytes;
  }
  if (text.size() == sodium_base64_ENCODED_LEN(kKeyBytes, sodium_base64_VARIANT_ORIGINAL) - 1) {
    return sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &n, nullptr,
                             sodium_base64_VARIANT_ORIGINAL) == 0 &&
           n == kKeyBytes;
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool parse_key_file(std::string_view text, std::string_view filename, std::vector<GroupKey>& out,
                    std::string& error) {
  std::vector<GroupKey> keys;
  std::size_t line_no = 0;
  const std::string file(filename);
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    const std::string where = "key file " + file + ":" + std::to_string(line_no) + ": ";
    const std::size_t sp = line.find_first_of(" \t");
    if (sp == std::string_view::npos) {
      error = where + "expected \"<id> <key>\"";
      return false;
    }
    const std::string_view id_text = line.substr(0, sp);
    const std::string_view key_text = trim(line.substr(sp));
    int id = 0;
    bool id_ok = !id_text.empty() && id_text.size() <= 3;
    for (char c : id_text) {
      if (c < '0' || c > '9') id_ok = false;
      id = id * 10 + (c - '0');
    }
    if (!id_ok || id > 255) {
      error = where + "key id must be an integer in 0..255, got \"" + std::string(id_text.substr(0, 8)) + "\"";
      return false;
    }
    GroupKey k;
    k.id = static_cast<std::uint8_t>(id);
    if (key_text.find_first_of(" \t") != std::string_view::npos) {
      error = where + "expected \"<id> <key>\" and nothing after the key";
      return false;
    }
    if (!decode_key(key_text, k.key)) {
      error = where + "key must be 32 bytes as 64 hex digits or 44 base64 characters, got " +
              std::to_string(key_text.size()) + " characters";
      return false;
    }
    for (const GroupKey& other : keys) {
      if (other.id == k.id) {
        error = where + "key id " + std::to_string(id) + " is listed twice";
        return false;
      }
    }
    if (keys.size() == kMaxGroupKeys) {
      error = where + "more than " + std::to_string(kMaxGroupKeys) + " keys";
      return false;
    }
    keys.push_back(k);
  }
  if (keys.empty()) {
    error = "key file " + file + ": holds no key (expected lines \"<id> <key>\")";
    return false;
  }
  out = std::move(keys);
  return true;
}

bool load_key_file(const std::string& path, std::vector<GroupKey>& out, std::string& error) {
  if (path.empty()) {
    error = "no key file given: set 'key file' in the manifest or pass key_file when opening the channel";
    return false;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    error = "key file " + path + ": is a directory";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "key file " + path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    error = "key file " + path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::string s = text.str();
  if (s.size() > 64 * 1024) {
    error = "key file " + path + ": larger than 64 KiB; is it the right file?";
    return false;
  }
  const bool ok = parse_key_file(s, path, out, error);
  sodium_memzero(s.data(), s.size());
  return ok;
}

}  // namespace tmc::security
