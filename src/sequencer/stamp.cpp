#include "sequencer/stamp.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "primitives/checksum/crc32c_impl.hpp"
#include "primitives/reliability/ack_format.hpp"

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
  group_wire::put_stamp(at + 2, group_wire::Stamp{global_seq, session});
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

namespace {

// The reliable number and trailing edge of a datagram its sender's reliability keeps and
// retransmits; nullopt for one nobody will send again.
std::optional<RelBody> reliable_body(const Packet& in) {
  if ((in.flags & wire::kFlagReliable) == 0) return std::nullopt;
  std::uint8_t len = 0;
  const std::uint8_t* body = in.ext(wire::Ext::rel, &len);
  return decode_rel_body(body, len);
}

}  // namespace

SequencerAdmission::SequencerAdmission(std::uint32_t session, Limits limits)
    : session_(session), lim_(limits), scratch_(wire::kMaxDatagramBytes) {
  lim_.max_senders = std::max<std::size_t>(lim_.max_senders, 1);
  lim_.history = std::max<std::uint32_t>(lim_.history, 1);
  senders_.reserve(std::min<std::size_t>(lim_.max_senders, 4096));
}

SequencerAdmission::~SequencerAdmission() = default;

std::size_t SequencerAdmission::state_bytes() const noexcept {
  std::size_t n = 0;
  for (const Sender& s : senders_) n += s.ring.capacity() * sizeof(std::uint64_t) + s.held.capacity() * sizeof(Held);
  return n;
}

SequencerAdmission::Sender& SequencerAdmission::sender_for(std::uint64_t key, bool& fresh) {
  const auto it = index_.find(key);
  if (it != index_.end()) {
    fresh = false;
    return senders_[it->second];
  }
  fresh = true;
  std::uint32_t slot = 0;
  if (senders_.size() < lim_.max_senders) {
    slot = static_cast<std::uint32_t>(senders_.size());
    senders_.emplace_back();
    senders_.back().ring.assign(lim_.history, 0);
    senders_.back().held.reserve(lim_.max_held);
  } else {
    // Full (a flood of incarnations, real or forged): forget the one seen least recently.
    // Its next datagram starts it afresh; only its history of stamps is lost.
    for (std::uint32_t i = 1; i < senders_.size(); ++i) {
      if (senders_[i].seen_tick < senders_[slot].seen_tick) slot = i;
    }
    Sender& old = senders_[slot];
    index_.erase(old.key);
    drop_held(old);
    std::fill(old.ring.begin(), old.ring.end(), 0);
    old.last = 0;
    old.max_trail = 0;
    ++c_.senders_evicted;
  }
  senders_[slot].key = key;
  index_.emplace(key, slot);
  return senders_[slot];
}

void SequencerAdmission::drop_held(Sender& s) {
  for (Held& h : s.held) {
    held_bytes_ -= h.len;
    --held_count_;
  }
  s.held.clear();
}

// Every number in (last, to] that was never stamped becomes a hole; the ring forgets
// whatever it remembered at those positions (at most `history` writes, however far `to`).
void SequencerAdmission::pass_over(Sender& s, std::uint64_t to) {
  if (to <= s.last) return;
  const std::uint64_t n = to - s.last;
  c_.passed_over += n;
  const std::uint64_t writes = std::min<std::uint64_t>(n, lim_.history);
  for (std::uint64_t x = to - writes + 1; x <= to && x != 0; ++x) s.ring[x % lim_.history] = 0;
  s.last = to;
}

// `seq` is last + 1 (or everything between was passed over): give it the next number.
void SequencerAdmission::stamp_new(Sender& s, const Packet& p, std::uint64_t seq, Emit emit, void* ctx) {
  const std::size_t n = stamp_group_seq(p, next_, session_, scratch_.data(), scratch_.size());
  if (n == 0) {
    // It can never be stamped, however often it is sent: pass it over rather than block
    // its sender's later messages behind it.
    ++c_.too_large;
    pass_over(s, seq);
    return;
  }
  s.ring[seq % lim_.history] = next_;
  s.last = seq;
  ++next_;
  ++c_.stamped;
  emit(ctx, scratch_.data(), n);
}

void SequencerAdmission::release_held(Sender& s, std::size_t i, Emit emit, void* ctx) {
  Held h = std::move(s.held[i]);
  s.held.erase(s.held.begin() + static_cast<std::ptrdiff_t>(i));
  held_bytes_ -= h.len;
  --held_count_;
  Packet p;
  p.buf = h.bytes.get();
  p.cap = h.len;
  p.off = 0;
  p.len = h.len;
  if (wire::decode(p) != wire::DecodeError::none) return;  // it decoded when it was held
  pass_over(s, h.seq - 1);
  ++c_.released;
  stamp_new(s, p, h.seq, emit, ctx);
}

// Stamp the held datagrams whose turn has come: the next in line, or one before which the
// sender has settled everything (its trailing edge reached it: the missing ones will never
// come, so waiting would block the sender for good).
void SequencerAdmission::drain(Sender& s, Emit emit, void* ctx) {
  while (!s.held.empty()) {
    const Held& first = s.held.front();
    if (first.seq <= s.last) {  // passed over meanwhile (cannot happen; never leak it)
      held_bytes_ -= first.len;
      --held_count_;
      s.held.erase(s.held.begin());
      ++c_.stale;
      continue;
    }
    if (first.seq == s.last + 1 || s.max_trail >= first.rseq) {
      release_held(s, 0, emit, ctx);
      continue;
    }
    break;
  }
}

SequencerAdmission::Verdict SequencerAdmission::admit(const Packet& in, Emit emit, void* ctx) {
  if (in.kind != wire::Kind::data) {
    ++c_.not_data;
    return Verdict::not_data;
  }
  if ((in.flags & wire::kFlagUnordered) != 0) {
    // No place in the total order: members deliver it at once. Relayed unchanged so that a
    // member that routes it here does not lose it.
    ++c_.relayed;
    emit(ctx, in.buf + in.off, in.len);
    return Verdict::relay;
  }
  std::uint8_t len = 0;
  const std::uint8_t* body = in.ext(wire::Ext::seq, &len);
  if (body == nullptr || len != 8 || wire::get_u64(body) == 0) {
    ++c_.no_seq;
    return Verdict::no_seq;
  }
  const std::uint64_t seq = wire::get_u64(body);
  const std::optional<RelBody> rel = reliable_body(in);
  bool fresh = false;
  Sender& s = sender_for((std::uint64_t{in.sender} << 32) | in.epoch, fresh);
  s.seen_tick = ++tick_;
  if (fresh) {
    // The first datagram of an incarnation (or the first since this sequencer started):
    // a reliable one says how many of its predecessors are still unsettled and may come
    // (rseq - trail reliable numbers, so at most that many per-sender numbers); wait for
    // them. Anything older was settled before it and is never sent again.
    const std::uint64_t back = rel ? rel->rseq - rel->trail : 0;
    s.last = seq - 1 - std::min(seq - 1, back);
  }
  if (rel && rel->trail > s.max_trail) s.max_trail = rel->trail;

  if (seq <= s.last) {
    const std::uint64_t g = s.last - seq < lim_.history ? s.ring[seq % lim_.history] : 0;
    if (g == 0) {
      ++c_.stale;
      drain(s, emit, ctx);  // its trailing edge may have freed a held successor
      return Verdict::stale;
    }
    const std::size_t n = stamp_group_seq(in, g, session_, scratch_.data(), scratch_.size());
    if (n != 0) {
      ++c_.restamped;
      emit(ctx, scratch_.data(), n);
    }
    drain(s, emit, ctx);
    return Verdict::restamp;
  }
  if (seq == s.last + 1) {
    stamp_new(s, in, seq, emit, ctx);
    drain(s, emit, ctx);
    return Verdict::stamp;
  }
  // Out of order: an earlier number is missing.
  const bool settled_before = rel && s.max_trail >= rel->rseq;
  if (!rel || settled_before) {
    // Nobody will send the missing ones again (unreliable, or settled at the sender):
    // stamp what is held before it, in order, then it.
    while (!s.held.empty() && s.held.front().seq < seq) release_held(s, 0, emit, ctx);
    if (!s.held.empty() && s.held.front().seq == seq) {
      // A copy of a held one: the held copy goes out now, in its place.
      release_held(s, 0, emit, ctx);
      ++c_.duplicate_held;
      drain(s, emit, ctx);
      return Verdict::duplicate;
    }
    if (seq <= s.last) {  // (a held predecessor was too large and passed over up to here)
      ++c_.stale;
      return Verdict::stale;
    }
    pass_over(s, seq - 1);
    stamp_new(s, in, seq, emit, ctx);
    drain(s, emit, ctx);
    return Verdict::stamp;
  }
  const auto by_seq = [](const Held& h, std::uint64_t v) { return h.seq < v; };
  auto pos = std::lower_bound(s.held.begin(), s.held.end(), seq, by_seq);
  if (pos != s.held.end() && pos->seq == seq) {
    ++c_.duplicate_held;
    drain(s, emit, ctx);  // its fresher trailing edge may release held ones
    return Verdict::duplicate;
  }
  drain(s, emit, ctx);
  // Its turn may have come meanwhile; then the first branches above take it (no recursion
  // deeper than this one: seq is no longer above last + 1).
  if (seq <= s.last + 1) return admit(in, emit, ctx);
  pos = std::lower_bound(s.held.begin(), s.held.end(), seq, by_seq);
  if (s.held.size() >= lim_.max_held || held_bytes_ + in.len > lim_.max_held_bytes) {
    ++c_.refused;
    return Verdict::refused;
  }
  Held h;
  h.seq = seq;
  h.rseq = rel->rseq;
  h.len = in.len;
  h.bytes = std::make_unique<std::uint8_t[]>(in.len);
  std::memcpy(h.bytes.get(), in.buf + in.off, in.len);
  s.held.insert(pos, std::move(h));
  held_bytes_ += in.len;
  ++held_count_;
  ++c_.held;
  return Verdict::held;
}

}  // namespace tmc::detail
