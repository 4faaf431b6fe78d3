// Letting go of messages that wait in a stage's queue (flow.credit, congestion.window) once
// they are worth nothing: expired (their lifetime ran out) or forgotten by the application.
// Reliability above reports their outcomes; the waiting stage only releases the packets.
#pragma once

#include <cstdint>

#include "tmc/packet.hpp"
#include "tmc/stage.hpp"

namespace tmc::wait_queue {

/// Release expired messages from the head of `q` (the queue is in sending order).
inline void release_expired(PacketFifo& q, std::uint64_t now_ns) noexcept {
  while (!q.empty() && q.front()->expires_ns != 0 && now_ns >= q.front()->expires_ns) q.pop()->release();
}

/// Release the forgotten messages of `q` (one token, or it and every earlier one), keeping
/// the order of the rest.
inline void release_forgotten(PacketFifo& q, std::uint64_t token, ForgetScope scope) noexcept {
  PacketFifo keep;
  while (Packet* p = q.pop()) {
    const bool gone = scope == ForgetScope::message ? p->token == token : p->token <= token;
    if (gone) {
      p->release();
    } else {
      keep.push(p);
    }
  }
  while (Packet* p = keep.pop()) q.push(p);
}

}  // namespace tmc::wait_queue
