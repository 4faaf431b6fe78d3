// The small transport interface every protocol endpoint is written against, and the
// endpoint interface every transport drives. Implementations: the libTMC channels
// (transport_tmc), TCP streams on libuv (transport_tcp) and the deterministic in-memory
// network of the tests (simnet).
#pragma once

#include <cstdint>
#include <span>

#include "types.hpp"
#include "wire.hpp"

namespace tapir {

/// What a client sends through. `type` lets a transport choose per message (e.g. a
/// per-message manifest); the bytes are valid only during the call.
class ClientNet {
 public:
  virtual ~ClientNet() = default;
  virtual void send_to_replicas(Bytes msg, MsgType type) = 0;
  virtual void send_to_replica(std::uint32_t replica, Bytes msg, MsgType type) = 0;
};

/// What a replica replies through: to the client endpoint a request came from.
class ReplicaNet {
 public:
  virtual ~ReplicaNet() = default;
  virtual void send_to_client(std::uint32_t client, Bytes msg, MsgType type) = 0;
};

/// A protocol endpoint as a transport drives it: messages in, timers, and the next
/// deadline it wants to be woken at. Calls come one at a time (never concurrently).
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  /// `from`: the peer's index (a client index at a replica, a replica index at a client).
  virtual void on_message(std::uint32_t from, Bytes msg, Nanos now) = 0;
  virtual void on_timer(Nanos now) = 0;
  [[nodiscard]] virtual Nanos next_deadline() const = 0;
};

}  // namespace tapir
