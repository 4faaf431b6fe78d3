// The UDP transport of one channel: socket set-up (join, interface, TTL, loopback),
// batched transmit (sendmmsg, UDP GSO when the plan allows it, unicast fan-out when the
// network has no multicast) and batched receive (recvmmsg into pool buffers).
//
// A receiving multicast member has two sockets: the group socket, bound to the group's
// address and port (several members on one host share it with SO_REUSEPORT, each getting
// every multicast datagram), and its own unicast socket on an ephemeral port, from which it
// sends everything. So its datagrams' source address names this member alone, and a
// datagram another member sends there (reliability's acks and NACKs to the sender they
// concern) reaches this member and no other. Fan-out and send-only members have one
// socket, which does both.
//
// Plain syscalls; no libuv here. The loop polls fd() and calls receive()/flush(). Every
// call passes MSG_DONTWAIT except wait_read(), the inline receiver's blocking read (the
// socket's file is blocking once enable_blocking_wait() ran). Everything except open()
// and wait_read() runs under the channel's exec lock (the loop thread, or an application
// thread sending or receiving inline).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tmc/packet.hpp"
#include "tmc/plan.hpp"
#include "tmc/status.hpp"

namespace tmc::detail {

struct TransportCounters {
  std::uint64_t datagrams_sent = 0;
  std::uint64_t datagram_bytes_sent = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t datagrams_received = 0;
  std::uint64_t datagram_bytes_received = 0;
  std::uint64_t receive_errors = 0;  ///< failed reads and truncated datagrams
  std::uint64_t truncated = 0;
  std::uint64_t rx_pool_exhausted = 0;  ///< datagrams read into scratch and discarded
  std::uint64_t tx_overflow = 0;        ///< packets dropped: transmit queue full
  std::uint64_t gso_sends = 0;          ///< sendmmsg entries that carried several segments
  std::uint64_t gso_refused = 0;        ///< GSO sends the kernel refused; GSO is then off for the socket
  std::uint64_t gro_reads = 0;          ///< received buffers that held several datagrams (UDP GRO)
  std::uint64_t refused = 0;            ///< ICMP "port unreachable" from the connected peer (not running yet)
  int last_errno = 0;
};

/// Buffers for one recvmmsg: pool packets and the message headers that point into them.
/// The transport keeps one set for its own reads; a channel's inline receiver keeps
/// another, so that it can wait in a blocking read without holding the channel's lock.
struct RxBuffers {
  std::vector<Packet*> stash;  ///< buffers for the next read, kept across reads
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iov;
  std::vector<sockaddr_in> addr;
  PacketPool* pool = nullptr;  ///< where the stash came from
  /// Slots [0, stale) need a buffer and their headers set again before the next read; the
  /// rest are ready. A read fills slots from the front, so what it used is a prefix, and an
  /// idle poll (nothing read) leaves every slot ready: arm() then does no work at all.
  std::size_t stale = SIZE_MAX;
  /// Give every stashed buffer back to its pool (exec).
  void release_all() noexcept;
};

/// UDP GRO receive (see UdpTransport::receive_gro()): the kernel hands several datagrams
/// of one sender in one buffer, up to 64 KiB, with their size in a UDP_GRO control
/// message. Read into these staging buffers (allocated once, at open) and cut apart into
/// pool packets; what the caller had no room for waits here for the next receive().
struct GroBuffers {
  static constexpr std::size_t kSlots = 4;
  static constexpr std::size_t kSlotBytes = 65536;
  std::vector<std::uint8_t> bytes;  ///< kSlots * kSlotBytes
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iov;
  std::vector<sockaddr_in> addr;
  std::vector<std::uint8_t> control;  ///< one UDP_GRO control block per slot
  std::vector<std::uint32_t> segment;  ///< datagram size of each buffer the last read filled
  std::size_t got = 0;    ///< buffers the last read filled
  std::size_t next = 0;   ///< the buffer being cut apart
  std::uint32_t off = 0;  ///< bytes of it already handed out
  [[nodiscard]] bool pending() const noexcept { return next < got; }
};

struct TransportSpec {
  TransportPlan plan;
  std::string self_name;             ///< this member's name, to find its own "name@ip:port"
  std::vector<std::string> members;  ///< the manifest's members
  bool receive = true;               ///< bind and join (false for send-only members)
  int socket_buffer_bytes = 0;
  int busy_poll_us = 0;  ///< SO_BUSY_POLL on the sockets (RuntimeOptions::busy_poll_us); 0 = off
};

class UdpTransport {
 public:
  /// Validate addresses, create the socket, set options, bind and join. Errors name the
  /// group, port and interface: BAD_ADDRESS, NO_SUCH_INTERFACE, ADDRESS_IN_USE,
  /// PERMISSION_DENIED, IO_ERROR.
  static Status open(const TransportSpec& spec, std::unique_ptr<UdpTransport>& out);
  ~UdpTransport();
  UdpTransport(const UdpTransport&) = delete;
  UdpTransport& operator=(const UdpTransport&) = delete;

  [[nodiscard]] int fd() const noexcept { return fd_; }
  /// The member's own unicast socket (it sends everything; poll it for readable and, when
  /// a flush() returns false, writable); -1 when fd() does both.
  [[nodiscard]] int unicast_fd() const noexcept { return ufd_; }
  /// Whether `spec` can be served by this socket (same bind, group, interface, mode),
  /// so that update() only needs apply().
  [[nodiscard]] bool same_socket(const TransportSpec& spec) const;
  /// Re-apply the settings that can change on a live socket (TTL, loopback, peers).
  Status apply(const TransportSpec& spec);
  /// The plan as resolved at open (interface address filled in).
  [[nodiscard]] const TransportPlan& plan() const noexcept { return plan_; }
  /// "udp multicast 239.1.2.3:4747 on lo" — for messages.
  [[nodiscard]] std::string describe() const;

  // --- transmit ---------------------------------------------------------------------------
  /// Queue a sealed packet; the transport owns it from here. False (packet released and
  /// counted) when the queue is full.
  bool enqueue(Packet* p) noexcept;
  /// Hand queued datagrams to the kernel. Returns false when the socket would block with
  /// datagrams still queued (poll for writable, then call again).
  bool flush() noexcept;
  /// Flush, waiting up to `timeout_ms` in poll() for room; what is left is dropped.
  void flush_blocking(int timeout_ms) noexcept;
  [[nodiscard]] std::size_t tx_pending() const noexcept { return tx_.size() - tx_head_; }

  // --- receive ----------------------------------------------------------------------------
  /// Read up to `max` datagrams (at most the plan's batch) into buffers from `pool`,
  /// without blocking. Returns how many were placed in `out`; 0 when there is nothing
  /// more to read now; -1 when datagrams were read but none kept (truncated, or no buffer:
  /// counted), so the caller should call again. Each packet has off = 0, len,
  /// src_ip/src_port set.
  int receive(PacketPool& pool, Packet** out, int max) noexcept;
  /// The same for the unicast socket (unicast_fd() >= 0).
  int receive_unicast(PacketPool& pool, Packet** out, int max) noexcept;

  // Blocking reads, for a channel's inline receiver (see "Inline receive" in
  // channel_core.hpp). The receiver arms its own buffers under the channel's lock, waits
  // in wait_read() without it, and hands the result to take() under the lock again.
  /// Make the socket's file blocking (every other call here passes MSG_DONTWAIT, so only
  /// wait_read() ever blocks) with a receive timeout of `timeout_us`, which bounds each
  /// wait_read(). Call after anything that sets O_NONBLOCK again (uv_poll_init). False
  /// when the kernel refused: wait_read() must not be used then.
  bool enable_blocking_wait(int timeout_us) noexcept;
  [[nodiscard]] bool blocking_wait() const noexcept { return blocking_wait_; }
  /// Fill `b` with up to `max` (at most the plan's batch) buffers from `pool`. Returns how
  /// many are ready for wait_read(); 0 when the pool has none to spare.
  int arm(RxBuffers& b, PacketPool& pool, int max) noexcept;
  /// One recvmmsg(MSG_WAITFORONE) into `n` armed buffers of `b`: blocks until a datagram
  /// arrives, the receive timeout passes, or the socket is shut down; then takes whatever
  /// else is waiting. Returns the datagram count, or -1 with errno (EAGAIN: timeout).
  /// Touches no state of the transport, so it runs without the channel's lock.
  static int wait_read(int fd, RxBuffers& b, int n) noexcept;
  /// Account for `got` datagrams that wait_read() placed in `b`: like receive()'s result,
  /// the kept packets go to `out` (at most `got`), truncated ones are counted and dropped.
  int take(RxBuffers& b, int got, Packet** out) noexcept;

  /// The socket is connected to its only peer (unicast, one other member).
  [[nodiscard]] bool connected() const noexcept { return connected_; }

  /// UDP GRO is on for the group socket (the plan has gro and the kernel took UDP_GRO).
  /// Then the inline receiver's hot wait is off (enable_blocking_wait() refuses): only
  /// receive() cuts coalesced buffers apart.
  [[nodiscard]] bool gro() const noexcept { return gro_on_; }
  /// receive() has datagrams already read from the socket that it has not handed out
  /// (GRO): call it again even though the socket may not be readable.
  [[nodiscard]] bool rx_buffered() const noexcept { return gro_.pending(); }
  /// What rx_buffered() holds, as receive() would hand it out, without reading the socket
  /// (so a caller that bounds its rounds can empty the staging buffers and stop).
  int take_buffered(PacketPool& pool, Packet** out, int max) noexcept;

  [[nodiscard]] const TransportCounters& counters() const noexcept { return c_; }

 private:
  UdpTransport() = default;
  struct Peer {
    sockaddr_in addr{};
  };
  Status setup(const TransportSpec& spec);
  Status set_peers(const TransportSpec& spec);
  void drop_front_datagram() noexcept;
  void connect_only_peer() noexcept;
  void release_sent(std::size_t packets_done) noexcept;
  Status open_unicast(const std::string& where);
  int receive_on(int fd, RxBuffers& b, PacketPool& pool, Packet** out, int max) noexcept;
  int receive_gro(PacketPool& pool, Packet** out, int max, bool may_read) noexcept;
  void setup_gro();
  /// The socket every datagram leaves from.
  [[nodiscard]] int tx_fd() const noexcept { return ufd_ >= 0 ? ufd_ : fd_; }

  int fd_ = -1;
  int ufd_ = -1;  ///< multicast receivers: the unicast socket (see the file comment)
  TransportPlan plan_;
  bool receive_ = true;
  bool joined_ = false;
  /// A unicast socket with exactly one peer is connected to it: the kernel then keeps the
  /// route to it (no route lookup per datagram sent, nor per datagram received: early
  /// demultiplexing finds the socket and its cached input route) and hands it only that
  /// peer's datagrams. Datagrams to the peer go without an address.
  bool connected_ = false;
  bool gso_refused_ = false;  ///< the kernel refused a GSO send: never again on this socket
  unsigned ifindex_ = 0;
  in_addr if_addr_{};
  sockaddr_in group_{};
  sockaddr_in bound_{};
  std::vector<Peer> peers_;  ///< unicast fan-out destinations (self excluded)
  std::uint32_t batch_ = 32;

  // Transmit queue: packets [tx_head_, tx_.size()); the front packet has been sent to
  // peers [0, tx_peer_) already (fan-out).
  std::vector<Packet*> tx_;
  std::size_t tx_head_ = 0;
  std::size_t tx_peer_ = 0;
  std::size_t tx_capacity_ = 0;
  std::vector<mmsghdr> tx_msgs_;
  std::vector<iovec> tx_iov_;
  std::vector<sockaddr_in> tx_addr_;
  std::vector<std::uint32_t> tx_span_;  ///< packets covered by each tx_msgs_ entry
  std::vector<std::uint8_t> tx_cmsg_;   ///< UDP_SEGMENT control blocks, one per entry

  // Receive: buffers taken from the pool for the next recvmmsg, kept across calls.
  RxBuffers rx_;
  RxBuffers urx_;  ///< the same for ufd_
  std::vector<std::uint8_t> scratch_;
  bool blocking_wait_ = false;  ///< the file is blocking; see enable_blocking_wait()
  bool gro_on_ = false;         ///< fd_ has UDP_GRO; receive() reads through gro_
  GroBuffers gro_;

  TransportCounters c_;
};

}  // namespace tmc::detail
