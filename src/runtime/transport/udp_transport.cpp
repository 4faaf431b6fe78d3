#include "runtime/transport/udp_transport.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "primitives/common/endpoint.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace tmc::detail {

namespace {

// GSO limits: the kernel's UDP_MAX_SEGMENTS (64 on older kernels) and the largest UDP
// payload. A datagram shorter than the segment size ends a GSO run.
constexpr std::uint32_t kGsoMaxSegments = 64;
constexpr std::uint32_t kGsoMaxBytes = 65000;
constexpr std::size_t kCmsgSpace = CMSG_SPACE(sizeof(std::uint16_t));
constexpr std::size_t kGroCmsgSpace = CMSG_SPACE(sizeof(int));
// Reads one GRO receive may make while the caller still has room (each takes what waits).
constexpr int kGroReadsPerCall = 8;

/// Whether this socket accepts UDP_SEGMENT (Linux 4.18 and later): the kernel then
/// segments in software when the device cannot.
bool socket_has_gso(int fd) {
  int size = 0;
  socklen_t len = sizeof size;
  return ::getsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, &len) == 0;
}

/// Errors with which the kernel refuses a GSO send it would take as separate datagrams
/// (no UDP_SEGMENT support, a device or path that cannot carry the segments).
bool gso_refusal(int err) { return err == EIO || err == EINVAL || err == EOPNOTSUPP || err == EMSGSIZE || err == ENOPROTOOPT; }

std::string errno_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

std::string ip_text(in_addr a) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

/// "ip:port" -> sockaddr_in; false on anything else.
bool to_sockaddr(std::string_view s, sockaddr_in& out) {
  std::uint32_t ip = 0;
  std::uint16_t port = 0;
  if (!detail::parse_ip_port(s, ip, port)) return false;
  out = {};
  out.sin_family = AF_INET;
  out.sin_port = htons(port);
  out.sin_addr.s_addr = htonl(ip);
  return true;
}

Code code_for_errno(int err) {
  switch (err) {
    case EADDRINUSE: return Code::ADDRESS_IN_USE;
    case EACCES:
    case EPERM: return Code::PERMISSION_DENIED;
    case EADDRNOTAVAIL:
    case EINVAL: return Code::BAD_ADDRESS;
    case ENODEV: return Code::NO_SUCH_INTERFACE;
    default: return Code::IO_ERROR;
  }
}

/// The first IPv4 address of interface `name`, if it has one.
bool interface_ipv4(const std::string& name, in_addr& out) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || name != i->ifa_name) continue;
    sockaddr_in sin{};
    std::memcpy(&sin, i->ifa_addr, sizeof sin);
    out = sin.sin_addr;
    found = true;
    break;
  }
  freeifaddrs(list);
  return found;
}

/// SO_BUSY_POLL, best effort: a kernel or device without it (or a value above
/// net.core.busy_read without CAP_NET_ADMIN) leaves the socket as it was.
void set_busy_poll(int fd, int us) {
  if (us > 0) (void)setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &us, sizeof us);
}

void set_buffer(int fd, int force_opt, int opt, int bytes) {
  if (bytes <= 0) return;
  // The FORCE variant ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN; without it,
  // ask for what the plain option grants.
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

}  // namespace

Status UdpTransport::open(const TransportSpec& spec, std::unique_ptr<UdpTransport>& out) {
  std::unique_ptr<UdpTransport> t(new UdpTransport());
  Status s = t->setup(spec);
  if (!s) return s;
  out = std::move(t);
  return Status::ok();
}

UdpTransport::~UdpTransport() {
  for (std::size_t i = tx_head_; i < tx_.size(); ++i) tx_[i]->release();
  rx_.release_all();
  urx_.release_all();
  if (ufd_ >= 0) ::close(ufd_);
  if (fd_ >= 0) {
    if (joined_) {
      ip_mreqn m{};
      m.imr_multiaddr = group_.sin_addr;
      m.imr_ifindex = static_cast<int>(ifindex_);
      (void)setsockopt(fd_, IPPROTO_IP, IP_DROP_MEMBERSHIP, &m, sizeof m);
    }
    ::close(fd_);
  }
}

Status UdpTransport::setup(const TransportSpec& spec) {
  plan_ = spec.plan;
  receive_ = spec.receive;
  batch_ = std::clamp<std::uint32_t>(plan_.batch, 1, 1024);
  const std::string ifname = plan_.interface.empty() ? std::string("lo") : plan_.interface;
  const std::string where = plan_.multicast ? "group " + plan_.group + ":" + std::to_string(plan_.port)
                                            : "unicast port " + std::to_string(plan_.port);

  // --- addresses ------------------------------------------------------------------------
  if (plan_.port == 0) return {Code::BAD_ADDRESS, "port 0 is not a usable UDP port (give 1..65535)"};
  if (plan_.multicast) {
    group_ = {};
    group_.sin_family = AF_INET;
    group_.sin_port = htons(plan_.port);
    if (inet_pton(AF_INET, plan_.group.c_str(), &group_.sin_addr) != 1) {
      return {Code::BAD_ADDRESS, "group '" + plan_.group + "' is not an IPv4 address (expected a dotted quad in 224.0.0.0/4)"};
    }
    if (!IN_MULTICAST(ntohl(group_.sin_addr.s_addr))) {
      return {Code::BAD_ADDRESS,
              "group " + plan_.group + " is not an IPv4 multicast address (224.0.0.0 to 239.255.255.255)"};
    }
  }
  ifindex_ = if_nametoindex(ifname.c_str());
  if (ifindex_ == 0) {
    const int err = errno;
    return {Code::NO_SUCH_INTERFACE, "no network interface named '" + ifname + "' on this host (" + errno_text(err) +
                                         "); see `ip link` for the names"};
  }
  if (interface_ipv4(ifname, if_addr_)) {
    plan_.interface_address = ip_text(if_addr_);
  } else if (ifname == "lo") {
    inet_pton(AF_INET, "127.0.0.1", &if_addr_);
    plan_.interface_address = "127.0.0.1";
  }
  if (Status s = set_peers(spec); !s) return s;

  // --- socket ---------------------------------------------------------------------------
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const int err = errno;
    return {code_for_errno(err), "socket(AF_INET, SOCK_DGRAM) failed: " + errno_text(err)};
  }
  set_buffer(fd_, SO_RCVBUFFORCE, SO_RCVBUF, spec.socket_buffer_bytes);
  set_buffer(fd_, SO_SNDBUFFORCE, SO_SNDBUF, spec.socket_buffer_bytes);
  set_busy_poll(fd_, spec.busy_poll_us);
  const int one = 1;
  if (plan_.multicast) {
    // Several members (processes) on one host share the group port: each socket gets its
    // own copy of every multicast datagram.
    if (setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      const int err = errno;
      return {code_for_errno(err), "setsockopt(SO_REUSEADDR/SO_REUSEPORT) for " + where + ": " + errno_text(err)};
    }
    // Only the group we joined on this socket, not every group any socket joined.
    const int zero = 0;
    (void)setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
    ip_mreqn m{};
    m.imr_ifindex = static_cast<int>(ifindex_);
    if (setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) != 0) {
      const int err = errno;
      return {code_for_errno(err), "IP_MULTICAST_IF " + ifname + " for " + where + ": " + errno_text(err)};
    }
    if (receive_) {
      if (Status s = open_unicast(where); !s) return s;
      set_buffer(ufd_, SO_RCVBUFFORCE, SO_RCVBUF, spec.socket_buffer_bytes);
      set_buffer(ufd_, SO_SNDBUFFORCE, SO_SNDBUF, spec.socket_buffer_bytes);
      set_busy_poll(ufd_, spec.busy_poll_us);
      if (setsockopt(ufd_, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) != 0) {
        const int err = errno;
        return {code_for_errno(err), "IP_MULTICAST_IF " + ifname + " for " + where + " (unicast socket): " +
                                         errno_text(err)};
      }
    }
  }
  if (Status s = apply(spec); !s) return s;

  // --- bind and join --------------------------------------------------------------------
  if (receive_ || !plan_.multicast) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(plan_.port);
    if (plan_.multicast) {
      // Bound to the group address, the socket sees only this group's datagrams.
      local.sin_addr = group_.sin_addr;
    } else {
      local.sin_addr.s_addr = htonl(INADDR_ANY);
      for (const auto& m : spec.members) {
        const auto at = m.find('@');
        if (at == std::string::npos || m.substr(0, at) != spec.self_name) continue;
        sockaddr_in self{};
        if (!to_sockaddr(m.substr(at + 1), self)) {
          return {Code::BAD_ADDRESS, "member '" + m + "': the address after '@' must be ip:port"};
        }
        local = self;
      }
    }
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
      const int err = errno;
      std::string msg = "bind " + ip_text(local.sin_addr) + ":" + std::to_string(ntohs(local.sin_port)) + " for " +
                        where + ": " + errno_text(err);
      if (err == EADDRINUSE) msg += "; another socket holds this port without sharing it (SO_REUSEPORT)";
      if (err == EACCES) msg += "; ports below 1024 need privileges";
      return {code_for_errno(err), msg};
    }
    bound_ = local;
    for (auto it = peers_.begin(); it != peers_.end();) {
      // Fan-out skips ourselves: the member list names every member, this one included.
      const bool same_port = it->addr.sin_port == local.sin_port;
      const bool same_ip = it->addr.sin_addr.s_addr == local.sin_addr.s_addr ||
                           (local.sin_addr.s_addr == htonl(INADDR_ANY) &&
                            ((ntohl(it->addr.sin_addr.s_addr) >> 24) == 127 ||
                             it->addr.sin_addr.s_addr == if_addr_.s_addr));
      it = (same_port && same_ip) ? peers_.erase(it) : it + 1;
    }
    if (!plan_.multicast) connect_only_peer();
  }
  if (plan_.multicast && receive_) {
    ip_mreqn m{};
    m.imr_multiaddr = group_.sin_addr;
    m.imr_ifindex = static_cast<int>(ifindex_);
    if (setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) != 0) {
      const int err = errno;
      return {code_for_errno(err), "joining " + where + " on interface " + ifname + " (IP_ADD_MEMBERSHIP): " +
                                       errno_text(err) +
                                       (err == ENODEV ? "; the interface has no multicast route or is down" : "")};
    }
    joined_ = true;
  }

  // --- batches --------------------------------------------------------------------------
  const std::size_t fan = plan_.multicast ? 1 : std::max<std::size_t>(1, peers_.size());
  tx_capacity_ = std::max<std::size_t>(4096, std::size_t{batch_} * 4);
  tx_.reserve(tx_capacity_);
  tx_msgs_.resize(batch_ * fan);
  tx_iov_.resize(std::size_t{batch_} * fan * kGsoMaxSegments);
  tx_addr_.resize(batch_ * fan);
  tx_span_.resize(batch_ * fan);
  tx_cmsg_.resize(kCmsgSpace * batch_ * fan);
  rx_.msgs.resize(batch_);
  rx_.iov.resize(batch_);
  rx_.addr.resize(batch_);
  rx_.stash.assign(batch_, nullptr);
  if (ufd_ >= 0) {
    urx_.msgs.resize(batch_);
    urx_.iov.resize(batch_);
    urx_.addr.resize(batch_);
    urx_.stash.assign(batch_, nullptr);
  }
  scratch_.resize(wire::kMaxDatagramBytes + 1);
  if (receive_ && plan_.gro) setup_gro();
  return Status::ok();
}

// A unicast socket bound to its member's address with one peer: connect it to that peer
// (see connected_). Anything else, or a connect the kernel refuses, leaves it unconnected,
// sending every datagram with its address (cold, at open).
void UdpTransport::connect_only_peer() noexcept {
  if (peers_.size() != 1 || bound_.sin_addr.s_addr == htonl(INADDR_ANY)) return;
  const sockaddr_in& to = peers_[0].addr;
  const std::uint32_t ip = ntohl(to.sin_addr.s_addr);
  if (ip == INADDR_ANY || ip == INADDR_BROADCAST || IN_MULTICAST(ip) || to.sin_port == 0) return;
  connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0;
}

// UDP GRO on the group socket, if the kernel takes it (Linux 5.0 and later); otherwise the
// plan says no GRO and receive() reads one datagram per buffer (cold, at open).
void UdpTransport::setup_gro() {
  const int one = 1;
  if (::setsockopt(fd_, SOL_UDP, UDP_GRO, &one, sizeof one) != 0) {
    plan_.gro = false;
    return;
  }
  GroBuffers& g = gro_;
  g.bytes.assign(GroBuffers::kSlots * GroBuffers::kSlotBytes, 0);
  g.msgs.resize(GroBuffers::kSlots);
  g.iov.resize(GroBuffers::kSlots);
  g.addr.resize(GroBuffers::kSlots);
  g.control.assign(GroBuffers::kSlots * kGroCmsgSpace, 0);
  g.segment.assign(GroBuffers::kSlots, 0);
  g.got = GroBuffers::kSlots;  // every header is set before the first read
  g.next = g.got;
  gro_on_ = true;
}

// The member's own unicast socket, on an ephemeral port of every address (cold, at open).
Status UdpTransport::open_unicast(const std::string& where) {
  ufd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ufd_ < 0) {
    const int err = errno;
    return {code_for_errno(err), "socket(AF_INET, SOCK_DGRAM) for the unicast socket of " + where + " failed: " +
                                     errno_text(err)};
  }
  // Shared (SO_REUSEPORT), so that its ephemeral port never keeps another channel of this
  // user from binding a group on the same port number: unicast to this socket is addressed
  // to a host address, which a group socket is not bound to.
  const int one = 1;
  (void)::setsockopt(ufd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  any.sin_port = 0;
  if (::bind(ufd_, reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0) {
    const int err = errno;
    return {code_for_errno(err), "bind 0.0.0.0:0 (the unicast socket of " + where + "): " + errno_text(err)};
  }
  return Status::ok();
}

Status UdpTransport::set_peers(const TransportSpec& spec) {
  peers_.clear();
  if (plan_.multicast) return Status::ok();
  std::vector<std::string> entries = spec.plan.peers;
  if (entries.empty()) {
    for (const auto& m : spec.members) {
      const auto at = m.find('@');
      if (at != std::string::npos) entries.push_back(m.substr(at + 1));
    }
  }
  if (entries.empty()) {
    return {Code::BAD_ADDRESS,
            "unicast fan-out (multicast: false) needs members written as name@ip:port; none has an address"};
  }
  for (const auto& e : entries) {
    Peer p;
    if (!to_sockaddr(e, p.addr)) {
      return {Code::BAD_ADDRESS, "peer '" + e + "' is not ip:port (e.g. 127.0.0.1:4747)"};
    }
    peers_.push_back(p);
  }
  return Status::ok();
}

bool UdpTransport::same_socket(const TransportSpec& spec) const {
  const TransportPlan& p = spec.plan;
  return p.multicast == plan_.multicast && p.group == plan_.group && p.port == plan_.port &&
         p.interface == plan_.interface && spec.receive == receive_ && p.batch == plan_.batch &&
         (p.multicast || p.peers == plan_.peers);
}

Status UdpTransport::apply(const TransportSpec& spec) {
  const int ttl = std::clamp(spec.plan.ttl, 0, 255);
  const int loop = spec.plan.loopback ? 1 : 0;
  if (plan_.multicast) {
    const int tx = tx_fd();
    if (setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) != 0 ||
        setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop) != 0 ||
        setsockopt(tx, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) != 0 ||
        setsockopt(tx, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop) != 0) {
      const int err = errno;
      return {code_for_errno(err), "setting multicast TTL/loopback on " + describe() + ": " + errno_text(err)};
    }
  } else if (setsockopt(fd_, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) != 0) {
    const int err = errno;
    return {code_for_errno(err), "setting TTL on " + describe() + ": " + errno_text(err)};
  }
  plan_.ttl = ttl;
  plan_.loopback = spec.plan.loopback;
  // GSO as planned, if this socket takes it; a refused GSO send turns it off (flush()).
  plan_.gso = spec.plan.gso && !gso_refused_ && socket_has_gso(tx_fd());
  return Status::ok();
}

std::string UdpTransport::describe() const {
  const std::string ifname = plan_.interface.empty() ? std::string("lo") : plan_.interface;
  if (plan_.multicast) return "udp multicast " + plan_.group + ":" + std::to_string(plan_.port) + " on " + ifname;
  return "udp unicast fan-out from port " + std::to_string(plan_.port) + " to " + std::to_string(peers_.size()) +
         " peers";
}

// --- transmit ---------------------------------------------------------------------------------

bool UdpTransport::enqueue(Packet* p) noexcept {
  if (tx_.size() - tx_head_ >= tx_capacity_) {
    ++c_.tx_overflow;
    p->release();
    return false;
  }
  if (tx_.size() == tx_.capacity()) {
    // Compact: move the unsent tail to the front (capacity was reserved; no allocation).
    tx_.erase(tx_.begin(), tx_.begin() + static_cast<std::ptrdiff_t>(tx_head_));
    tx_head_ = 0;
  }
  tx_.push_back(p);
  return true;
}

void UdpTransport::release_sent(std::size_t packets_done) noexcept {
  for (std::size_t i = 0; i < packets_done; ++i) tx_[tx_head_ + i]->release();
  tx_head_ += packets_done;
  if (tx_head_ == tx_.size()) {
    tx_.clear();
    tx_head_ = 0;
  }
}

void UdpTransport::drop_front_datagram() noexcept {
  // A datagram the kernel refused for good (not EAGAIN): count it and move past it so one
  // bad destination cannot wedge the queue.
  ++c_.send_errors;
  const bool fan = !plan_.multicast && tx_[tx_head_]->dst_ip == 0 && peers_.size() > 1;
  if (fan && tx_peer_ + 1 < peers_.size()) {
    ++tx_peer_;
    return;
  }
  tx_peer_ = 0;
  release_sent(1);
}

bool UdpTransport::flush() noexcept {
  while (tx_head_ < tx_.size()) {
    // Build up to batch_ entries from the queue front. Each entry is one destination and
    // one datagram, or (GSO) several equal-sized datagrams to one destination.
    std::size_t n = 0;
    std::size_t iov_used = 0;
    std::size_t i = tx_head_;
    std::size_t peer = tx_peer_;
    const std::size_t max_entries = tx_msgs_.size();
    while (i < tx_.size() && n < max_entries) {
      Packet* p = tx_[i];
      sockaddr_in& to = tx_addr_[n];
      std::uint32_t span = 1;
      bool fanned = false;
      if (p->dst_ip != 0) {
        to = {};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(p->dst_ip);
        to.sin_port = htons(p->dst_port);
      } else if (plan_.multicast) {
        to = group_;
      } else if (!peers_.empty()) {
        to = peers_[peer].addr;
        fanned = true;
      } else {
        // Unicast fan-out with nobody else to send to: the message is done.
        if (n == 0) {
          release_sent(1);
          i = tx_head_;
          continue;
        }
        break;
      }
      iovec* iov = &tx_iov_[iov_used];
      iov[0].iov_base = p->data();
      iov[0].iov_len = p->len;
      mmsghdr& m = tx_msgs_[n];
      m = {};
      // To the peer a connected socket is connected to: no address, so the kernel uses
      // the route it keeps for the connection.
      const bool to_peer = connected_ && to.sin_addr.s_addr == peers_[0].addr.sin_addr.s_addr &&
                           to.sin_port == peers_[0].addr.sin_port;
      m.msg_hdr.msg_name = to_peer ? nullptr : &to;
      m.msg_hdr.msg_namelen = to_peer ? 0 : sizeof to;
      m.msg_hdr.msg_iov = iov;
      if (plan_.gso && !fanned) {
        // Coalesce following packets of the same size to the same destination into one
        // GSO send; the kernel (or NIC) cuts it back into datagrams of p->len bytes.
        std::uint32_t total = p->len;
        while (i + span < tx_.size() && span < kGsoMaxSegments && iov_used + span < tx_iov_.size()) {
          const Packet* q = tx_[i + span];
          if (q->dst_ip != p->dst_ip || q->dst_port != p->dst_port || q->len > p->len ||
              total + q->len > kGsoMaxBytes) {
            break;
          }
          iov[span].iov_base = const_cast<std::uint8_t*>(q->data());
          iov[span].iov_len = q->len;
          total += q->len;
          ++span;
          if (q->len < p->len) break;  // a short segment must be the last one
        }
        if (span > 1) {
          std::uint8_t* cbuf = &tx_cmsg_[kCmsgSpace * n];
          std::memset(cbuf, 0, kCmsgSpace);
          m.msg_hdr.msg_control = cbuf;
          m.msg_hdr.msg_controllen = kCmsgSpace;
          cmsghdr* cm = CMSG_FIRSTHDR(&m.msg_hdr);
          cm->cmsg_level = SOL_UDP;
          cm->cmsg_type = UDP_SEGMENT;
          cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
          const auto seg = static_cast<std::uint16_t>(p->len);
          std::memcpy(CMSG_DATA(cm), &seg, sizeof seg);
        }
      }
      m.msg_hdr.msg_iovlen = span;
      tx_span_[n] = span;
      iov_used += span;
      ++n;
      if (fanned && peer + 1 < peers_.size()) {
        ++peer;  // the same packet again, to the next peer
      } else {
        peer = 0;
        i += span;
      }
    }
    if (n == 0) continue;
    // MSG_DONTWAIT: the file may be blocking (enable_blocking_wait); sends never are.
    const int sent = ::sendmmsg(tx_fd(), tx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
    if (sent < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) return false;
      if (err == EINTR) continue;
      if (err == ECONNREFUSED && connected_) {
        // An ICMP "port unreachable" for an earlier datagram (the peer is not running):
        // reporting it cleared it, and these datagrams were not sent yet.
        ++c_.refused;
        continue;
      }
      if (tx_span_[0] > 1 && gso_refusal(err)) {
        // The kernel will not segment here (a path MTU below the segment size, a device
        // without the offload on an old kernel): send one datagram per entry from now on
        // rather than lose these.
        plan_.gso = false;
        gso_refused_ = true;
        ++c_.gso_refused;
        continue;
      }
      c_.last_errno = err;
      drop_front_datagram();
      continue;
    }
    // Retire what went out: whole packets, or fan-out progress on the front packet.
    for (int k = 0; k < sent; ++k) {
      Packet* p = tx_[tx_head_];
      const std::uint32_t span = tx_span_[static_cast<std::size_t>(k)];
      c_.datagrams_sent += span;
      if (span > 1) ++c_.gso_sends;
      for (std::uint32_t s = 0; s < span; ++s) c_.datagram_bytes_sent += tx_[tx_head_ + s]->len;
      const bool fan = !plan_.multicast && p->dst_ip == 0 && !peers_.empty();
      if (fan && tx_peer_ + 1 < peers_.size()) {
        ++tx_peer_;
      } else {
        tx_peer_ = 0;
        release_sent(span);
      }
    }
  }
  return true;
}

void UdpTransport::flush_blocking(int timeout_ms) noexcept {
  int waited_ms = 0;
  while (!flush() && waited_ms < timeout_ms) {
    pollfd pfd{tx_fd(), POLLOUT, 0};
    (void)::poll(&pfd, 1, 10);
    waited_ms += 10;
  }
  // Whatever the kernel would not take in time is dropped (counted as send errors).
  while (tx_pending() > 0) {
    c_.send_errors += 1;
    tx_peer_ = 0;
    release_sent(1);
  }
}

// --- receive ----------------------------------------------------------------------------------

void RxBuffers::release_all() noexcept {
  for (Packet*& p : stash) {
    if (p != nullptr) p->release();
    p = nullptr;
  }
  stale = SIZE_MAX;
}

int UdpTransport::arm(RxBuffers& b, PacketPool& pool, int max) noexcept {
  const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(std::max(max, 0)), batch_);
  if (want == 0) return 0;
  if (b.stash.size() < want) {
    // First use of an inline receiver's set (or a larger batch after update()): cold.
    try {
      b.stash.resize(want, nullptr);
      b.msgs.resize(want);
      b.iov.resize(want);
      b.addr.resize(want);
    } catch (...) {
      return 0;
    }
    b.stale = SIZE_MAX;
  }
  if (b.pool != &pool) {
    // The channel switched pools (update() with a larger MTU): give back the old buffers.
    b.release_all();
    b.pool = &pool;
  }
  // Only the slots the last read used (see RxBuffers::stale); the rest are ready.
  const std::size_t redo = std::min(b.stale, b.stash.size());
  for (std::size_t n = 0; n < redo; ++n) {
    if (b.stash[n] == nullptr) b.stash[n] = pool.alloc();
    if (b.stash[n] == nullptr) {
      // The pool ran dry: slots [0, n) are ready now, the others stay stale.
      return static_cast<int>(std::min(n, want));
    }
    Packet* p = b.stash[n];
    b.iov[n].iov_base = p->buf;
    b.iov[n].iov_len = p->cap;
    mmsghdr& m = b.msgs[n];
    m = {};
    m.msg_hdr.msg_name = &b.addr[n];
    m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
    m.msg_hdr.msg_iov = &b.iov[n];
    m.msg_hdr.msg_iovlen = 1;
  }
  b.stale = 0;
  return static_cast<int>(want);
}

int UdpTransport::take(RxBuffers& b, int got, Packet** out) noexcept {
  int delivered = 0;
  b.stale = std::max(b.stale, static_cast<std::size_t>(std::max(got, 0)));
  for (int k = 0; k < got; ++k) {
    const auto kk = static_cast<std::size_t>(k);
    Packet* p = b.stash[kk];
    const mmsghdr& m = b.msgs[kk];
    ++c_.datagrams_received;
    c_.datagram_bytes_received += m.msg_len;
    if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      // Larger than our buffers (a sender with a larger MTU): not a whole datagram.
      ++c_.truncated;
      ++c_.receive_errors;
      continue;  // the buffer stays in the stash
    }
    b.stash[kk] = nullptr;
    p->reset_for_receive();
    p->len = m.msg_len;
    p->src_ip = ntohl(b.addr[kk].sin_addr.s_addr);
    p->src_port = ntohs(b.addr[kk].sin_port);
    out[delivered++] = p;
  }
  return delivered == 0 ? -1 : delivered;
}

bool UdpTransport::enable_blocking_wait(int timeout_us) noexcept {
  blocking_wait_ = false;
  // GRO: the hot wait reads into pool buffers, which a coalesced buffer does not fit.
  if (fd_ < 0 || !receive_ || timeout_us <= 0 || gro_on_) return false;
  timeval tv{};
  tv.tv_sec = timeout_us / 1'000'000;
  tv.tv_usec = timeout_us % 1'000'000;
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return false;
  const int flags = fcntl(fd_, F_GETFL);
  if (flags < 0) return false;
  if ((flags & O_NONBLOCK) != 0 && fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK) != 0) return false;
  blocking_wait_ = true;
  return true;
}

int UdpTransport::wait_read(int fd, RxBuffers& b, int n) noexcept {
  return ::recvmmsg(fd, b.msgs.data(), static_cast<unsigned>(n), MSG_WAITFORONE, nullptr);
}

int UdpTransport::receive(PacketPool& pool, Packet** out, int max) noexcept {
  if (gro_on_) return receive_gro(pool, out, max, true);
  return receive_on(fd_, rx_, pool, out, max);
}

int UdpTransport::take_buffered(PacketPool& pool, Packet** out, int max) noexcept {
  return gro_.pending() ? receive_gro(pool, out, max, false) : 0;
}

// Hands out what the staging buffers hold, one pool packet per datagram, and reads again
// while the caller has room: so a short result means the socket had nothing more.
int UdpTransport::receive_gro(PacketPool& pool, Packet** out, int max, bool may_read) noexcept {
  GroBuffers& g = gro_;
  int delivered = 0;
  bool read_any = false;
  for (int reads = 0; max > 0;) {
    while (g.pending() && delivered < max) {
      if (g.segment[g.next] == 0) {
        ++g.next;
        continue;
      }
      const mmsghdr& m = g.msgs[g.next];
      const std::uint32_t total = m.msg_len;
      const std::uint32_t len = std::min(g.segment[g.next], total - g.off);
      const std::uint8_t* from = static_cast<const std::uint8_t*>(g.iov[g.next].iov_base) + g.off;
      ++c_.datagrams_received;
      c_.datagram_bytes_received += len;
      Packet* p = pool.alloc();
      if (p == nullptr) {
        ++c_.rx_pool_exhausted;
      } else if (len > p->cap) {
        // Larger than our buffers (a sender with a larger MTU): not a whole datagram.
        ++c_.truncated;
        ++c_.receive_errors;
        p->release();
      } else {
        std::memcpy(p->buf, from, len);
        p->reset_for_receive();
        p->len = len;
        p->src_ip = ntohl(g.addr[g.next].sin_addr.s_addr);
        p->src_port = ntohs(g.addr[g.next].sin_port);
        out[delivered++] = p;
      }
      g.off += len;
      if (g.off >= total) {
        ++g.next;
        g.off = 0;
      }
    }
    if (delivered == max || !may_read || reads == kGroReadsPerCall) break;
    // Everything staged is handed out: set the headers the last read used, read again.
    for (std::size_t k = 0; k < g.got; ++k) {
      g.iov[k].iov_base = &g.bytes[k * GroBuffers::kSlotBytes];
      g.iov[k].iov_len = GroBuffers::kSlotBytes;
      mmsghdr& h = g.msgs[k];
      h = {};
      h.msg_hdr.msg_name = &g.addr[k];
      h.msg_hdr.msg_namelen = sizeof(sockaddr_in);
      h.msg_hdr.msg_iov = &g.iov[k];
      h.msg_hdr.msg_iovlen = 1;
      h.msg_hdr.msg_control = &g.control[k * kGroCmsgSpace];
      h.msg_hdr.msg_controllen = kGroCmsgSpace;
    }
    g.got = g.next = 0;
    g.off = 0;
    ++reads;
    const int got = ::recvmmsg(fd_, g.msgs.data(), GroBuffers::kSlots, MSG_DONTWAIT, nullptr);
    if (got < 0 && errno == ECONNREFUSED && connected_) {
      ++c_.refused;  // an ICMP error for an earlier send, cleared by reporting it
      continue;
    }
    if (got <= 0) {
      if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ++c_.receive_errors;
        c_.last_errno = errno;
      }
      break;
    }
    read_any = true;
    g.got = static_cast<std::size_t>(got);
    for (std::size_t k = 0; k < g.got; ++k) {
      msghdr& h = g.msgs[k].msg_hdr;
      // A datagram on its own has no UDP_GRO message: its size is its length (an empty
      // one still counts as one datagram).
      std::uint32_t segment = std::max<std::uint32_t>(g.msgs[k].msg_len, 1);
      for (cmsghdr* cm = CMSG_FIRSTHDR(&h); cm != nullptr; cm = CMSG_NXTHDR(&h, cm)) {
        if (cm->cmsg_level != SOL_UDP || cm->cmsg_type != UDP_GRO) continue;
        int size = 0;
        std::memcpy(&size, CMSG_DATA(cm), sizeof size);
        if (size > 0) segment = static_cast<std::uint32_t>(size);
      }
      if ((h.msg_flags & MSG_TRUNC) != 0) {
        // Beyond 64 KiB (not a UDP datagram): dropped, not cut at a wrong boundary.
        ++c_.datagrams_received;
        ++c_.truncated;
        ++c_.receive_errors;
        segment = 0;  // skipped by the hand-out above
      } else if (segment < g.msgs[k].msg_len) {
        ++c_.gro_reads;
      }
      g.segment[k] = segment;
    }
  }
  if (delivered > 0) return delivered;
  return read_any ? -1 : 0;
}

int UdpTransport::receive_unicast(PacketPool& pool, Packet** out, int max) noexcept {
  if (ufd_ < 0) return 0;
  return receive_on(ufd_, urx_, pool, out, max);
}

int UdpTransport::receive_on(int fd, RxBuffers& b, PacketPool& pool, Packet** out, int max) noexcept {
  const int n = arm(b, pool, max);
  if (n == 0) {
    if (max <= 0) return 0;
    // No buffer: still read (and discard) one datagram, or the readable socket would
    // keep the loop spinning.
    const ssize_t r = ::recv(fd, scratch_.data(), scratch_.size(), MSG_DONTWAIT);
    if (r >= 0) {
      ++c_.datagrams_received;
      ++c_.rx_pool_exhausted;
      return -1;
    }
    return 0;
  }
  int got = ::recvmmsg(fd, b.msgs.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
  if (got < 0 && errno == ECONNREFUSED && connected_ && fd == fd_) {
    // An ICMP error for an earlier send (the peer was not running), cleared by reporting
    // it: not a failed read. What is queued behind it is read now.
    ++c_.refused;
    got = ::recvmmsg(fd, b.msgs.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
  }
  if (got <= 0) {
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      ++c_.receive_errors;
      c_.last_errno = errno;
    }
    return 0;
  }
  return take(b, got, out);
}

}  // namespace tmc::detail
