#include "simnet.hpp"

namespace tapir {

SimNet::SimNet(SimOptions opts, std::uint32_t replicas, StoreOptions store_opts) : opts_(opts), rng_(opts.seed) {
  for (std::uint32_t i = 0; i < replicas; ++i) {
    auto port = std::make_unique<ReplicaPort>();
    port->net = this;
    port->index = i;
    replicas_.push_back(std::make_unique<Replica>(i, *port, store_opts));
    replica_ports_.push_back(std::move(port));
  }
}

Client& SimNet::add_client(Client::Config cfg) {
  ClientSlot slot;
  slot.port = std::make_unique<ClientPort>();
  slot.port->net = this;
  slot.port->index = static_cast<std::uint32_t>(clients_.size());
  cfg.index = slot.port->index;
  cfg.n = replica_count();
  slot.client = std::make_unique<Client>(std::move(cfg), *slot.port);
  clients_.push_back(std::move(slot));
  return *clients_.back().client;
}

void SimNet::enqueue(bool to_replica, std::uint32_t dest, std::uint32_t from, Bytes msg, Nanos extra) {
  std::uniform_int_distribution<Nanos> jitter(0, opts_.jitter);
  queue_.push(Packet{now_ + opts_.latency + jitter(rng_) + extra, order_++, to_replica, dest, from,
                     std::vector<std::uint8_t>(msg.begin(), msg.end())});
}

void SimNet::transmit(bool to_replica, std::uint32_t dest, std::uint32_t from, Bytes msg, MsgType type) {
  ++datagrams_sent;
  const bool faulty = (opts_.fault_types & (1U << static_cast<unsigned>(type))) != 0;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  if (faulty && opts_.loss > 0 && coin(rng_) < opts_.loss) {
    ++datagrams_dropped;
    return;
  }
  Nanos extra = 0;
  if (faulty && opts_.reorder > 0 && coin(rng_) < opts_.reorder) extra = 5 * opts_.latency;
  enqueue(to_replica, dest, from, msg, extra);
  if (faulty && opts_.duplicate > 0 && coin(rng_) < opts_.duplicate) enqueue(to_replica, dest, from, msg, opts_.latency);
}

void SimNet::run_until(Nanos until) {
  for (;;) {
    Nanos next = queue_.empty() ? kNever : queue_.top().at;
    for (auto& c : clients_) next = std::min(next, c.client->next_deadline());
    if (next == kNever || next > until) {
      now_ = std::max(now_, until);
      return;
    }
    now_ = std::max(now_, next);
    if (!queue_.empty() && queue_.top().at <= now_) {
      Packet p = queue_.top();
      queue_.pop();
      if (p.to_replica) replicas_[p.dest]->on_message(p.from, p.bytes, now_);
      else clients_[p.dest].client->on_message(p.from, p.bytes, now_);
      continue;
    }
    for (auto& c : clients_)
      if (c.client->next_deadline() <= now_) c.client->on_timer(now_);
  }
}

bool SimNet::drain(Nanos limit) {
  for (auto& c : clients_) c.client->stop();
  const Nanos end = now_ + limit;
  while (now_ < end) {
    bool quiet = true;
    for (auto& c : clients_) quiet = quiet && c.client->quiescent();
    if (quiet) return true;
    run_until(std::min(end, now_ + 10 * kMillisecond));
  }
  return false;
}

}  // namespace tapir
