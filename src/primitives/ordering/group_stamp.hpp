// The network sequencer's rewrite of one datagram: insert (or replace) the group_seq
// extension and re-seal. Shared by tools/tmc_sequencer.cpp (the standalone OUM process)
// and the simulator tests that model it, so both stamp the exact same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "tmc/packet.hpp"

namespace tmc::detail {

/// Body of wire::Ext::group_seq: u64 global sequence, u32 session (big-endian).
inline constexpr std::uint8_t kGroupSeqBodyBytes = 12;

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

/// The network sequencer's admission rule, shared by tmc-sequencer and the simulator's
/// model of it. The network between senders and the sequencer may duplicate and reorder
/// datagrams; stamping a duplicate twice would give one message two places in the order
/// (members that missed one copy would deliver it elsewhere), and stamping a reordered one
/// would break each sender's order. So the sequencer stamps a data datagram only when its
/// per-sender number (Ext::seq) is above the last it stamped for that (sender, epoch), as a
/// switch register per sender would; everything else is refused.
class SequencerAdmission {
 public:
  explicit SequencerAdmission(std::size_t max_senders = 65536) : max_senders_(max_senders) {}
  enum class Verdict : std::uint8_t { stamp, stale, no_seq, not_data };
  /// `in` decoded by wire::decode(). Records the number when the verdict is `stamp`.
  Verdict admit(const Packet& in);

 private:
  std::size_t max_senders_;
  std::unordered_map<std::uint64_t, std::uint64_t> last_;  ///< (sender << 32 | epoch) -> seq
};

}  // namespace tmc::detail
