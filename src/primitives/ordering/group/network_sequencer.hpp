// ordering.group's member side of the network sequencer (tmc-sequencer, the paper's OUM):
// data is unicast to the sequencer, which multicasts it with Ext::group_seq (u64 global,
// u32 session). This part reads stamps, remembers retired sessions (unreliable mode), and
// in reliable mode keeps a copy of each own ordered message until its stamped copy comes
// back (asking the sequencer again when it does not) and holds stamps beyond the window
// until they fit. Depends on the message table and the wire helpers only; adopting the
// session as a term and giving it up (failover) are the stage's.
//
// Our own stamped copies (reliable mode). We deliver our own message when the sequencer's
// stamped copy comes back to us, but reliability.arq below settles it once the OTHER members
// acknowledge it: a lost copy to us is never retransmitted by it, and a copy that arrives
// after arq settled the message (a retransmission advertised a newer trailing edge) is
// dropped by our arq as old history. Either way we would wait at its global number for good
// (reliable mode never skips). So we keep a clone of each ordered message until its stamped
// copy returns and, when it does not in time, send it to the sequencer again, which stamps a
// known (sender, epoch, seq) again with the same global number and multicasts it.
//
// The request is the datagram as ordering.seq would have sent it (Ext::seq with the
// message's number, no Ext::rel and not flagged reliable), sealed here and passed down as a
// control packet so that ordering.seq does not number it again and reliability.arq does not
// adopt it; seal() below is idempotent, so it leaves as data. Unflagged, its stamped copy
// passes every member's arq untouched (the pipeline lets own packets with Ext::group_seq
// through) and reaches us; the others drop it as a duplicate of a number they hold, or take
// it if they lack that number too.
//
// A datagram without Ext::rel that is ahead of its sender's order makes the sequencer pass
// over the missing numbers, which would lose messages still in repair. So only a message the
// sequencer has certainly reached in our order is asked for again: our oldest one not
// returned (every earlier ordered one came back stamped, hence the sequencer's order for us
// is at least up to just before it), or any one older than an own message that came back
// (the sequencer stamps each sender in order, no holes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "primitives/ordering/group/table.hpp"

namespace tmc::detail::group_order {

class NetworkSequencer {
 public:
  NetworkSequencer() = default;
  NetworkSequencer(const NetworkSequencer&) = delete;
  NetworkSequencer& operator=(const NetworkSequencer&) = delete;
  ~NetworkSequencer();

  /// `own_slots`: copies of own messages kept (reliable mode; 0 otherwise).
  void configure(const StageEnv& env, std::uint32_t ip, std::uint16_t port, bool reliable, std::size_t own_slots);
  [[nodiscard]] std::uint32_t ip() const noexcept { return ip_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Address `p` to the sequencer.
  void address(Packet& p) const noexcept {
    p.dst_ip = ip_;
    p.dst_port = port_;
  }

  /// The stamp of a datagram from the sequencer: (global number, session), both non-zero;
  /// otherwise the packet is dropped and counted, and false returned.
  bool read_stamp(Packet* p, std::uint64_t& g, std::uint32_t& session, StageIo& io) noexcept;

  // --- unreliable: sessions ---------------------------------------------------------

  /// Whether `session` is one we followed before (its stamps are stale).
  [[nodiscard]] bool retired(std::uint32_t session) const noexcept;
  /// The session we followed until now (0: none) is retired.
  void retire(std::uint32_t session) noexcept;

  // --- reliable: the network term -----------------------------------------------------

  /// Still on the network sequencer: no member term adopted yet.
  [[nodiscard]] bool active() const noexcept { return reliable_ && !fallback_; }
  /// The network term is being given up (see GroupStage::net_fail).
  [[nodiscard]] bool gone() const noexcept { return gone_; }
  void set_gone() noexcept { gone_ = true; }
  /// A member term was adopted: the network sequencer is out for good; the copies kept to
  /// ask it again are released.
  void fall_back() noexcept;

  /// Place stamped data `p` at global g of the network term (or hold the stamp until the
  /// window reaches it).
  void place_stamp(MsgTable& t, Packet* p, std::uint64_t g, StageIo& io) noexcept;
  /// Stamps that were beyond the window: place the ones that fit now.
  void place_pending(MsgTable& t, StageIo& io) noexcept;
  /// The term ends: held stamps are void.
  void clear_pending(MsgTable& t) noexcept;
  [[nodiscard]] std::size_t pending() const noexcept { return n_pending_; }

  // --- reliable: our own stamped copies -------------------------------------------------

  /// Keep a copy of own message `p` (per-sender number `seq`) until its stamp returns.
  void keep_own(const Packet& p, std::uint64_t seq, StageIo& io) noexcept;
  /// The stamped copy of own message `seq` came back.
  void own_returned(std::uint64_t seq) noexcept;
  /// The timer for own copies is due: ask again for the ones late and safe to ask for.
  /// `own_seq`: the last per-sender number sent. Whether one was asked for so often that
  /// the sequencer counts as gone.
  bool request_restamps(std::uint64_t own_seq, StageIo& io) noexcept;
  [[nodiscard]] std::uint64_t own_due_ns() const noexcept { return own_due_ns_; }
  [[nodiscard]] std::size_t own_held() const noexcept { return own_held_; }
  [[nodiscard]] std::size_t own_slots() const noexcept { return own_.size(); }

 private:
  // A copy of an own message whose stamped copy has not come back.
  struct OwnCopy {
    Packet* p = nullptr;  ///< nullptr with `used`: a message larger than one datagram (not re-sent)
    bool used = false;
    std::uint64_t seq = 0;
    std::uint64_t due_ns = 0;   ///< when to ask the sequencer (again)
    std::uint64_t wait_ns = 0;  ///< the current wait, doubled per request
    std::uint32_t tries = 0;
  };
  void release_own(OwnCopy& o) noexcept;
  void send_restamp_request(const OwnCopy& o, StageIo& io) noexcept;

  StageEnv env_;
  std::uint32_t ip_ = 0;
  std::uint16_t port_ = 0;
  bool reliable_ = false;

  static constexpr std::size_t kRetiredSessions = 4;
  std::uint32_t retired_[kRetiredSessions] = {};
  std::size_t n_retired_ = 0;
  std::size_t retired_pos_ = 0;

  bool gone_ = false;
  bool fallback_ = false;
  std::size_t n_pending_ = 0;  ///< messages with a stamp beyond the window (Msg::pend_g)

  // Copies of our own messages until their stamped copy returns (indexed by per-sender
  // number modulo the window).
  std::vector<OwnCopy> own_;
  std::size_t own_held_ = 0;
  std::uint64_t own_low_ = 0;       ///< no copy held below this number
  std::uint64_t own_back_max_ = 0;  ///< highest own number whose stamped copy came back
  std::uint64_t own_due_ns_ = 0;    ///< earliest due request (0 = none)
};

}  // namespace tmc::detail::group_order
