// Message: one delivered application message.
//
// A Message owns the pool buffer the datagram was received into, so delivery copies
// nothing: payload() is a view of that buffer. Messages are move-only; destroying one
// (from any thread) hands the buffer back to its channel's pool. A Message may outlive
// its Channel: the buffer memory stays valid until the last Message of that channel is
// gone.
//
// Holding many Messages holds many buffers. A channel's pool is bounded (see
// OpenOptions::max_buffers), so an application that keeps every Message forever will see
// later datagrams dropped with drops.pool_exhausted. Copy what you keep (to_vector()).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tmc {

struct Packet;

namespace detail {
class BufferHome;  // the pool a Message's buffer returns to (src/runtime/channel/channel_core.hpp)
}

class Message {
 public:
  Message() noexcept = default;
  ~Message() { reset(); }
  Message(Message&& other) noexcept;
  Message& operator=(Message&& other) noexcept;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  /// The payload bytes; empty for a default-constructed or moved-from Message.
  [[nodiscard]] std::span<const std::uint8_t> payload() const noexcept;
  /// The payload viewed as characters (no copy, no terminator).
  [[nodiscard]] std::string_view text() const noexcept;
  /// A copy of the payload that the caller owns.
  [[nodiscard]] std::vector<std::uint8_t> to_vector() const;
  [[nodiscard]] std::size_t size() const noexcept { return payload().size(); }
  /// False for a default-constructed or moved-from Message.
  [[nodiscard]] bool valid() const noexcept { return packet_ != nullptr; }
  /// Give the buffer back now (the destructor does this too).
  void reset() noexcept;

  /// The sender's member name when this endpoint knows it (it is in the manifest's
  /// `members`), else its sender id in hex, e.g. "0x1a2b3c4d".
  std::string sender;
  std::uint32_t sender_id = 0;  ///< FNV-1a of the sender's member name (stable across restarts)
  std::uint32_t epoch = 0;      ///< the sender's incarnation (random per join and per update())
  std::uint64_t seq = 0;        ///< per-sender sequence number; 0 when the plan has no ordering.seq
  bool has_seq = false;         ///< whether `seq` was carried on the wire
  std::uint16_t flags = 0;      ///< wire flags (tmc::wire::kFlag*): per-message properties it was sent with
  std::uint64_t received_ns = 0;  ///< when the datagram was read from the socket (monotonic clock, ns)
  /// The end of its lifetime on this member's clock (monotonic, ns; manifest 'lifetime'),
  /// 0 = none. receive() never returns it later: it is dropped from the queue instead.
  std::uint64_t expires_ns = 0;

  // --- for the runtime (not part of the application API) -------------------------------
  /// Adopt `p` (a delivered packet); it returns to `home` when this Message lets go.
  Message(Packet* p, std::shared_ptr<detail::BufferHome> home) noexcept;

 private:
  Packet* packet_ = nullptr;
  std::shared_ptr<detail::BufferHome> home_;
};

}  // namespace tmc
