// libtmc-retrofit.so: run an unmodified UDP program over libTMC channels (LD_PRELOAD).
//
// The shim interposes the socket calls of the program (dlsym(RTLD_NEXT) reaches the real
// ones). An AF_INET datagram socket the program creates is a candidate; it is rewired when
// it binds to one of the manifest's `local ports` or sends (connects) to one of its
// `destinations`. Rewiring opens a channel for it and puts one end of an AF_UNIX datagram
// socketpair on the program's descriptor number (dup3), so the descriptor stays a real
// one: poll/select/epoll see it readable when a message is queued on it. A pump thread
// per socket takes delivered messages from the channel and writes them, frame header
// included, into the other end; the intercepted receive calls strip the header and
// report the real peer's address. Sends are framed and handed to Channel::send.
//
// The library's own sockets are never candidates: socket() calls made from libtmc or
// libuv are left alone, and every other interposed call acts only on descriptors in the
// table, so the loop thread's calls pass straight through without taking a lock.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "retrofit/config.hpp"
#include "retrofit/frame.hpp"
#include "tmc/channel.hpp"

namespace {

using tmc::retrofit::FrameHeader;
constexpr std::size_t kHeader = sizeof(FrameHeader);

// --- the real functions ---------------------------------------------------------------
struct Real {
  int (*socket)(int, int, int);
  int (*bind)(int, const sockaddr*, socklen_t);
  int (*connect)(int, const sockaddr*, socklen_t);
  ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  int (*sendmmsg)(int, mmsghdr*, unsigned, int);
  ssize_t (*send)(int, const void*, size_t, int);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recvmsg)(int, msghdr*, int);
  int (*recvmmsg)(int, mmsghdr*, unsigned, int, timespec*);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*recvfrom_chk)(int, void*, size_t, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recv_chk)(int, void*, size_t, size_t, int);
  ssize_t (*read_chk)(int, void*, size_t, size_t);
  int (*close)(int);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  int (*getsockopt)(int, int, int, void*, socklen_t*);
  int (*getsockname)(int, sockaddr*, socklen_t*);
  int (*getpeername)(int, sockaddr*, socklen_t*);
};

template <typename F>
void load(F& f, const char* name) {
  f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

const Real& real() {
  static const Real r = [] {
    Real x{};
    load(x.socket, "socket");
    load(x.bind, "bind");
    load(x.connect, "connect");
    load(x.sendto, "sendto");
    load(x.sendmsg, "sendmsg");
    load(x.sendmmsg, "sendmmsg");
    load(x.send, "send");
    load(x.write, "write");
    load(x.recvfrom, "recvfrom");
    load(x.recvmsg, "recvmsg");
    load(x.recvmmsg, "recvmmsg");
    load(x.recv, "recv");
    load(x.read, "read");
    load(x.recvfrom_chk, "__recvfrom_chk");
    load(x.recv_chk, "__recv_chk");
    load(x.read_chk, "__read_chk");
    load(x.close, "close");
    load(x.setsockopt, "setsockopt");
    load(x.getsockopt, "getsockopt");
    load(x.getsockname, "getsockname");
    load(x.getpeername, "getpeername");
    return x;
  }();
  return r;
}

// --- configuration, loaded once before main -------------------------------------------
struct Global {
  tmc::retrofit::Config cfg;
  std::string name;  // TMC_RETROFIT_NAME: the first rewired socket's member name
  std::shared_ptr<tmc::Runtime> runtime;  // created with the first rewired socket
  std::vector<std::uint32_t> host_ips;  // this host's IPv4 addresses (network order)
  const void* lib_bases[2] = {nullptr, nullptr};  // libtmc, libuv
  int sockets_opened = 0;
};
Global* g = nullptr;  // leaked on purpose: it must outlive every static destructor
// Incremented in a child after fork(). A rewired socket belongs to the process (the
// generation) that rewired it: in a child the parent's loop and pump threads do not
// exist, so an inherited rewired descriptor can only be closed (its channel is left
// alone). Sockets the child rewires itself get a runtime of the child's own.
std::atomic<unsigned> g_generation{0};

void after_fork_in_child() {
  g_generation.fetch_add(1);
  // The parent's runtime has no thread here: never run its destructor, start afresh.
  if (g != nullptr && g->runtime) new std::shared_ptr<tmc::Runtime>(std::move(g->runtime));  // NOLINT: leaked on purpose
}
std::mutex g_mu;      // rewiring and closing; never taken on a path without a table entry

bool is_multicast(std::uint32_t ip_be) { return (ntohl(ip_be) & 0xf0000000U) == 0xe0000000U; }
bool is_loopback(std::uint32_t ip_be) { return (ntohl(ip_be) >> 24) == 127; }

bool is_host_ip(std::uint32_t ip_be) {
  if (is_loopback(ip_be)) return true;
  for (std::uint32_t a : g->host_ips)
    if (a == ip_be) return true;
  return false;
}

// --- one rewired socket ---------------------------------------------------------------
struct Rewired {
  int fd = -1;       // the program's descriptor: our socketpair's app end
  int pump_fd = -1;  // our end
  sockaddr_in local{};
  // The connected peer as one word (connect() may race the pump's filter): bit 48 set
  // when connected, then the address and the port, in network byte order.
  std::atomic<std::uint64_t> peer_key{0};
  tmc::Channel channel;
  std::thread pump;
  std::atomic<bool> waited{false};
  bool reliable = false;
  unsigned generation = 0;  // g_generation when rewired

  std::mutex send_mu;  // the scratch buffer, the fan-out state, the source cache
  std::vector<std::uint8_t> scratch;
  std::vector<std::uint8_t> last_payload;  // fan-out: the bytes of the last send
  std::vector<sockaddr_in> covered;        // fan-out: peers the last send already reached
  // Source addresses by destination (a route lookup each), for a socket bound to 0.0.0.0.
  struct SourceRoute {
    std::uint32_t dst = 0, src = 0;
  };
  std::array<SourceRoute, 8> src_cache{};
  std::size_t src_cache_next = 0;
  std::atomic<std::uint64_t> sends{0};
  std::atomic<std::uint64_t> absorbed{0};
  std::atomic<std::uint64_t> filtered{0};

  static std::uint64_t key_of(std::uint32_t ip, std::uint16_t port) noexcept {
    return (std::uint64_t{1} << 48) | (std::uint64_t{ip} << 16) | port;
  }
  void set_peer(const sockaddr_in& a) noexcept {
    peer_key.store(key_of(a.sin_addr.s_addr, a.sin_port), std::memory_order_release);
  }
  [[nodiscard]] bool connected() const noexcept { return peer_key.load(std::memory_order_acquire) != 0; }
  [[nodiscard]] sockaddr_in peer() const noexcept {
    const std::uint64_t k = peer_key.load(std::memory_order_acquire);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = static_cast<std::uint32_t>(k >> 16);
    a.sin_port = static_cast<std::uint16_t>(k);
    return a;
  }

  [[nodiscard]] bool accepts(const FrameHeader& h) const noexcept {
    if (h.version != tmc::retrofit::kFrameVersion) return false;
    const std::uint64_t pk = peer_key.load(std::memory_order_acquire);
    if (pk != 0 && pk != key_of(h.src_ip, h.src_port)) return false;
    if ((h.flags & tmc::retrofit::kFrameToAll) != 0) return true;
    if (h.dst_port != local.sin_port) return false;
    if (is_multicast(h.dst_ip) || h.dst_ip == INADDR_BROADCAST) return true;
    if (local.sin_addr.s_addr != INADDR_ANY) return h.dst_ip == local.sin_addr.s_addr;
    return is_host_ip(h.dst_ip);
  }
};

constexpr int kMaxFd = 1 << 16;
std::atomic<Rewired*> g_rewired[kMaxFd];
// Candidates: AF_INET datagram sockets the program created, not (yet) rewired.
std::atomic<bool> g_candidate[kMaxFd];

inline Rewired* rewired(int fd) noexcept {
  if (fd < 0 || fd >= kMaxFd) return nullptr;
  return g_rewired[fd].load(std::memory_order_acquire);
}
inline bool candidate(int fd) noexcept {
  return g != nullptr && fd >= 0 && fd < kMaxFd && g_candidate[fd].load(std::memory_order_acquire);
}

// The pump: delivered messages to the program's descriptor, frame and all. It blocks
// when the program does not read (the channel's receive queue then fills as a socket
// buffer would); it ends when the channel is closed or the program's end is gone.
void pump_loop(Rewired* r) {
  tmc::Message m;
  for (;;) {
    const tmc::Status st = r->channel.receive(m, std::chrono::milliseconds(200));
    if (st.code() == tmc::Code::TIMED_OUT) continue;
    if (!st) return;
    const auto p = m.payload();
    if (p.size() < kHeader || !r->accepts(tmc::retrofit::decode(p.data()))) {
      r->filtered.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    for (;;) {
      if (real().send(r->pump_fd, p.data(), p.size(), MSG_NOSIGNAL) >= 0) break;
      if (errno == EINTR) continue;
      if (errno == ENOBUFS || errno == EAGAIN) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      return;  // the program closed its end
    }
    m.reset();
  }
}

std::uint32_t source_ip_for(Rewired& r, std::uint32_t dst_ip) {
  if (r.local.sin_addr.s_addr != INADDR_ANY) return r.local.sin_addr.s_addr;
  for (const auto& e : r.src_cache)
    if (e.src != 0 && e.dst == dst_ip) return e.src;
  std::uint32_t src = htonl(INADDR_LOOPBACK);
  // The route's source address: connect a throwaway UDP socket (no packet is sent).
  const int s = real().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = dst_ip == INADDR_ANY ? htonl(INADDR_LOOPBACK) : dst_ip;
    sockaddr_in me{};
    socklen_t len = sizeof me;
    if (real().connect(s, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 &&
        real().getsockname(s, reinterpret_cast<sockaddr*>(&me), &len) == 0 && me.sin_addr.s_addr != INADDR_ANY)
      src = me.sin_addr.s_addr;
    real().close(s);
  }
  r.src_cache[r.src_cache_next] = {dst_ip, src};
  r.src_cache_next = (r.src_cache_next + 1) % r.src_cache.size();
  return src;
}

int fail(int err) {
  errno = err;
  return -1;
}

int errno_for(const tmc::Status& st) {
  switch (st.code()) {
    case tmc::Code::WOULD_BLOCK: return EAGAIN;
    case tmc::Code::MESSAGE_TOO_LARGE: return EMSGSIZE;
    case tmc::Code::CLOSED: return EBADF;
    default: return EIO;
  }
}

// Send one datagram (gathered from iov) to `to` over r's channel.
ssize_t channel_send(Rewired& r, const iovec* iov, std::size_t iovcnt, const sockaddr* to, socklen_t tolen) {
  if (r.generation != g_generation.load(std::memory_order_relaxed)) return fail(ENOTSUP);
  sockaddr_in dst{};
  if (to != nullptr) {
    if (tolen < sizeof(sockaddr_in) || to->sa_family != AF_INET) return fail(EAFNOSUPPORT);
    std::memcpy(&dst, to, sizeof dst);
  } else if (r.connected()) {
    dst = r.peer();
  } else {
    return fail(EDESTADDRREQ);
  }
  if (g->cfg.wait_for_members > 0 && !r.waited.load(std::memory_order_relaxed) && !r.waited.exchange(true)) {
    (void)r.channel.wait_for_members(static_cast<std::size_t>(g->cfg.wait_for_members),
                                     std::chrono::milliseconds(g->cfg.wait_timeout_ms));
  }
  std::size_t len = 0;
  for (std::size_t i = 0; i < iovcnt; ++i) len += iov[i].iov_len;
  std::lock_guard<std::mutex> lock(r.send_mu);
  if (r.scratch.size() < kHeader + len) r.scratch.resize(kHeader + len);
  std::uint8_t* out = r.scratch.data() + kHeader;
  for (std::size_t i = 0; i < iovcnt; ++i) {
    if (iov[i].iov_len != 0) std::memcpy(out, iov[i].iov_base, iov[i].iov_len);
    out += iov[i].iov_len;
  }
  FrameHeader h;
  h.src_port = r.local.sin_port;
  h.src_ip = source_ip_for(r, dst.sin_addr.s_addr);
  h.dst_ip = dst.sin_addr.s_addr;
  h.dst_port = dst.sin_port;
  if (g->cfg.unicast == tmc::retrofit::UnicastMode::fan_out && !is_multicast(dst.sin_addr.s_addr)) {
    // One multicast for a fan-out loop: the same bytes sent next to the other peers are
    // already on their way to them.
    const std::uint8_t* payload = r.scratch.data() + kHeader;
    const bool same = r.last_payload.size() == len && (len == 0 || std::memcmp(r.last_payload.data(), payload, len) == 0);
    bool seen = false;
    for (const auto& c : r.covered)
      seen = seen || (c.sin_addr.s_addr == dst.sin_addr.s_addr && c.sin_port == dst.sin_port);
    if (same && !seen) {
      r.covered.push_back(dst);
      r.absorbed.fetch_add(1, std::memory_order_relaxed);
      return static_cast<ssize_t>(len);
    }
    r.last_payload.assign(payload, payload + len);
    r.covered.assign(1, dst);
    h.flags |= tmc::retrofit::kFrameToAll;
  }
  tmc::retrofit::encode(h, r.scratch.data());
  const tmc::Status st = r.channel.send(std::span<const std::uint8_t>(r.scratch.data(), kHeader + len));
  if (!st) return fail(errno_for(st));
  r.sends.fetch_add(1, std::memory_order_relaxed);
  return static_cast<ssize_t>(len);
}

// Receive one framed datagram into msg (its iovecs), stripping the frame.
ssize_t channel_recv(Rewired& r, msghdr* msg, int flags) {
  constexpr std::size_t kMaxIov = 64;
  FrameHeader h;
  iovec iov[kMaxIov + 1];
  iov[0] = {&h, kHeader};
  const std::size_t n = std::min<std::size_t>(msg->msg_iovlen, kMaxIov);
  for (std::size_t i = 0; i < n; ++i) iov[i + 1] = msg->msg_iov[i];
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = n + 1;
  const ssize_t got = real().recvmsg(r.fd, &m, flags);
  if (got < 0) return -1;
  if (static_cast<std::size_t>(got) < kHeader) return 0;
  if (msg->msg_name != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_port = h.src_port;
    from.sin_addr.s_addr = h.src_ip;
    std::memcpy(msg->msg_name, &from, std::min<std::size_t>(msg->msg_namelen, sizeof from));
    msg->msg_namelen = sizeof from;
  }
  msg->msg_controllen = 0;
  msg->msg_flags = m.msg_flags;
  return got - static_cast<ssize_t>(kHeader);
}

ssize_t channel_recvfrom(Rewired& r, void* buf, std::size_t len, int flags, sockaddr* from, socklen_t* fromlen) {
  iovec iov{buf, len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_name = from;
  m.msg_namelen = (from != nullptr && fromlen != nullptr) ? *fromlen : 0;
  if (from == nullptr) m.msg_name = nullptr;
  const ssize_t got = channel_recv(r, &m, flags);
  if (got >= 0 && from != nullptr && fromlen != nullptr) *fromlen = m.msg_namelen;
  return got;
}

// Rewire `fd`: open its channel, then swap the UDP socket for the socketpair's app end.
// `local` is what the socket is (or will say it is) bound to. Called with g_mu held.
Rewired* rewire(int fd, sockaddr_in local, const sockaddr_in* peer) {
  auto r = std::make_unique<Rewired>();
  r->fd = fd;
  r->local = local;
  r->generation = g_generation.load();
  if (peer != nullptr) r->set_peer(*peer);
  tmc::Manifest m = g->cfg.manifest;
  const int nth = ++g->sockets_opened;
  if (!g->name.empty()) m.name = nth == 1 ? g->name : g->name + "." + std::to_string(nth);
  // One loop thread for every rewired socket of the process, started with the first (the
  // shim is preloaded into every process the program starts; most never rewire anything).
  if (!g->runtime) g->runtime = tmc::Runtime::create();
  tmc::OpenOptions opts;
  opts.runtime = g->runtime;
  const tmc::Status st = tmc::Channel::try_open(m, opts, r->channel);
  if (!st) {
    std::fprintf(stderr, "libtmc-retrofit: cannot open the channel for descriptor %d: %s\n", fd, st.to_string().c_str());
    errno = EIO;
    return nullptr;
  }
  r->reliable = r->channel.plan().traits.reliability != tmc::ReliabilityScope::none;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
  const int big = 8 * 1024 * 1024;
  if (real().setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
    (void)real().setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  // The program's descriptor keeps its status flags (O_NONBLOCK) and close-on-exec.
  const int fl = fcntl(fd, F_GETFL);
  const int fdfl = fcntl(fd, F_GETFD);
  if (fl >= 0) (void)fcntl(sv[0], F_SETFL, fl & O_NONBLOCK);
  if (dup3(sv[0], fd, (fdfl >= 0 && (fdfl & FD_CLOEXEC) != 0) ? O_CLOEXEC : 0) < 0) {
    const int err = errno;
    real().close(sv[0]);
    real().close(sv[1]);
    errno = err;
    return nullptr;
  }
  real().close(sv[0]);
  r->pump_fd = sv[1];
  Rewired* raw = r.release();
  raw->pump = std::thread(pump_loop, raw);
  g_candidate[fd].store(false, std::memory_order_release);
  g_rewired[fd].store(raw, std::memory_order_release);
  return raw;
}

// A candidate sends to or connects to `to`: rewire it when the manifest says so.
Rewired* maybe_rewire_for_destination(int fd, const sockaddr* to, socklen_t tolen, bool connecting) {
  if (to == nullptr || tolen < sizeof(sockaddr_in) || to->sa_family != AF_INET) return nullptr;
  sockaddr_in dst{};
  std::memcpy(&dst, to, sizeof dst);
  if (!g->cfg.matches_destination(dst)) return nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  if (Rewired* r = rewired(fd)) return r;
  if (!candidate(fd)) return nullptr;
  // The local port: the one the socket is bound to, or an ephemeral one as the kernel
  // would pick on the first send.
  sockaddr_in local{};
  socklen_t len = sizeof local;
  if (real().getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return nullptr;
  if (local.sin_port == 0) {
    sockaddr_in any{};
    any.sin_family = AF_INET;
    if (real().bind(fd, reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0) return nullptr;
    len = sizeof local;
    if (real().getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return nullptr;
  }
  return rewire(fd, local, connecting ? &dst : nullptr);
}

// Close a rewired socket: the program's end first (so a blocked pump returns), then wait
// for reliable messages' acknowledgments (linger ms), close the channel, join the pump.
void teardown(Rewired* r) {
  real().close(r->fd);
  if (r->reliable && r->sends.load() > 0 && g->cfg.linger_ms > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(g->cfg.linger_ms);
    while (std::chrono::steady_clock::now() < until) {
      const tmc::ChannelStats s = r->channel.stats();
      if (s.counter("reliability.met") + s.counter("reliability.failed") >= r->sends.load()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  r->channel.close();
  if (r->pump.joinable()) r->pump.join();
  real().close(r->pump_fd);
  if (std::getenv("TMC_RETROFIT_VERBOSE") != nullptr) {
    const tmc::ChannelStats s = r->channel.stats();
    std::fprintf(stderr,
                 "libtmc-retrofit: descriptor %d: sent %llu (absorbed by fan-out %llu), delivered %llu, "
                 "not addressed here %llu\n",
                 r->fd, static_cast<unsigned long long>(r->sends.load()),
                 static_cast<unsigned long long>(r->absorbed.load()),
                 static_cast<unsigned long long>(s.messages_delivered),
                 static_cast<unsigned long long>(r->filtered.load()));
  }
  delete r;
}

void close_all_at_exit() {
  if (g == nullptr) return;
  std::lock_guard<std::mutex> lock(g_mu);
  for (int fd = 0; fd < kMaxFd; ++fd) {
    Rewired* r = g_rewired[fd].load();
    if (r != nullptr && r->generation == g_generation.load()) {
      g_rewired[fd].store(nullptr);
      teardown(r);
    }
  }
}

const void* object_base(const void* addr) {
  Dl_info info{};
  return dladdr(addr, &info) != 0 ? info.dli_fbase : nullptr;
}

bool called_from_library(const void* ret) {
  const void* b = object_base(ret);
  return b != nullptr && (b == g->lib_bases[0] || b == g->lib_bases[1]);
}

__attribute__((constructor)) void retrofit_init() {
  (void)real();
  const char* path = std::getenv("TMC_RETROFIT_MANIFEST");
  if (path == nullptr || *path == '\0') return;
  auto* gl = new Global;
  std::string problems;
  if (!tmc::retrofit::load_config(path, gl->cfg, problems)) {
    std::fprintf(stderr, "libtmc-retrofit: %s", problems.c_str());
    _exit(127);
  }
  if (const char* n = std::getenv("TMC_RETROFIT_NAME")) gl->name = n;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next)
      if (i->ifa_addr != nullptr && i->ifa_addr->sa_family == AF_INET)
        gl->host_ips.push_back(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    freeifaddrs(ifs);
  }
  gl->lib_bases[0] = object_base(reinterpret_cast<const void*>(&tmc::delivery_state_name));
  gl->lib_bases[1] = object_base(reinterpret_cast<const void*>(&uv_version));
  g = gl;
  std::atexit(close_all_at_exit);
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
}

}  // namespace

// --- the interposed calls -------------------------------------------------------------
extern "C" {

__attribute__((visibility("default"))) int socket(int domain, int type, int protocol) {
  const int fd = real().socket(domain, type, protocol);
  if (fd >= 0 && fd < kMaxFd && g != nullptr) {
    const bool udp4 = domain == AF_INET && (type & 0xf) == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP);
    g_candidate[fd].store(udp4 && !called_from_library(__builtin_return_address(0)), std::memory_order_release);
  }
  return fd;
}

__attribute__((visibility("default"))) int bind(int fd, const sockaddr* addr, socklen_t len) {
  if (candidate(fd) && addr != nullptr && len >= sizeof(sockaddr_in) && addr->sa_family == AF_INET) {
    sockaddr_in want{};
    std::memcpy(&want, addr, sizeof want);
    if (g->cfg.matches_local_port(ntohs(want.sin_port))) {
      std::lock_guard<std::mutex> lock(g_mu);
      if (rewired(fd) != nullptr) return fail(EINVAL);  // already bound, as the kernel says
      return rewire(fd, want, nullptr) != nullptr ? 0 : -1;
    }
  }
  if (rewired(fd) != nullptr) return fail(EINVAL);
  return real().bind(fd, addr, len);
}

__attribute__((visibility("default"))) int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (Rewired* r = rewired(fd)) {
    if (addr != nullptr && addr->sa_family == AF_UNSPEC) {
      r->peer_key.store(0, std::memory_order_release);
      return 0;
    }
    if (addr == nullptr || len < sizeof(sockaddr_in) || addr->sa_family != AF_INET) return fail(EAFNOSUPPORT);
    sockaddr_in a{};
    std::memcpy(&a, addr, sizeof a);
    r->set_peer(a);
    return 0;
  }
  if (candidate(fd)) {
    if (maybe_rewire_for_destination(fd, addr, len, true) != nullptr) return 0;
    if (rewired(fd) != nullptr) return -1;
  }
  return real().connect(fd, addr, len);
}

__attribute__((visibility("default"))) ssize_t sendto(int fd, const void* buf, size_t len, int flags,
                                                      const sockaddr* to, socklen_t tolen) {
  Rewired* r = rewired(fd);
  if (r == nullptr && candidate(fd)) r = maybe_rewire_for_destination(fd, to, tolen, false);
  if (r == nullptr) return real().sendto(fd, buf, len, flags, to, tolen);
  iovec iov{const_cast<void*>(buf), len};
  return channel_send(*r, &iov, 1, to, tolen);
}

__attribute__((visibility("default"))) ssize_t send(int fd, const void* buf, size_t len, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().send(fd, buf, len, flags);
  iovec iov{const_cast<void*>(buf), len};
  return channel_send(*r, &iov, 1, nullptr, 0);
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void* buf, size_t len) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().write(fd, buf, len);
  iovec iov{const_cast<void*>(buf), len};
  return channel_send(*r, &iov, 1, nullptr, 0);
}

__attribute__((visibility("default"))) ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr && candidate(fd) && msg != nullptr)
    r = maybe_rewire_for_destination(fd, static_cast<const sockaddr*>(msg->msg_name), msg->msg_namelen, false);
  if (r == nullptr) return real().sendmsg(fd, msg, flags);
  return channel_send(*r, msg->msg_iov, msg->msg_iovlen, static_cast<const sockaddr*>(msg->msg_name),
                      msg->msg_namelen);
}

__attribute__((visibility("default"))) int sendmmsg(int fd, mmsghdr* v, unsigned n, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr && candidate(fd) && n > 0)
    r = maybe_rewire_for_destination(fd, static_cast<const sockaddr*>(v[0].msg_hdr.msg_name),
                                     v[0].msg_hdr.msg_namelen, false);
  if (r == nullptr) return real().sendmmsg(fd, v, n, flags);
  unsigned i = 0;
  for (; i < n; ++i) {
    const ssize_t s = channel_send(*r, v[i].msg_hdr.msg_iov, v[i].msg_hdr.msg_iovlen,
                                   static_cast<const sockaddr*>(v[i].msg_hdr.msg_name), v[i].msg_hdr.msg_namelen);
    if (s < 0) return i > 0 ? static_cast<int>(i) : -1;
    v[i].msg_len = static_cast<unsigned>(s);
  }
  return static_cast<int>(i);
}

__attribute__((visibility("default"))) ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                                                        socklen_t* fromlen) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recvfrom(fd, buf, len, flags, from, fromlen);
  return channel_recvfrom(*r, buf, len, flags, from, fromlen);
}

__attribute__((visibility("default"))) ssize_t __recvfrom_chk(int fd, void* buf, size_t len, size_t buflen, int flags,
                                                              sockaddr* from, socklen_t* fromlen) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recvfrom_chk(fd, buf, len, buflen, flags, from, fromlen);
  return channel_recvfrom(*r, buf, std::min(len, buflen), flags, from, fromlen);
}

__attribute__((visibility("default"))) ssize_t recv(int fd, void* buf, size_t len, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recv(fd, buf, len, flags);
  return channel_recvfrom(*r, buf, len, flags, nullptr, nullptr);
}

__attribute__((visibility("default"))) ssize_t __recv_chk(int fd, void* buf, size_t len, size_t buflen, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recv_chk(fd, buf, len, buflen, flags);
  return channel_recvfrom(*r, buf, std::min(len, buflen), flags, nullptr, nullptr);
}

__attribute__((visibility("default"))) ssize_t read(int fd, void* buf, size_t len) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().read(fd, buf, len);
  return channel_recvfrom(*r, buf, len, 0, nullptr, nullptr);
}

__attribute__((visibility("default"))) ssize_t __read_chk(int fd, void* buf, size_t len, size_t buflen) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().read_chk(fd, buf, len, buflen);
  return channel_recvfrom(*r, buf, std::min(len, buflen), 0, nullptr, nullptr);
}

__attribute__((visibility("default"))) ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recvmsg(fd, msg, flags);
  return channel_recv(*r, msg, flags);
}

__attribute__((visibility("default"))) int recvmmsg(int fd, mmsghdr* v, unsigned n, int flags, timespec* timeout) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().recvmmsg(fd, v, n, flags, timeout);
  unsigned i = 0;
  for (; i < n; ++i) {
    int f = flags & ~MSG_WAITFORONE;
    if (i > 0 && (flags & MSG_WAITFORONE) != 0) f |= MSG_DONTWAIT;
    const ssize_t got = channel_recv(*r, &v[i].msg_hdr, f);
    if (got < 0) return i > 0 ? static_cast<int>(i) : -1;
    v[i].msg_len = static_cast<unsigned>(got);
  }
  return static_cast<int>(i);
}

__attribute__((visibility("default"))) int close(int fd) {
  if (fd >= 0 && fd < kMaxFd && g != nullptr) {
    g_candidate[fd].store(false, std::memory_order_release);
    if (g_rewired[fd].load(std::memory_order_acquire) != nullptr) {
      std::lock_guard<std::mutex> lock(g_mu);
      if (Rewired* r = g_rewired[fd].exchange(nullptr)) {
        if (r->generation != g_generation.load()) return real().close(fd);  // the parent's channel
        teardown(r);
        return 0;
      }
    }
  }
  return real().close(fd);
}

__attribute__((visibility("default"))) int setsockopt(int fd, int level, int name, const void* val, socklen_t len) {
  if (rewired(fd) != nullptr && level != SOL_SOCKET) return 0;  // IP-level options: the channel's business
  return real().setsockopt(fd, level, name, val, len);
}

__attribute__((visibility("default"))) int getsockopt(int fd, int level, int name, void* val, socklen_t* len) {
  if (rewired(fd) != nullptr && level == SOL_SOCKET && name == SO_DOMAIN && val != nullptr && len != nullptr &&
      *len >= sizeof(int)) {
    const int domain = AF_INET;
    std::memcpy(val, &domain, sizeof domain);
    *len = sizeof domain;
    return 0;
  }
  return real().getsockopt(fd, level, name, val, len);
}

__attribute__((visibility("default"))) int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().getsockname(fd, addr, len);
  if (addr == nullptr || len == nullptr) return fail(EFAULT);
  std::memcpy(addr, &r->local, std::min<std::size_t>(*len, sizeof r->local));
  *len = sizeof r->local;
  return 0;
}

__attribute__((visibility("default"))) int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  Rewired* r = rewired(fd);
  if (r == nullptr) return real().getpeername(fd, addr, len);
  if (!r->connected()) return fail(ENOTCONN);
  if (addr == nullptr || len == nullptr) return fail(EFAULT);
  const sockaddr_in p = r->peer();
  std::memcpy(addr, &p, std::min<std::size_t>(*len, sizeof p));
  *len = sizeof p;
  return 0;
}

}  // extern "C"
