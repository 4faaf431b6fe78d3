// Shared plumbing of the end-to-end benchmarks (e2e_throughput.cpp, e2e_latency.cpp):
// command-line options, raw UDP multicast sockets written plainly (the baseline every
// libTMC number is divided by), libTMC manifests for the compared channel kinds, and
// child processes whose stdout the orchestrator reads line by line.
//
// Every participant runs in its own process (the orchestrator re-executes its own binary
// with --role ...), so the numbers include what a real deployment pays: separate address
// spaces, separate sockets, the kernel's multicast fan-out between them.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <tmc/channel.hpp>

namespace tmc::bench {

inline std::uint64_t mono_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// --- options ----------------------------------------------------------------------------

/// "--key value" pairs (and bare "--flag", which reads as "1").
class Options {
 public:
  Options(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a.substr(0, 2) != "--") throw std::runtime_error("unexpected argument '" + std::string(a) + "'");
      std::string key(a.substr(2));
      if (i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--") {
        values_[key] = argv[++i];
      } else {
        values_[key] = "1";
      }
    }
  }
  [[nodiscard]] bool has(const std::string& k) const { return values_.count(k) != 0; }
  [[nodiscard]] std::string str(const std::string& k, std::string fallback = {}) const {
    auto it = values_.find(k);
    return it == values_.end() ? fallback : it->second;
  }
  [[nodiscard]] double num(const std::string& k, double fallback) const {
    auto it = values_.find(k);
    if (it == values_.end()) return fallback;
    char* end = nullptr;
    double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str() || *end != '\0') {
      throw std::runtime_error("--" + k + ": '" + it->second + "' is not a number");
    }
    return v;
  }
  [[nodiscard]] std::vector<std::string> list(const std::string& k, const std::string& fallback) const {
    std::vector<std::string> out;
    std::string s = str(k, fallback);
    std::size_t start = 0;
    while (start <= s.size()) {
      std::size_t comma = s.find(',', start);
      if (comma == std::string::npos) comma = s.size();
      if (comma > start) out.push_back(s.substr(start, comma - start));
      start = comma + 1;
    }
    return out;
  }

 private:
  std::map<std::string, std::string> values_;
};

// --- the compared implementations -------------------------------------------------------

/// raw: UDP multicast with sendmmsg/recvmmsg, no libTMC. tmc: a best-effort channel (no
/// stages). tmc-ordered: point-to-point ordering (the paper's drop-stale rule) plus error
/// checking (CRC32C). tmc-auth / tmc-encrypt: best effort with `security: authenticate` /
/// `encrypt`.
inline bool is_tmc(std::string_view impl) { return impl.substr(0, 3) == "tmc"; }

/// tmc-auth and tmc-encrypt (best effort with `security`) need a group key file that every
/// process of the run reads: a throwaway key, written once per user under /tmp (atomically,
/// so a process never reads half of it).
inline std::string bench_key_file() {
  const std::string path = "/tmp/tmc-bench-" + std::to_string(::getuid()) + ".keys";
  const std::string tmp = path + "." + std::to_string(::getpid());
  {
    std::ofstream(tmp) << "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
  return path;
}

inline tmc::Manifest bench_manifest(std::string_view impl, const std::string& group, int port,
                                    const std::string& interface, tmc::Duplexity duplexity) {
  tmc::ManifestBuilder b(std::string("bench-") + std::string(impl) + "-" + std::to_string(port));
  b.group(group).port(port).duplexity(duplexity).loopback(true).ttl(1);
  if (!interface.empty()) b.interface(interface);
  // tmc-fifo and tmc-checked split tmc-ordered into its two halves, to see which one costs.
  if (impl == "tmc-ordered") {
    b.point_to_point_ordering(tmc::OrderingMode::drop_stale).error_checking(true);
  } else if (impl == "tmc-fifo") {
    b.point_to_point_ordering(tmc::OrderingMode::drop_stale);
  } else if (impl == "tmc-checked") {
    b.error_checking(true);
  } else if (impl == "tmc-auth" || impl == "tmc-encrypt") {
    b.security(impl == "tmc-auth" ? "authenticate" : "encrypt").key_file(bench_key_file());
  } else if (impl != "tmc") {
    throw std::runtime_error("unknown implementation '" + std::string(impl) +
                             "' (raw, tmc, tmc-ordered, tmc-fifo, tmc-checked, tmc-auth, tmc-encrypt)");
  }
  return b.build();
}

// --- raw UDP multicast ------------------------------------------------------------------

struct IfaceAddr {
  unsigned index = 0;
  in_addr addr{};
};

/// The interface to use: empty name = loopback, as libTMC's default.
inline IfaceAddr resolve_interface(const std::string& name_in) {
  const std::string name = name_in.empty() ? "lo" : name_in;
  IfaceAddr out;
  out.index = if_nametoindex(name.c_str());
  if (out.index == 0) throw std::runtime_error("no such interface '" + name + "'");
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) throw std::runtime_error(std::string("getifaddrs: ") + std::strerror(errno));
  bool found = false;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr != nullptr && i->ifa_addr->sa_family == AF_INET && name == i->ifa_name) {
      sockaddr_in sin{};
      std::memcpy(&sin, i->ifa_addr, sizeof sin);
      out.addr = sin.sin_addr;
      found = true;
      break;
    }
  }
  freeifaddrs(list);
  if (!found) throw std::runtime_error("interface '" + name + "' has no IPv4 address");
  return out;
}

inline void check_sys(int rc, const char* what) {
  if (rc < 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

/// A UDP socket bound to the group's port and joined on the interface (receivers) and
/// sending to the group out of that interface with loopback on (so processes on this host
/// receive), TTL 1.
struct RawSocket {
  int fd = -1;
  sockaddr_in group{};

  RawSocket(const std::string& group_ip, int port, const std::string& interface, bool join, int buffer_bytes) {
    fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    check_sys(fd, "socket");
    const int one = 1;
    check_sys(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), "SO_REUSEADDR");
    check_sys(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes), "SO_RCVBUF");
    check_sys(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes), "SO_SNDBUF");
    group.sin_family = AF_INET;
    group.sin_port = htons(static_cast<std::uint16_t>(port));
    if (inet_pton(AF_INET, group_ip.c_str(), &group.sin_addr) != 1) throw std::runtime_error("bad group " + group_ip);
    const IfaceAddr ifa = resolve_interface(interface);
    ip_mreqn mreq{};
    mreq.imr_multiaddr = group.sin_addr;
    mreq.imr_address = ifa.addr;
    mreq.imr_ifindex = static_cast<int>(ifa.index);
    check_sys(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof mreq), "IP_MULTICAST_IF");
    const unsigned char ttl = 1;
    const unsigned char loop = 1;
    check_sys(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl), "IP_MULTICAST_TTL");
    check_sys(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop), "IP_MULTICAST_LOOP");
    if (join) {
      sockaddr_in bind_addr{};
      bind_addr.sin_family = AF_INET;
      bind_addr.sin_port = group.sin_port;
      bind_addr.sin_addr = group.sin_addr;  // only this group's datagrams
      check_sys(::bind(fd, reinterpret_cast<const sockaddr*>(&bind_addr), sizeof bind_addr), "bind");
      check_sys(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq), "IP_ADD_MEMBERSHIP");
    }
  }
  ~RawSocket() {
    if (fd >= 0) ::close(fd);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  void set_recv_timeout(std::chrono::microseconds t) const {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(t.count() / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(t.count() % 1000000);
    check_sys(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), "SO_RCVTIMEO");
  }
};

// Application payload every implementation carries: a u64 sequence number (big-endian)
// first, so receivers can count distinct messages and check order the same way for all.
inline void put_seq(std::uint8_t* p, std::uint64_t seq) noexcept {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(seq);
    seq >>= 8;
  }
}
inline std::uint64_t get_seq(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// --- child processes --------------------------------------------------------------------

inline std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("readlink /proc/self/exe failed");
  return std::string(buf, static_cast<std::size_t>(n));
}

/// A participant process: this binary again with --role ..., optionally inside a network
/// namespace (through `ip netns exec`). Its stdout is a pipe the orchestrator reads.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& netns) {
    int fds[2];
    check_sys(::pipe2(fds, O_CLOEXEC), "pipe2");
    std::vector<std::string> argv_s;
    if (!netns.empty()) argv_s = {"ip", "netns", "exec", netns};
    argv_s.push_back(self_exe());
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    check_sys(pid_, "fork");
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (fd_ >= 0) ::close(fd_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// The next line of the child's stdout, or nullopt after `timeout` or at EOF.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return std::nullopt;
      char tmp[512];
      const ssize_t n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

  /// Wait for the exit status (kills it after `timeout`). Returns the exit code, or -1.
  /// Afterwards cpu_ns() is the CPU time (user + system) the child used.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      rusage ru{};
      const pid_t r = ::wait4(pid_, &status, WNOHANG, &ru);
      if (r == pid_) {
        pid_ = -1;
        cpu_ns_ = (static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_stime.tv_sec)) * 1e9 +
                  (static_cast<double>(ru.ru_utime.tv_usec) + static_cast<double>(ru.ru_stime.tv_usec)) * 1e3;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return -1;
      }
      ::usleep(5000);
    }
  }
  [[nodiscard]] double cpu_ns() const noexcept { return cpu_ns_; }

 private:
  double cpu_ns_ = 0;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_;
};

/// CPU time of this whole process (user + system, every thread), in nanoseconds.
inline double self_cpu_ns() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return (static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_stime.tv_sec)) * 1e9 +
         (static_cast<double>(ru.ru_utime.tv_usec) + static_cast<double>(ru.ru_stime.tv_usec)) * 1e3;
}

/// One line on stdout, flushed at once (the harness scripts read it while we run).
inline void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

/// "key=value key=value" -> map.
inline std::map<std::string, std::string> parse_kv(const std::string& line) {
  std::map<std::string, std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    std::size_t end = line.find(' ', i);
    if (end == std::string::npos) end = line.size();
    std::string tok = line.substr(i, end - i);
    auto eq = tok.find('=');
    if (eq != std::string::npos) out[tok.substr(0, eq)] = tok.substr(eq + 1);
    i = end;
  }
  return out;
}

inline double kv_num(const std::map<std::string, std::string>& kv, const std::string& k) {
  auto it = kv.find(k);
  return it == kv.end() ? 0.0 : std::strtod(it->second.c_str(), nullptr);
}

/// Reads a benchmark harness's results file (scripts/bench-*.sh): a line "case k=v ..."
/// opens a case (`make_case(kv)`); "na REASON" and "failed REASON" set the last case's
/// `status` and `reason`; any other line "HEAD REST" goes to `add(case, head, rest)`, which
/// returns false for a kind it does not know. Throws naming file:line on a line before any
/// case or of an unknown kind.
template <typename Case, typename MakeCase, typename AddLine>
std::vector<Case> read_results(const std::string& path, MakeCase&& make_case, AddLine&& add) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<Case> out;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const auto sp = line.find(' ');
    const std::string head = line.substr(0, sp);
    const std::string rest = sp == std::string::npos ? std::string() : line.substr(sp + 1);
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (head == "case") {
      out.push_back(make_case(parse_kv(rest)));
    } else if (out.empty()) {
      throw std::runtime_error(where + "a '" + head + "' line before any 'case'");
    } else if (head == "na" || head == "failed") {
      out.back().status = head;
      out.back().reason = rest;
    } else if (!add(out.back(), head, rest)) {
      throw std::runtime_error(where + "unknown line kind '" + head + "'");
    }
  }
  return out;
}

}  // namespace tmc::bench
