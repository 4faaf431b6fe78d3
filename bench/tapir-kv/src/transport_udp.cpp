// UdpHost: the protocol endpoints over plain POSIX UDP sockets, no libTMC — the program a
// retrofit run starts unmodified under `tmc run` (docs/retrofit.md), whose manifest then
// rewires these sockets onto libTMC channels.
//
// One socket per endpoint, bound to its own address and port (Topology::udp_port); a
// message is one datagram: the sender's index (u32, little endian) and the protocol bytes.
// "Send to all replicas" is n unicast datagrams. Nothing is repaired here: a lost datagram
// costs an IR timer, as with variant udp. Everything runs in the calling thread: poll()
// over the sockets (and a signalfd while serving), woken at the endpoints' next deadline.
// In-process runs (--loss) drop that fraction of the datagrams each socket receives.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

#include "host.hpp"

namespace tapir {
namespace {

class UdpHost;

constexpr std::size_t kHeader = 4;  // the sender's index

struct Sock {
  int fd = -1;
  Endpoint* ep = nullptr;
  bool replica = false;
  std::uint32_t index = 0;
};

struct ClientPort final : ClientNet {
  UdpHost* host = nullptr;
  Sock* sock = nullptr;
  void send_to_replicas(Bytes msg, MsgType type) override;
  void send_to_replica(std::uint32_t r, Bytes msg, MsgType type) override;
};

struct ReplicaPort final : ReplicaNet {
  UdpHost* host = nullptr;
  Sock* sock = nullptr;
  void send_to_client(std::uint32_t c, Bytes msg, MsgType type) override;
};

sockaddr_in address(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) throw std::runtime_error("udp-socket: bad address " + ip);
  return a;
}

class UdpHost final : public Host {
 public:
  explicit UdpHost(const HostOptions& o) : o_(o), rng_(o.seed) {
    for (std::uint32_t r = 0; r < o_.topo.n(); ++r)
      replica_addr_.push_back(address(o_.topo.replica_ips[r], o_.topo.udp_port(true, r)));
    for (std::uint32_t j = 0; j < o_.topo.clients(); ++j)
      client_addr_.push_back(address(o_.topo.client_ips[j], o_.topo.udp_port(false, j)));
  }
  ~UdpHost() override {
    for (auto& s : socks_)
      if (s->fd >= 0) ::close(s->fd);
    if (sig_fd_ >= 0) ::close(sig_fd_);
  }
  UdpHost(const UdpHost&) = delete;
  UdpHost& operator=(const UdpHost&) = delete;

  Replica& add_replica(std::uint32_t i, StoreOptions opts) override {
    auto port = std::make_unique<ReplicaPort>();
    port->host = this;
    auto rep = std::make_unique<Replica>(i, *port, opts);
    port->sock = open_socket(rep.get(), true, i, replica_addr_.at(i));
    replica_ports_.push_back(std::move(port));
    replicas_.push_back(std::move(rep));
    endpoints_.push_back(replicas_.back().get());
    return *replicas_.back();
  }

  Client& add_client(Client::Config cfg) override {
    auto port = std::make_unique<ClientPort>();
    port->host = this;
    const std::uint32_t j = cfg.index;
    auto cl = std::make_unique<Client>(std::move(cfg), *port);
    port->sock = open_socket(cl.get(), false, j, client_addr_.at(j));
    client_ports_.push_back(std::move(port));
    clients_.push_back(std::move(cl));
    endpoints_.push_back(clients_.back().get());
    return *clients_.back();
  }

  bool connect(Nanos) override { return true; }  // datagrams: nothing to set up

  void run_clients(double seconds) override {
    for (auto& c : clients_) c->start(mono_now());
    const Nanos end = mono_now() + static_cast<Nanos>(seconds * 1e9);
    while (mono_now() < end) step(end);
    for (auto& c : clients_) c->stop();
    const Nanos give_up = mono_now() + 3000 * kMillisecond;
    while (!all_idle() && mono_now() < give_up) step(give_up);
    // The replicas of this process take the last Finalizes and Confirms in flight.
    quiet_until_ = mono_now() + 100 * kMillisecond;
    const Nanos drain_end = mono_now() + 1000 * kMillisecond;
    while (mono_now() < std::min(quiet_until_, drain_end)) step(std::min(quiet_until_, drain_end));
  }

  void serve_until_signal() override {
    // main() blocked SIGINT and SIGTERM before any thread started: read them here.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sig_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sig_fd_ < 0) throw std::runtime_error(std::string("udp-socket: signalfd: ") + std::strerror(errno));
    while (!signalled_) step(kNever);
  }

  [[nodiscard]] std::string plans() const override {
    return "udp-socket: plain UDP sockets, one per endpoint, unicast (no libTMC plan; under `tmc run` the "
           "retrofit manifest decides)\n";
  }
  [[nodiscard]] TransportStats stats() const override { return stats_; }
  std::vector<Client*> clients() override { return endpoints(clients_); }
  std::vector<Replica*> replicas() override { return endpoints(replicas_); }

  void send(Sock* from, const sockaddr_in& to, Bytes msg) {
    std::uint8_t hdr[kHeader];
    for (std::size_t i = 0; i < kHeader; ++i) hdr[i] = static_cast<std::uint8_t>(from->index >> (8 * i));
    iovec iov[2] = {{hdr, kHeader}, {const_cast<std::uint8_t*>(msg.data()), msg.size()}};
    msghdr mh{};
    mh.msg_name = const_cast<sockaddr_in*>(&to);
    mh.msg_namelen = sizeof to;
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    for (;;) {
      const ssize_t n = ::sendmsg(from->fd, &mh, 0);
      if (n >= 0) {
        ++stats_.datagrams_sent;
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{from->fd, POLLOUT, 0};
        (void)::poll(&p, 1, 10);
        continue;
      }
      ++stats_.send_errors;  // IR's resends cover it
      return;
    }
  }
  [[nodiscard]] const sockaddr_in& replica_addr(std::uint32_t r) const { return replica_addr_.at(r); }
  [[nodiscard]] const sockaddr_in& client_addr(std::uint32_t j) const { return client_addr_.at(j); }
  [[nodiscard]] std::uint32_t n() const { return o_.topo.n(); }

 private:
  Sock* open_socket(Endpoint* ep, bool replica, std::uint32_t index, const sockaddr_in& at) {
    auto s = std::make_unique<Sock>();
    s->ep = ep;
    s->replica = replica;
    s->index = index;
    s->fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) throw std::runtime_error(std::string("udp-socket: socket: ") + std::strerror(errno));
    const int buf = 4 << 20;
    (void)::setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    (void)::setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (::bind(s->fd, reinterpret_cast<const sockaddr*>(&at), sizeof at) != 0) {
      char ip[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &at.sin_addr, ip, sizeof ip);
      throw std::runtime_error(std::string("udp-socket: bind ") + ip + ":" + std::to_string(ntohs(at.sin_port)) +
                               ": " + std::strerror(errno));
    }
    socks_.push_back(std::move(s));
    return socks_.back().get();
  }

  bool all_idle() const {
    for (const auto& c : clients_)
      if (!c->idle()) return false;
    return true;
  }

  // One round: wait for a datagram (or the next deadline, or `until`), take every datagram
  // waiting, fire due timers.
  void step(Nanos until) {
    Nanos d = until;
    for (Endpoint* e : endpoints_) d = std::min(d, e->next_deadline());
    const Nanos now = mono_now();
    int timeout_ms = -1;
    if (d != kNever) timeout_ms = d <= now ? 0 : static_cast<int>((d - now + kMillisecond - 1) / kMillisecond);
    fds_.clear();
    for (const auto& s : socks_) fds_.push_back(pollfd{s->fd, POLLIN, 0});
    if (sig_fd_ >= 0) fds_.push_back(pollfd{sig_fd_, POLLIN, 0});
    const int rc = ::poll(fds_.data(), fds_.size(), timeout_ms);
    if (rc > 0) {
      for (std::size_t i = 0; i < socks_.size(); ++i)
        if ((fds_[i].revents & POLLIN) != 0) drain(*socks_[i]);
      if (sig_fd_ >= 0 && (fds_.back().revents & POLLIN) != 0) signalled_ = true;
    }
    const Nanos t = mono_now();
    for (Endpoint* e : endpoints_)
      if (e->next_deadline() <= t) e->on_timer(t);
  }

  void drain(Sock& s) {
    for (int burst = 0; burst < 256; ++burst) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(s.fd, buf_, sizeof buf_, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) return;  // EAGAIN (or an error the next poll shows again)
      if (static_cast<std::size_t>(n) < kHeader) continue;
      ++stats_.datagrams_received;
      quiet_until_ = mono_now() + 100 * kMillisecond;
      if (o_.inject_loss > 0 && loss_(rng_) < o_.inject_loss) {
        ++stats_.injected_drops;
        continue;
      }
      std::uint32_t peer = 0;
      for (std::size_t i = 0; i < kHeader; ++i) peer |= static_cast<std::uint32_t>(buf_[i]) << (8 * i);
      if (peer >= (s.replica ? o_.topo.clients() : o_.topo.n())) continue;
      s.ep->on_message(peer, Bytes(buf_ + kHeader, static_cast<std::size_t>(n) - kHeader), mono_now());
    }
  }

  HostOptions o_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> loss_{0.0, 1.0};
  std::vector<sockaddr_in> replica_addr_;
  std::vector<sockaddr_in> client_addr_;
  std::vector<std::unique_ptr<Sock>> socks_;
  std::vector<pollfd> fds_;
  int sig_fd_ = -1;
  bool signalled_ = false;
  Nanos quiet_until_ = 0;
  std::uint8_t buf_[65536];
  std::vector<std::unique_ptr<ReplicaPort>> replica_ports_;
  std::vector<std::unique_ptr<ClientPort>> client_ports_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<Endpoint*> endpoints_;
  TransportStats stats_;
};

void ClientPort::send_to_replicas(Bytes msg, MsgType) {
  for (std::uint32_t r = 0; r < host->n(); ++r) host->send(sock, host->replica_addr(r), msg);
}
void ClientPort::send_to_replica(std::uint32_t r, Bytes msg, MsgType) { host->send(sock, host->replica_addr(r), msg); }
void ReplicaPort::send_to_client(std::uint32_t c, Bytes msg, MsgType) { host->send(sock, host->client_addr(c), msg); }

}  // namespace

std::unique_ptr<Host> make_udp_host(const HostOptions& o) { return std::make_unique<UdpHost>(o); }

}  // namespace tapir
