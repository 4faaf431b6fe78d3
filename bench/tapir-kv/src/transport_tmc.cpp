// TmcHost: the protocol endpoints over libTMC channels.
//
// Channels, all compiled from the variant's manifest (only names, members, addresses and
// ports are filled in here; every guarantee comes from the file):
//   request channel of client j   "tapir-req-j": client j -> every replica. With
//       'multicast: true' one datagram to group prefix.(j+1); with 'multicast: false' the
//       members are name@ip:port and a send is n unicasts.
//   pair channel (j, r)           "tapir-pair-j-r": client j <-> replica r, always unicast
//       ('multicast: false', two members): replies, Confirms, unlogged GETs, sync-lite.
// Per-message manifests: when the variant's manifest asks for
// 'reliability: {messages: flagged}', only the messages on a transaction's critical path
// are sent with {reliability: true} — the requests (Propose*, unlogged GET) and their
// replies, whose loss would stall the client for an IR timer. Finalize* and Confirm run in
// the background, behind the commit point, and stay best effort (IR resends them).
// Acknowledgment by reply: when the manifest also says 'acks: application', the channels
// run request/response. Every request (Propose*, Finalize*, unlogged GET) is sent with
// {reliability: true} and no reply is; the reply from replica r to a request tells the
// client that r has it, and the client says so to the channel the request went on
// (Channel::acknowledge): replicas send no ack datagrams. A request without its reply is
// retransmitted after the channel's timeout; a replica that had it gets it again (the
// channel delivers it again in this mode) and answers again (IR is idempotent per opid),
// which repairs a lost reply the same way.
// Channel handlers run on the runtime's loop thread; one timer thread fires the endpoints'
// IR timers. A mutex keeps the endpoints single-threaded, as the protocol code expects.
#include <array>
#include <condition_variable>
#include <csignal>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <tmc/channel.hpp>
#include <tmc/manifest.hpp>

#include "host.hpp"

namespace tapir {
namespace {

class TmcHost;

// Which request a reply answers: its opid and the request's kind (0: not a reply/request).
int request_class(MsgType t) {
  switch (t) {
    case MsgType::propose_inconsistent:
    case MsgType::reply_inconsistent:
      return 1;
    case MsgType::propose_consensus:
    case MsgType::reply_consensus:
      return 2;
    case MsgType::finalize_inconsistent:
    case MsgType::finalize_consensus:
    case MsgType::confirm:
      return 3;
    case MsgType::unlogged:
    case MsgType::unlogged_reply:
      return 4;
  }
  return 0;
}
bool is_request(MsgType t) {
  switch (t) {
    case MsgType::propose_inconsistent:
    case MsgType::propose_consensus:
    case MsgType::finalize_inconsistent:
    case MsgType::finalize_consensus:
    case MsgType::unlogged:
      return true;
    default:
      return false;
  }
}

struct ClientPort final : ClientNet {
  TmcHost* host = nullptr;
  tmc::Channel* request = nullptr;
  std::vector<tmc::Channel*> pair;  // by replica
  std::vector<std::string> replica_names;
  void send_to_replicas(Bytes msg, MsgType type) override;
  void send_to_replica(std::uint32_t r, Bytes msg, MsgType type) override;

  // Acknowledgment by reply: the requests recently sent (a ring; a closed-loop client has
  // a handful in flight), with the channel and id each went with.
  struct Sent {
    std::uint64_t req = 0;
    int cls = 0;
    tmc::Channel* channel = nullptr;
    std::uint64_t id = 0;
  };
  std::array<Sent, 256> sent{};
  std::size_t next = 0;
  std::uint64_t acked = 0;
  void record(tmc::Channel* c, Bytes msg, std::uint64_t id) {
    MsgType t{};
    OpId opid;
    if (!peek_opid(msg, t, opid)) return;
    sent[next] = Sent{opid.req, request_class(t), c, id};
    next = (next + 1) % sent.size();
  }
  // A reply from replica r: acknowledge, on r's behalf, every send of the request it
  // answers (an IR resend, or sync-lite's on the pair channel, is a message of its own).
  void replied(std::uint32_t r, Bytes msg) {
    MsgType t{};
    OpId opid;
    if (!peek_opid(msg, t, opid) || r >= replica_names.size()) return;
    const int cls = request_class(t);
    for (const Sent& e : sent) {
      if (e.channel != nullptr && e.req == opid.req && e.cls == cls && e.channel->acknowledge(e.id, replica_names[r])) {
        ++acked;
      }
    }
  }
};

struct ReplicaPort final : ReplicaNet {
  TmcHost* host = nullptr;
  std::vector<tmc::Channel*> pair;  // by client
  void send_to_client(std::uint32_t c, Bytes msg, MsgType type) override;
};

class TmcHost final : public Host {
 public:
  explicit TmcHost(const HostOptions& o) : o_(o) {
    tmc::Diagnostics diag;
    if (!tmc::load_manifest(o.manifest_path, base_, diag)) throw std::runtime_error(diag.to_string());
    flagged_ = base_.reliability.enabled && base_.reliability.messages == "flagged";
    by_reply_ = flagged_ && base_.reliability.acks == "application";
    reliable_.reliability = true;
  }
  ~TmcHost() override {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (timer_.joinable()) timer_.join();
    for (auto& c : channels_) c->on_message({});
    for (auto& c : channels_) c->close();
  }

  Replica& add_replica(std::uint32_t i, StoreOptions opts) override {
    auto port = std::make_unique<ReplicaPort>();
    port->host = this;
    auto rep = std::make_unique<Replica>(i, *port, opts);
    Replica* r = rep.get();
    const std::string self = "r" + std::to_string(i);
    for (std::uint32_t j = 0; j < o_.topo.clients(); ++j) {
      // Joins client j's request channel (receives only what the protocol sends there).
      tmc::Channel* req = open(request_manifest(j, self));
      attach(req, r, j);
      tmc::Channel* pair = open(pair_manifest(j, i, self));
      attach(pair, r, j);
      port->pair.push_back(pair);
    }
    replica_ports_.push_back(std::move(port));
    replicas_.push_back(std::move(rep));
    endpoints_.push_back(r);
    return *r;
  }

  Client& add_client(Client::Config cfg) override {
    auto port = std::make_unique<ClientPort>();
    port->host = this;
    const std::uint32_t j = cfg.index;
    const std::string self = "c" + std::to_string(j);
    port->request = open(request_manifest(j, self));
    for (std::uint32_t r = 0; r < o_.topo.n(); ++r) {
      port->pair.push_back(open(pair_manifest(j, r, self)));
      port->replica_names.push_back("r" + std::to_string(r));
    }
    auto cl = std::make_unique<Client>(std::move(cfg), *port);
    Client* c = cl.get();
    for (std::uint32_t r = 0; r < o_.topo.n(); ++r) attach(port->pair[r], c, r, by_reply_ ? port.get() : nullptr);
    attach(port->request, c, 0);  // replicas send nothing on it but the channel's own traffic
    client_ports_.push_back(std::move(port));
    clients_.push_back(std::move(cl));
    endpoints_.push_back(c);
    return *c;
  }

  bool connect(Nanos timeout) override {
    // With the membership stage (reliability), wait until each client's channels see the
    // replicas, so that "acknowledged by all" means every replica from the first message.
    const auto t = std::chrono::nanoseconds(timeout);
    bool ok = true;
    for (auto& p : client_ports_) {
      tmc::Status s = p->request->wait_for_members(o_.topo.n(), t);
      if (!s && s.code() != tmc::Code::NOT_AVAILABLE) ok = false;
      for (auto* c : p->pair) {
        s = c->wait_for_members(1, t);
        if (!s && s.code() != tmc::Code::NOT_AVAILABLE) ok = false;
      }
    }
    timer_ = std::thread([this] { timer_loop(); });
    return ok;
  }

  void run_clients(double seconds) override {
    {
      std::lock_guard l(mu_);
      for (auto& c : clients_) c->start(mono_now());
    }
    cv_.notify_all();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    {
      std::lock_guard l(mu_);
      for (auto& c : clients_) c->stop();
    }
    const Nanos deadline = mono_now() + 3000 * kMillisecond;
    while (mono_now() < deadline) {
      {
        std::lock_guard l(mu_);
        bool idle = true;
        for (auto& c : clients_) idle = idle && c->idle();
        if (idle) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void serve_until_signal() override {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
  }

  [[nodiscard]] std::string plans() const override {
    std::ostringstream o;
    if (first_request_ != nullptr) o << "request channel (client -> replicas):\n" << first_request_->plan().to_string() << "\n";
    if (first_pair_ != nullptr) o << "pair channel (client <-> one replica):\n" << first_pair_->plan().to_string() << "\n";
    return o.str();
  }

  [[nodiscard]] TransportStats stats() const override {
    TransportStats t;
    for (const auto& c : channels_) {
      tmc::ChannelStats s = c->stats();
      t.datagrams_sent += s.datagrams_sent;
      t.datagrams_received += s.datagrams_received;
      t.injected_drops += s.counter("faults.lost");
      t.retransmits += s.counter("reliability.retransmits");
      t.acks_sent += s.counter("reliability.acks_sent");
      t.timeouts += s.counter("reliability.timeouts");
      t.nacks_sent += s.counter("reliability.nacks_sent");
      t.duplicates += s.counter("reliability.duplicates");
      t.heartbeats_sent += s.counter("membership.heartbeats_sent");
      t.send_errors += s.send_errors;
    }
    for (const auto& p : client_ports_) t.replies_acked += p->acked;
    t.send_errors += send_failures_;
    return t;
  }

  std::vector<Client*> clients() override { return endpoints(clients_); }
  std::vector<Replica*> replicas() override { return endpoints(replicas_); }

  void send(tmc::Channel* c, Bytes msg, MsgType type, ClientPort* from = nullptr) {
    bool ok = false;
    if (by_reply_) {
      if (is_request(type)) {
        std::uint64_t id = 0;
        ok = static_cast<bool>(c->send(msg, reliable_, &id));
        if (ok && from != nullptr) from->record(c, msg, id);
      } else {
        ok = static_cast<bool>(c->send(msg));
      }
    } else {
      ok = flagged_ && critical(type) ? static_cast<bool>(c->send(msg, reliable_)) : static_cast<bool>(c->send(msg));
    }
    if (!ok) ++send_failures_;  // counted; IR's resends cover a refused send
  }

  static bool critical(MsgType t) {
    switch (t) {
      case MsgType::propose_inconsistent:
      case MsgType::propose_consensus:
      case MsgType::unlogged:
      case MsgType::reply_inconsistent:
      case MsgType::reply_consensus:
      case MsgType::unlogged_reply:
        return true;
      default:
        return false;
    }
  }

 private:
  std::string addr(const std::string& name, const std::string& ip, int port) const {
    return name + "@" + ip + ":" + std::to_string(port);
  }

  tmc::Manifest request_manifest(std::uint32_t j, const std::string& self) const {
    tmc::Manifest m = base_;
    m.id = "tapir-req-" + std::to_string(j);
    m.name = self;
    m.interface = o_.topo.interface;
    m.members.clear();
    if (m.multicast) {
      m.group = o_.topo.group(j);
      m.port = o_.topo.request_port(j);
      // The kernel loops a multicast datagram back to the sender's own socket when
      // 'loopback' is on; that is needed only when a replica shares this client's host
      // (in-process runs). Otherwise every request would come back to the client as one
      // more datagram to read, parse and discard.
      m.loopback = m.loopback && shares_host(j);
      m.members.push_back("c" + std::to_string(j));
      for (std::uint32_t r = 0; r < o_.topo.n(); ++r) m.members.push_back("r" + std::to_string(r));
    } else {
      m.members.push_back(addr("c" + std::to_string(j), o_.topo.client_ips[j], o_.topo.request_port(j, 0)));
      for (std::uint32_t r = 0; r < o_.topo.n(); ++r)
        m.members.push_back(addr("r" + std::to_string(r), o_.topo.replica_ips[r], o_.topo.request_port(j, r + 1)));
    }
    return with_faults(m);
  }

  // Whether client j and some replica have the same address (one host: in-process runs).
  bool shares_host(std::uint32_t j) const {
    for (const std::string& ip : o_.topo.replica_ips)
      if (j < o_.topo.client_ips.size() && ip == o_.topo.client_ips[j]) return true;
    return false;
  }

  tmc::Manifest pair_manifest(std::uint32_t j, std::uint32_t r, const std::string& self) const {
    tmc::Manifest m = base_;
    m.id = "tapir-pair-" + std::to_string(j) + "-" + std::to_string(r);
    m.name = self;
    m.interface = o_.topo.interface;
    m.multicast = false;
    m.members = {addr("c" + std::to_string(j), o_.topo.client_ips[j], o_.topo.pair_client_port(j, r)),
                 addr("r" + std::to_string(r), o_.topo.replica_ips[r], o_.topo.pair_replica_port(j, r))};
    return with_faults(m);
  }

  tmc::Manifest with_faults(tmc::Manifest m) const {
    if (o_.inject_loss > 0) {
      m.faults.loss = o_.inject_loss;
      m.faults.seed = static_cast<std::int64_t>(o_.seed * 1000 + channels_.size());
    }
    return m;
  }

  tmc::Channel* open(const tmc::Manifest& m) {
    channels_.push_back(std::make_unique<tmc::Channel>(tmc::Channel::open(m)));
    tmc::Channel* c = channels_.back().get();
    const bool pair = m.id.rfind("tapir-pair-", 0) == 0;
    if (pair && first_pair_ == nullptr) first_pair_ = c;
    if (!pair && first_request_ == nullptr) first_request_ = c;
    return c;
  }

  // `replies`: a client's port whose requests its replies acknowledge (by_reply_).
  void attach(tmc::Channel* c, Endpoint* ep, std::uint32_t from, ClientPort* replies = nullptr) {
    c->on_message([this, ep, from, replies](tmc::Message&& msg) {
      std::lock_guard l(mu_);
      if (replies != nullptr) replies->replied(from, msg.payload());
      ep->on_message(from, msg.payload(), mono_now());
      if (ep->next_deadline() < target_) cv_.notify_one();
    });
  }

  void timer_loop() {
    std::unique_lock l(mu_);
    while (!stop_) {
      Nanos d = kNever;
      for (Endpoint* e : endpoints_) d = std::min(d, e->next_deadline());
      target_ = d;
      if (d == kNever) {
        cv_.wait(l);
      } else {
        const auto now = std::chrono::steady_clock::now();
        const auto wait = std::chrono::nanoseconds(d - mono_now());
        cv_.wait_until(l, now + wait);
      }
      const Nanos now = mono_now();
      for (Endpoint* e : endpoints_)
        if (e->next_deadline() <= now) e->on_timer(now);
    }
  }

  HostOptions o_;
  tmc::Manifest base_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread timer_;
  bool stop_ = false;
  Nanos target_ = kNever;
  std::vector<std::unique_ptr<tmc::Channel>> channels_;
  std::vector<std::unique_ptr<ReplicaPort>> replica_ports_;
  std::vector<std::unique_ptr<ClientPort>> client_ports_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<Endpoint*> endpoints_;
  tmc::Channel* first_request_ = nullptr;
  tmc::Channel* first_pair_ = nullptr;
  std::uint64_t send_failures_ = 0;
  bool flagged_ = false;
  bool by_reply_ = false;  // requests reliable, acknowledged by their replies
  tmc::MessageManifest reliable_;
};

void ClientPort::send_to_replicas(Bytes msg, MsgType type) { host->send(request, msg, type, this); }
void ClientPort::send_to_replica(std::uint32_t r, Bytes msg, MsgType type) { host->send(pair[r], msg, type, this); }
void ReplicaPort::send_to_client(std::uint32_t c, Bytes msg, MsgType type) { host->send(pair[c], msg, type); }

}  // namespace

std::unique_ptr<Host> make_tmc_host(const HostOptions& o) { return std::make_unique<TmcHost>(o); }

}  // namespace tapir
