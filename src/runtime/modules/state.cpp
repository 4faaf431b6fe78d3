#include "runtime/modules/state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "runtime/manifest/yaml_value.hpp"
#include "runtime/modules/fields.hpp"

namespace tmc::modules {
namespace {

using detail::field;
using detail::line_of;

Status state_error(const std::filesystem::path& path, int line, std::string_view reason) {
  return refusal("rollback", path.string(), line, "", reason);
}

// Holds an flock(2) on PATH.lock for its lifetime.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path) {
    const std::string lock = path.string() + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      error_ = lock + ": cannot open the lock file: " + std::strerror(errno);
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        error_ = lock + ": cannot lock: " + std::strerror(errno);
        return;
      }
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  std::string error_;
};

}  // namespace

Result<RepositoryState> load_state(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return RepositoryState{};
  auto text = read_file(path);
  if (!text) return state_error(path, 0, "cannot read the state file: " + text.status().message());
  Value doc;
  Diagnostics diag;
  const std::string file = path.string();
  if (!tmc::detail::yaml_to_value(text.value(), file, doc, diag)) {
    return state_error(path, diag.items().front().where.line, "malformed state file: " + diag.items().front().message);
  }
  RepositoryState out;
  if (doc.is_null()) return out;
  const Value* repos = field(doc, "repositories");
  if (repos == nullptr || !(repos->is_map() || repos->is_null())) {
    return state_error(path, line_of(doc, 1), "expected a map 'repositories:'");
  }
  if (repos->is_null()) return out;
  for (const auto& [id, entry] : repos->as_map()) {
    const Value* version = field(entry, "version");
    const Value* digest = field(entry, "index_sha256");
    AcceptedVersion a;
    if (version == nullptr || !version->is_int() || digest == nullptr || !digest->is_string() ||
        !from_hex(digest->as_string(), a.index_sha256)) {
      return state_error(path, line_of(entry, line_of(*repos)),
                         "repository '" + id + "' needs an integer 'version' and a 64-hex-digit 'index_sha256'");
    }
    a.version = version->as_int();
    out[id] = a;
  }
  return out;
}

std::string render_state(const RepositoryState& state) {
  std::string out =
      "# Module repository versions accepted on this machine (rollback protection); written by libTMC.\n"
      "repositories:";
  if (state.empty()) return out + " {}\n";
  out += "\n";
  for (const auto& [id, a] : state) {
    out += "  \"" + id + "\":\n    version: " + std::to_string(a.version) + "\n    index_sha256: \"" +
           to_hex(a.index_sha256) + "\"\n";
  }
  return out;
}

Status update_state(const std::filesystem::path& path, const std::function<Status(RepositoryState&)>& update) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return state_error(path, 0, "cannot create the directory " + path.parent_path().string() + ": " + ec.message());
  const FileLock lock(path);
  if (!lock.error().empty()) return state_error(path, 0, lock.error());
  auto state = load_state(path);
  if (!state) return state.status();
  const RepositoryState before = state.value();
  if (Status s = update(state.value()); !s) return s;
  if (state.value().size() == before.size() &&
      std::equal(before.begin(), before.end(), state.value().begin(), [](const auto& a, const auto& b) {
        return a.first == b.first && a.second.version == b.second.version && a.second.index_sha256 == b.second.index_sha256;
      })) {
    return Status::ok();  // nothing new: leave the file (and its mtime) alone
  }
  if (Status s = write_file_atomically(path, render_state(state.value()), 0600); !s) {
    return state_error(path, 0, "cannot record the accepted version: " + s.message());
  }
  return Status::ok();
}

std::filesystem::path default_state_file() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::filesystem::path(xdg) / "tmc" / "module-repositories.yaml";
  const char* home = std::getenv("HOME");
  const std::filesystem::path base = home != nullptr && home[0] != '\0' ? std::filesystem::path(home) : std::filesystem::path(".");
  return base / ".local" / "state" / "tmc" / "module-repositories.yaml";
}

}  // namespace tmc::modules
