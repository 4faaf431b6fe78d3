// Acknowledgments the application makes on a member's behalf (Channel::acknowledge).
//
// A request/response application knows more than the channel: a reply from member M to
// request X means M has X. A stage that tracks acknowledgments (reliability.arq)
// implements this interface, and the pipeline hands it such an acknowledgment as if M's
// own ack of X had arrived, so no ack datagram needs to carry it. Kept off the Stage
// interface: only stages that track acknowledgments take part.
#pragma once

#include <cstdint>

#include "tmc/stage.hpp"

namespace tmc::detail {

class AppAcknowledged {
 public:
  /// The application learned that the member in view slot `slot` holds the message sent
  /// with Packet::token `token`. True when this stage tracked that message.
  virtual bool on_app_ack(std::uint64_t token, int slot, StageIo& io) noexcept = 0;

 protected:
  AppAcknowledged() = default;
  AppAcknowledged(const AppAcknowledged&) = default;
  AppAcknowledged& operator=(const AppAcknowledged&) = default;
  ~AppAcknowledged() = default;
};

}  // namespace tmc::detail
