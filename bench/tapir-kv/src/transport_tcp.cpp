// TcpHost: the protocol endpoints over plain TCP streams on libuv — the paper's baseline.
// One stream per client-replica pair (the client connects to every replica and says who
// it is in a first frame); messages are frames of u32 length (little endian) + bytes.
// "Send to all replicas" writes the frame to each of the n streams. Everything runs on
// one libuv loop in the calling thread; a loop timer fires the endpoints' IR timers.
#include <uv.h>

#include <cstring>
#include <iostream>
#include <stdexcept>

#include "host.hpp"

namespace tapir {
namespace {

class TcpHost;

struct Conn {
  uv_tcp_t tcp{};
  TcpHost* host = nullptr;
  Endpoint* ep = nullptr;
  bool at_replica = false;
  std::uint32_t peer = UINT32_MAX;  // client index (at a replica) or replica index (at a client)
  std::uint32_t replica_slot = 0;   // at a replica: which local replica accepted it
  bool connected = false;
  std::vector<std::uint8_t> rbuf;
  std::size_t rpos = 0;
  char chunk[65536];
  uv_connect_t connect_req{};
  uv_timer_t retry{};
  sockaddr_in target{};
};

struct ClientPort final : ClientNet {
  TcpHost* host = nullptr;
  std::vector<Conn*> conns;  // by replica
  void send_to_replicas(Bytes msg, MsgType type) override;
  void send_to_replica(std::uint32_t r, Bytes msg, MsgType type) override;
};

struct ReplicaPort final : ReplicaNet {
  TcpHost* host = nullptr;
  std::vector<Conn*> conns;  // by client
  void send_to_client(std::uint32_t c, Bytes msg, MsgType type) override;
};

struct Listener {
  uv_tcp_t tcp{};
  TcpHost* host = nullptr;
  std::uint32_t replica_slot = 0;
};

struct WriteReq {
  uv_write_t req{};
  std::vector<std::uint8_t> data;
};

class TcpHost final : public Host {
 public:
  explicit TcpHost(const HostOptions& o) : o_(o) {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
    tick_.data = this;
  }
  ~TcpHost() override {
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  Replica& add_replica(std::uint32_t i, StoreOptions opts) override {
    auto port = std::make_unique<ReplicaPort>();
    port->host = this;
    port->conns.assign(o_.topo.clients(), nullptr);
    auto rep = std::make_unique<Replica>(i, *port, opts);
    auto l = std::make_unique<Listener>();
    l->host = this;
    l->replica_slot = static_cast<std::uint32_t>(replicas_.size());
    uv_tcp_init(&loop_, &l->tcp);
    l->tcp.data = l.get();
    sockaddr_in addr{};
    uv_ip4_addr(o_.topo.replica_ips[i].c_str(), o_.topo.tcp_port(i), &addr);
    uv_tcp_bind(&l->tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), 64, on_accept); rc != 0)
      throw std::runtime_error(std::string("tcp listen on ") + o_.topo.replica_ips[i] + ":" +
                               std::to_string(o_.topo.tcp_port(i)) + ": " + uv_strerror(rc));
    listeners_.push_back(std::move(l));
    replica_ports_.push_back(std::move(port));
    replicas_.push_back(std::move(rep));
    endpoints_.push_back(replicas_.back().get());
    return *replicas_.back();
  }

  Client& add_client(Client::Config cfg) override {
    auto port = std::make_unique<ClientPort>();
    port->host = this;
    auto cl = std::make_unique<Client>(std::move(cfg), *port);
    for (std::uint32_t r = 0; r < o_.topo.n(); ++r) {
      auto c = std::make_unique<Conn>();
      c->host = this;
      c->ep = cl.get();
      c->peer = r;
      uv_ip4_addr(o_.topo.replica_ips[r].c_str(), o_.topo.tcp_port(r), &c->target);
      uv_timer_init(&loop_, &c->retry);
      c->retry.data = c.get();
      port->conns.push_back(c.get());
      start_connect(c.get());
      conns_.push_back(std::move(c));
    }
    client_ports_.push_back(std::move(port));
    clients_.push_back(std::move(cl));
    endpoints_.push_back(clients_.back().get());
    return *clients_.back();
  }

  bool connect(Nanos timeout) override {
    const Nanos end = mono_now() + timeout;
    while (mono_now() < end) {
      if (all_connected()) return true;
      uv_run(&loop_, UV_RUN_NOWAIT);
      uv_sleep(1);
    }
    return all_connected();
  }

  void run_clients(double seconds) override {
    for (auto& c : clients_) c->start(mono_now());
    rearm();
    uv_timer_t end;
    uv_timer_init(&loop_, &end);
    end.data = this;
    uv_timer_start(&end, [](uv_timer_t* t) { static_cast<TcpHost*>(t->data)->stopping(); },
                   static_cast<std::uint64_t>(seconds * 1000), 0);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t*>(&end), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  void serve_until_signal() override {
    uv_signal_t s1, s2;
    for (uv_signal_t* s : {&s1, &s2}) {
      uv_signal_init(&loop_, s);
      s->data = this;
    }
    auto stop = [](uv_signal_t* s, int) { uv_stop(s->loop); };
    uv_signal_start(&s1, stop, SIGINT);
    uv_signal_start(&s2, stop, SIGTERM);
    uv_run(&loop_, UV_RUN_DEFAULT);
  }

  [[nodiscard]] std::string plans() const override { return "TCP: one stream per client-replica pair (no libTMC plan)\n"; }
  [[nodiscard]] TransportStats stats() const override { return stats_; }
  std::vector<Client*> clients() override { return endpoints(clients_); }
  std::vector<Replica*> replicas() override { return endpoints(replicas_); }

  void write_frame(Conn* c, Bytes msg) {
    if (c == nullptr || !c->connected) {
      ++stats_.send_errors;  // not (yet) connected: IR's resends cover it
      return;
    }
    ++stats_.datagrams_sent;
    std::uint8_t hdr[4];
    const auto n = static_cast<std::uint32_t>(msg.size());
    for (int i = 0; i < 4; ++i) hdr[i] = static_cast<std::uint8_t>(n >> (8 * i));
    uv_buf_t bufs[2] = {uv_buf_init(reinterpret_cast<char*>(hdr), 4),
                        uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(msg.data())), n)};
    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    const int wrote = uv_try_write(stream, bufs, 2);
    const std::size_t total = 4 + msg.size();
    if (wrote >= 0 && static_cast<std::size_t>(wrote) == total) return;
    if (wrote < 0 && wrote != UV_EAGAIN) {
      ++stats_.send_errors;
      return;
    }
    // The rest waits in libuv's queue (copied: the caller's bytes are gone after return).
    const std::size_t done = wrote < 0 ? 0 : static_cast<std::size_t>(wrote);
    auto* req = new WriteReq;
    req->data.reserve(total - done);
    for (std::size_t i = done; i < total; ++i) req->data.push_back(i < 4 ? hdr[i] : msg[i - 4]);
    uv_buf_t rest = uv_buf_init(reinterpret_cast<char*>(req->data.data()), static_cast<unsigned>(req->data.size()));
    req->req.data = req;
    uv_write(&req->req, stream, &rest, 1, [](uv_write_t* w, int) { delete static_cast<WriteReq*>(w->data); });
  }

 private:
  bool all_connected() const {
    for (const auto& c : conns_)
      if (!c->at_replica && !c->connected) return false;
    if (clients_.empty()) return true;  // a replica process: clients connect when they start
    for (const auto& p : replica_ports_)
      for (const Conn* c : p->conns)
        if (c == nullptr) return false;
    return true;
  }

  void start_connect(Conn* c) {
    uv_tcp_init(&loop_, &c->tcp);
    c->tcp.data = c;
    c->connect_req.data = c;
    uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&c->target), [](uv_connect_t* req, int status) {
      Conn* cc = static_cast<Conn*>(req->data);
      if (status != 0) {  // replica not up yet: retry in 100 ms
        uv_close(reinterpret_cast<uv_handle_t*>(&cc->tcp), [](uv_handle_t* h) {
          Conn* k = static_cast<Conn*>(h->data);
          uv_timer_start(&k->retry, [](uv_timer_t* t) {
            Conn* k2 = static_cast<Conn*>(t->data);
            k2->host->start_connect(k2);
          }, 100, 0);
        });
        return;
      }
      uv_tcp_nodelay(&cc->tcp, 1);
      cc->connected = true;
      const auto idx = static_cast<const Client*>(cc->ep)->config().index;
      std::uint8_t hello[4];
      for (int i = 0; i < 4; ++i) hello[i] = static_cast<std::uint8_t>(idx >> (8 * i));
      cc->host->write_frame(cc, Bytes(hello, 4));
      cc->host->start_read(cc);
    });
  }

  static void on_accept(uv_stream_t* server, int status) {
    if (status != 0) return;
    auto* l = static_cast<Listener*>(server->data);
    TcpHost* h = l->host;
    auto c = std::make_unique<Conn>();
    c->host = h;
    c->at_replica = true;
    c->replica_slot = l->replica_slot;
    c->ep = h->replicas_[l->replica_slot].get();
    uv_tcp_init(&h->loop_, &c->tcp);
    c->tcp.data = c.get();
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), nullptr);
      return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->connected = true;
    h->start_read(c.get());
    h->conns_.push_back(std::move(c));
  }

  void start_read(Conn* c) {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
          Conn* k = static_cast<Conn*>(h->data);
          *buf = uv_buf_init(k->chunk, sizeof k->chunk);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          Conn* k = static_cast<Conn*>(s->data);
          if (n < 0) {
            k->connected = false;
            uv_read_stop(s);
            return;
          }
          k->host->on_bytes(k, reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(n));
        });
  }

  void on_bytes(Conn* c, const std::uint8_t* p, std::size_t n) {
    c->rbuf.insert(c->rbuf.end(), p, p + n);
    const Nanos now = mono_now();
    while (c->rbuf.size() - c->rpos >= 4) {
      std::uint32_t len = 0;
      for (int i = 0; i < 4; ++i) len |= static_cast<std::uint32_t>(c->rbuf[c->rpos + i]) << (8 * i);
      if (c->rbuf.size() - c->rpos - 4 < len) break;
      Bytes frame(c->rbuf.data() + c->rpos + 4, len);
      c->rpos += 4 + len;
      ++stats_.datagrams_received;
      if (c->at_replica && c->peer == UINT32_MAX) {  // the client's hello: its index
        std::uint32_t idx = 0;
        for (std::size_t i = 0; i < 4 && i < frame.size(); ++i) idx |= static_cast<std::uint32_t>(frame[i]) << (8 * i);
        auto& slots = replica_ports_[c->replica_slot]->conns;
        if (idx < slots.size()) {
          c->peer = idx;
          slots[idx] = c;
        }
        continue;
      }
      c->ep->on_message(c->peer, frame, now);
    }
    if (c->rpos == c->rbuf.size()) {
      c->rbuf.clear();
      c->rpos = 0;
    }
    rearm();
  }

  void rearm() {
    Nanos d = kNever;
    for (Endpoint* e : endpoints_) d = std::min(d, e->next_deadline());
    if (d == kNever && !stopping_) {
      uv_timer_stop(&tick_);
      return;
    }
    Nanos wait = d == kNever ? kMillisecond : std::max<Nanos>(0, d - mono_now());
    if (stopping_) wait = std::min(wait, kMillisecond);  // poll for idleness while stopping
    uv_timer_start(&tick_, [](uv_timer_t* t) { static_cast<TcpHost*>(t->data)->on_tick(); },
                   static_cast<std::uint64_t>((wait + kMillisecond - 1) / kMillisecond), 0);
  }

  void on_tick() {
    const Nanos now = mono_now();
    for (Endpoint* e : endpoints_)
      if (e->next_deadline() <= now) e->on_timer(now);
    if (stopping_ && (all_idle() || now > stop_deadline_)) {
      uv_stop(&loop_);
      return;
    }
    rearm();
  }

  bool all_idle() const {
    for (const auto& c : clients_)
      if (!c->idle()) return false;
    return true;
  }

  void stopping() {
    stopping_ = true;
    stop_deadline_ = mono_now() + 3000 * kMillisecond;
    for (auto& c : clients_) c->stop();
    uv_timer_stop(&tick_);
    // Poll for idleness every ms from here on.
    uv_timer_start(&tick_, [](uv_timer_t* t) {
      auto* h = static_cast<TcpHost*>(t->data);
      const Nanos now = mono_now();
      for (Endpoint* e : h->endpoints_)
        if (e->next_deadline() <= now) e->on_timer(now);
      if (h->all_idle() || now > h->stop_deadline_) {
        uv_timer_stop(t);
        uv_stop(&h->loop_);
      }
    }, 1, 1);
  }

  HostOptions o_;
  uv_loop_t loop_{};
  uv_timer_t tick_{};
  bool stopping_ = false;
  Nanos stop_deadline_ = 0;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<ReplicaPort>> replica_ports_;
  std::vector<std::unique_ptr<ClientPort>> client_ports_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<Endpoint*> endpoints_;
  TransportStats stats_;
};

void ClientPort::send_to_replicas(Bytes msg, MsgType) {
  for (Conn* c : conns) host->write_frame(c, msg);
}
void ClientPort::send_to_replica(std::uint32_t r, Bytes msg, MsgType) { host->write_frame(conns[r], msg); }
void ReplicaPort::send_to_client(std::uint32_t c, Bytes msg, MsgType) { host->write_frame(conns[c], msg); }

}  // namespace

std::unique_ptr<Host> make_tcp_host(const HostOptions& o) { return std::make_unique<TcpHost>(o); }

}  // namespace tapir
