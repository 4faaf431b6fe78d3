#include "primitives/ordering/group_stamp.hpp"

#include <cstring>

#include "primitives/checksum/crc32c_impl.hpp"

namespace tmc::detail {

std::size_t stamp_group_seq(const Packet& in, std::uint64_t global_seq, std::uint32_t session, std::uint8_t* out,
                            std::size_t cap) noexcept {
  // Extensions to keep: every one but an existing group_seq.
  std::size_t keep_bytes = 0;
  std::size_t keep_count = 0;
  for (std::uint8_t i = 0; i < in.n_ext; ++i) {
    if (in.ext_type[i] == static_cast<std::uint8_t>(wire::Ext::group_seq)) continue;
    keep_bytes += wire::kExtHeaderBytes + in.ext_len[i];
    ++keep_count;
  }
  const std::size_t ext_bytes = wire::kExtHeaderBytes + kGroupSeqBodyBytes + keep_bytes;
  const bool crc = (in.flags & wire::kFlagCrc) != 0;
  const std::size_t total =
      wire::kBaseHeaderBytes + ext_bytes + in.payload_len + (crc ? wire::kTrailerBytes : 0);
  if (keep_count + 1 > wire::kMaxExtensions || ext_bytes > 0xFFFF || total > wire::kMaxDatagramBytes ||
      total > cap) {
    return 0;
  }
  std::uint8_t* h = out;
  wire::put_u16(h + 0, wire::kMagic);
  h[2] = wire::kVersion;
  h[3] = static_cast<std::uint8_t>(in.kind);
  wire::put_u16(h + 4, in.flags);
  wire::put_u16(h + 6, static_cast<std::uint16_t>(ext_bytes));
  wire::put_u32(h + 8, in.channel);
  wire::put_u32(h + 12, in.sender);
  wire::put_u32(h + 16, in.epoch);
  wire::put_u32(h + 20, in.payload_len);
  std::uint8_t* at = h + wire::kBaseHeaderBytes;
  at[0] = static_cast<std::uint8_t>(wire::Ext::group_seq);
  at[1] = kGroupSeqBodyBytes;
  wire::put_u64(at + 2, global_seq);
  wire::put_u32(at + 10, session);
  at += wire::kExtHeaderBytes + kGroupSeqBodyBytes;
  for (std::uint8_t i = 0; i < in.n_ext; ++i) {
    if (in.ext_type[i] == static_cast<std::uint8_t>(wire::Ext::group_seq)) continue;
    at[0] = in.ext_type[i];
    at[1] = in.ext_len[i];
    std::memcpy(at + 2, in.buf + in.ext_body[i], in.ext_len[i]);
    at += wire::kExtHeaderBytes + in.ext_len[i];
  }
  if (in.payload_len > 0) std::memcpy(at, in.buf + in.payload_off, in.payload_len);
  at += in.payload_len;
  if (crc) {
    const std::uint32_t c = crc32c(out, static_cast<std::size_t>(at - out));
    wire::put_u32(at, c);
  }
  return total;
}

SequencerAdmission::Verdict SequencerAdmission::admit(const Packet& in) {
  if (in.kind != wire::Kind::data) return Verdict::not_data;
  std::uint8_t len = 0;
  const std::uint8_t* body = in.ext(wire::Ext::seq, &len);
  if (body == nullptr || len != 8) return Verdict::no_seq;
  const std::uint64_t seq = wire::get_u64(body);
  if (seq == 0) return Verdict::no_seq;
  const std::uint64_t key = (std::uint64_t{in.sender} << 32) | in.epoch;
  auto it = last_.find(key);
  if (it != last_.end()) {
    if (seq <= it->second) return Verdict::stale;
    it->second = seq;
    return Verdict::stamp;
  }
  // A flood of (sender, epoch) pairs must not grow memory without bound: forget them all
  // (a forgotten sender's next datagram is simply admitted again).
  if (last_.size() >= max_senders_) last_.clear();
  last_.emplace(key, seq);
  return Verdict::stamp;
}

}  // namespace tmc::detail
