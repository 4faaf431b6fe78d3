// The network sequencer's rewrite of one datagram: insert (or replace) the group_seq
// extension and re-seal. Shared by tools/tmc_sequencer.cpp (the standalone OUM process)
// and the simulator tests that model it, so both stamp the exact same bytes. Not a pipeline
// stage: the in-network sequencer's side of ordering.group's network mode, compiled into
// libtmc so that the tool and the simulator share one implementation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "primitives/ordering/group/wire.hpp"
#include "tmc/packet.hpp"

namespace tmc::detail {

/// Body of wire::Ext::group_seq: u64 global sequence, u32 session (big-endian); the layout
/// is ordering.group's (group_wire::put_stamp / get_stamp), which reads it.
inline constexpr std::uint8_t kGroupSeqBodyBytes = group_wire::kStampBody;

/// Write into `out` (capacity `cap`) the datagram `in` with a group_seq extension carrying
/// (`global_seq`, `session`) in front of its other extensions; an existing group_seq
/// extension (a hostile or confused sender) is replaced, not duplicated. When `in.flags`
/// has wire::kFlagCrc, a fresh CRC32C trailer is computed over the new bytes. `in` must
/// have been accepted by wire::decode() (its header fields and extension index are used;
/// its original trailer, stripped or not, is ignored). Returns the new datagram's length,
/// or 0 when it would not fit: in `cap`, in wire::kMaxDatagramBytes, in the u16 extension
/// length, or within wire::kMaxExtensions.
std::size_t stamp_group_seq(const Packet& in, std::uint64_t global_seq, std::uint32_t session, std::uint8_t* out,
                            std::size_t cap) noexcept;

/// Memory bounds of SequencerAdmission.
struct SequencerLimits {
  std::size_t max_senders = 1024;          ///< sender incarnations remembered
  std::uint32_t history = 8192;            ///< stamped numbers remembered per sender
  std::uint32_t max_held = 64;             ///< out-of-order datagrams held per sender
  std::size_t max_held_bytes = 16u << 20;  ///< bytes held over all senders
};

/// The network sequencer's admission and stamping, shared by tmc-sequencer and the
/// simulator's model of it. It owns the session and the global counter and hands every
/// datagram to multicast to an `Emit` callback, already stamped.
///
/// Rules, per sender incarnation (sender, epoch), on the per-sender number Ext::seq:
///  - Stamped in per-sender order with no holes: seq == last + 1 gets the next global
///    number. The total order is then a FIFO extension of every sender's order, and a
///    message that missed the sequencer is never overtaken for good by its successors.
///  - A retransmission (seq already stamped, within the last `history` numbers) is stamped
///    again with the SAME global number and multicast again: a member that missed the
///    first copy gets it; the others drop it as a duplicate (their reliability re-acks).
///    Older than `history`: refused, counted as stale.
///  - seq above last + 1 (an earlier one was lost or reordered on the way in):
///      * reliable (kFlagReliable with Ext::rel): HELD, up to `max_held` per sender and
///        `max_held_bytes` in all, until the missing numbers arrive — the sender's
///        reliability retransmits them — and then released in order. Holding (rather than
///        refusing) keeps a single loss on the way in from turning into a go-back-N of the
///        sender's whole window: only the one lost datagram is retransmitted, and the
///        ones behind it go out as soon as it arrives. When the hold is full the datagram
///        is refused (counted); its sender retransmits it later, so nothing is lost.
///        The missing numbers are passed over (a hole, counted) only when the sender
///        itself says they will never come: Ext::rel's trailing edge reaches the held
///        datagram's reliable number, i.e. everything the sender sent before it is
///        settled (acknowledged through another path, e.g. an unordered message, or
///        given up). So a hole never appears for a message that can still be repaired.
///      * unreliable: nobody will retransmit the missing ones, so it is stamped at once
///        and the missing numbers are passed over (a reordered straggler is then stale),
///        as NOPaxos's OUM drops rather than waits.
///  - First datagram of an incarnation: its own number is the start, except that a
///    reliable one waits for the unsettled numbers its trailing edge says may still come.
///  - Unordered data (kFlagUnordered) is relayed unchanged (no global number: members
///    deliver it at once); only Kind::data is admitted.
/// Memory is bounded: at most `max_senders` incarnations (least recently seen evicted),
/// each with a `history`-entry ring preallocated on first sight, and held bytes capped.
class SequencerAdmission {
 public:
  using Limits = SequencerLimits;
  enum class Verdict : std::uint8_t {
    stamp,      ///< stamped with a new global number (held successors may follow it out)
    restamp,    ///< already stamped: multicast again with its global number
    relay,      ///< unordered data: multicast unchanged
    held,       ///< out of per-sender order: held until the missing numbers arrive
    refused,    ///< out of per-sender order and no room to hold it (sender retransmits)
    duplicate,  ///< a copy of a datagram already held
    stale,      ///< stamped too long ago to remember, or passed over
    no_seq,     ///< data without a valid Ext::seq
    not_data,   ///< not Kind::data
    too_large,  ///< would exceed the datagram limit with the stamp: passed over
  };
  struct Counters {
    std::uint64_t stamped = 0;           ///< new global numbers given (held ones included)
    std::uint64_t restamped = 0;         ///< retransmissions multicast again, same number
    std::uint64_t relayed = 0;           ///< unordered data relayed
    std::uint64_t held = 0;              ///< datagrams held out of order
    std::uint64_t released = 0;          ///< held datagrams stamped once their turn came
    std::uint64_t refused = 0;           ///< out of order with the hold full
    std::uint64_t duplicate_held = 0;    ///< copies of held datagrams
    std::uint64_t stale = 0;             ///< too old to remember, or passed over
    std::uint64_t passed_over = 0;       ///< per-sender numbers skipped (holes)
    std::uint64_t no_seq = 0;
    std::uint64_t not_data = 0;
    std::uint64_t too_large = 0;
    std::uint64_t senders_evicted = 0;
  };
  /// Receives each datagram to multicast (valid only during the call).
  using Emit = void (*)(void* ctx, const std::uint8_t* datagram, std::size_t len);

  explicit SequencerAdmission(std::uint32_t session = 1, Limits limits = {});
  ~SequencerAdmission();
  SequencerAdmission(const SequencerAdmission&) = delete;
  SequencerAdmission& operator=(const SequencerAdmission&) = delete;

  /// `in` decoded by wire::decode(). Emits what is to be multicast now (zero or more
  /// datagrams: a stamped one may release held successors).
  Verdict admit(const Packet& in, Emit emit, void* ctx);

  [[nodiscard]] const Counters& counters() const noexcept { return c_; }
  [[nodiscard]] std::uint32_t session() const noexcept { return session_; }
  /// The global number the next new stamp gets.
  [[nodiscard]] std::uint64_t next_global() const noexcept { return next_; }
  [[nodiscard]] std::size_t senders() const noexcept { return senders_.size(); }
  [[nodiscard]] std::size_t held_datagrams() const noexcept { return held_count_; }
  [[nodiscard]] std::size_t held_bytes() const noexcept { return held_bytes_; }
  /// Bytes of per-sender state allocated (rings and hold tables, not held datagrams).
  [[nodiscard]] std::size_t state_bytes() const noexcept;

 private:
  struct Held {
    std::uint64_t seq = 0;
    std::uint64_t rseq = 0;
    std::uint32_t len = 0;
    std::unique_ptr<std::uint8_t[]> bytes;
  };
  struct Sender {
    std::uint64_t key = 0;
    std::uint64_t last = 0;        ///< every number <= last is stamped or passed over
    std::uint64_t max_trail = 0;   ///< highest Ext::rel trailing edge seen
    std::uint64_t seen_tick = 0;   ///< for least-recently-seen eviction
    std::vector<std::uint64_t> ring;  ///< global of seq s at s % history; 0 = not stamped
    std::vector<Held> held;           ///< sorted by seq, all above last + 1
  };

  Sender& sender_for(std::uint64_t key, bool& fresh);
  void stamp_new(Sender& s, const Packet& p, std::uint64_t seq, Emit emit, void* ctx);
  void pass_over(Sender& s, std::uint64_t to);
  void release_held(Sender& s, std::size_t i, Emit emit, void* ctx);
  void drain(Sender& s, Emit emit, void* ctx);
  void drop_held(Sender& s);

  std::uint32_t session_;
  Limits lim_;
  std::uint64_t next_ = 1;
  std::uint64_t tick_ = 0;
  std::size_t held_count_ = 0;
  std::size_t held_bytes_ = 0;
  Counters c_;
  std::vector<Sender> senders_;
  std::unordered_map<std::uint64_t, std::uint32_t> index_;  ///< (sender << 32 | epoch) -> senders_
  std::vector<std::uint8_t> scratch_;                       ///< one stamped datagram
};

}  // namespace tmc::detail
