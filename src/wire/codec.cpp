// The wire codec: sealing on the send path, validation on the receive path.
// decode() is the single parser of network bytes; it is fuzzed (tests/fuzz/fuzz_decode.cpp).
#include <new>
#include <cstring>

#include "tmc/packet.hpp"

namespace tmc {

std::uint8_t* Packet::push_ext(wire::Ext type, std::uint8_t body_len) noexcept {
  const std::uint32_t need = wire::kExtHeaderBytes + body_len;
  // The base header must still fit in front once the extension is in.
  if (sealed || n_ext >= wire::kMaxExtensions || off < need + wire::kBaseHeaderBytes) return nullptr;
  off -= need;
  len += need;
  std::uint8_t* h = buf + off;
  h[0] = static_cast<std::uint8_t>(type);
  h[1] = body_len;
  ext_type[n_ext] = static_cast<std::uint8_t>(type);
  ext_len[n_ext] = body_len;
  ext_body[n_ext] = static_cast<std::uint16_t>(off + wire::kExtHeaderBytes);
  ++n_ext;
  return h + wire::kExtHeaderBytes;
}

void Packet::seal() noexcept {
  if (sealed) return;
  const std::uint32_t ext_bytes = payload_off - off;
  off -= static_cast<std::uint32_t>(wire::kBaseHeaderBytes);
  len += static_cast<std::uint32_t>(wire::kBaseHeaderBytes);
  std::uint8_t* h = buf + off;
  wire::put_u16(h + 0, wire::kMagic);
  h[2] = wire::kVersion;
  h[3] = static_cast<std::uint8_t>(kind);
  wire::put_u16(h + 4, flags);
  wire::put_u16(h + 6, static_cast<std::uint16_t>(ext_bytes));
  wire::put_u32(h + 8, channel);
  wire::put_u32(h + 12, sender);
  wire::put_u32(h + 16, epoch);
  wire::put_u32(h + 20, payload_len);
  sealed = true;
}

void Packet::unseal() noexcept {
  if (!sealed) return;
  off += static_cast<std::uint32_t>(wire::kBaseHeaderBytes);
  len -= static_cast<std::uint32_t>(wire::kBaseHeaderBytes);
  sealed = false;
}

void Packet::reset_for_send(std::uint32_t payload_bytes) noexcept {
  off = kHeadroom;
  len = payload_bytes;
  payload_off = kHeadroom;
  payload_len = payload_bytes;
  kind = wire::Kind::data;
  flags = 0;
  channel = sender = epoch = 0;
  sealed = false;
  n_ext = 0;
  seq = 0;
  token = 0;
  token_first = 0;
  wants_outcome = false;
  lifetime_ns = 0;
  expires_ns = 0;
  gap_cause = 0;
  rseq = 0;
  rx_ns = 0;
  src_ip = dst_ip = 0;
  src_port = dst_port = 0;
  next = nullptr;
}

void Packet::reset_for_receive() noexcept {
  reset_for_send(0);
  off = 0;
  payload_off = 0;
}

void Packet::release() noexcept {
  if (pool != nullptr) pool->free(this);
}

namespace wire {

const char* decode_error_name(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::none: return "none";
    case DecodeError::too_short: return "too_short";
    case DecodeError::bad_magic: return "bad_magic";
    case DecodeError::bad_version: return "bad_version";
    case DecodeError::bad_kind: return "bad_kind";
    case DecodeError::bad_flags: return "bad_flags";
    case DecodeError::bad_length: return "bad_length";
    case DecodeError::bad_extension: return "bad_extension";
    case DecodeError::duplicate_extension: return "duplicate_extension";
  }
  return "unknown";
}

DecodeError decode(Packet& p) noexcept {
  // Every read below is preceded by a check against `n`, the bytes we were given.
  const std::uint32_t n = p.len;
  if (n < kBaseHeaderBytes || p.off > p.cap || n > p.cap - p.off) return DecodeError::too_short;
  const std::uint8_t* h = p.buf + p.off;
  if (get_u16(h) != kMagic) return DecodeError::bad_magic;
  if (h[2] != kVersion) return DecodeError::bad_version;
  if (h[3] > kMaxKind) return DecodeError::bad_kind;
  const std::uint16_t flags = get_u16(h + 4);
  if ((flags & ~kKnownFlags) != 0) return DecodeError::bad_flags;
  const std::uint32_t ext_bytes = get_u16(h + 6);
  const std::uint32_t payload_len = get_u32(h + 20);
  const std::uint64_t expect = std::uint64_t{kBaseHeaderBytes} + ext_bytes + payload_len +
                               ((flags & kFlagCrc) != 0 ? kTrailerBytes : 0);
  if (expect != n) return DecodeError::bad_length;

  p.n_ext = 0;
  std::uint32_t at = static_cast<std::uint32_t>(kBaseHeaderBytes);
  const std::uint32_t ext_end = at + ext_bytes;
  while (at < ext_end) {
    if (ext_end - at < kExtHeaderBytes) return DecodeError::bad_extension;
    const std::uint8_t type = h[at];
    const std::uint8_t body = h[at + 1];
    if (type == 0 || body > ext_end - at - kExtHeaderBytes) return DecodeError::bad_extension;
    if (p.n_ext >= kMaxExtensions) return DecodeError::bad_extension;
    for (std::uint8_t i = 0; i < p.n_ext; ++i) {
      if (p.ext_type[i] == type) return DecodeError::duplicate_extension;
    }
    p.ext_type[p.n_ext] = type;
    p.ext_len[p.n_ext] = body;
    p.ext_body[p.n_ext] = static_cast<std::uint16_t>(p.off + at + kExtHeaderBytes);
    ++p.n_ext;
    at += kExtHeaderBytes + body;
  }

  p.kind = static_cast<Kind>(h[3]);
  p.flags = flags;
  p.channel = get_u32(h + 8);
  p.sender = get_u32(h + 12);
  p.epoch = get_u32(h + 16);
  p.payload_off = p.off + ext_end;
  p.payload_len = payload_len;
  p.sealed = true;
  return DecodeError::none;
}

}  // namespace wire

// ---------------------------------------------------------------------------------------

PacketPool::PacketPool(std::uint32_t buffer_bytes, std::uint32_t initial, std::uint32_t max_packets)
    : buffer_bytes_(buffer_bytes), max_packets_(max_packets) {
  grow(initial);
}

PacketPool::~PacketPool() = default;

// One chunk of `n` packets with buffers of `bytes` each, pushed onto `list`.
bool PacketPool::grow_list(std::uint32_t n, std::uint32_t bytes, Packet*& list) noexcept {
  if (n == 0 || total_ >= max_packets_) return false;
  if (n > max_packets_ - total_) n = max_packets_ - total_;
  try {
    auto packets = std::make_unique<Packet[]>(n);
    auto chunk = std::make_unique<std::uint8_t[]>(std::size_t{n} * bytes);
    for (std::uint32_t i = 0; i < n; ++i) {
      Packet& p = packets[i];
      p.buf = chunk.get() + std::size_t{i} * bytes;
      p.cap = bytes;
      p.pool = this;
      p.next = list;
      list = &p;
    }
    packet_chunks_.push_back(std::move(packets));
    byte_chunks_.push_back(std::move(chunk));
  } catch (...) {
    return false;
  }
  total_ += n;
  return true;
}

bool PacketPool::grow(std::uint32_t n) noexcept { return grow_list(n, buffer_bytes_, free_); }

Packet* PacketPool::alloc() noexcept {
  if (free_ == nullptr) {
    // Grow geometrically (never per message): amortised over many allocations.
    if (!grow(total_ < 64 ? 64 : total_)) return nullptr;
  }
  Packet* p = free_;
  free_ = p->next;
  p->next = nullptr;
  ++in_use_;
  return p;
}

bool PacketPool::grow_small(std::uint32_t n) noexcept {
  const std::uint32_t before = total_;
  const bool ok = grow_list(n, kSmallPacketBytes, free_small_);
  small_total_ += total_ - before;
  return ok;
}

Packet* PacketPool::alloc_small() noexcept {
  if (buffer_bytes_ <= kSmallPacketBytes) return alloc();
  if (free_small_ == nullptr) {
    // Geometric, like grow(): amortised over many allocations, never per message.
    if (!grow_small(small_total_ < 64 ? 64 : small_total_)) return alloc();
  }
  Packet* p = free_small_;
  free_small_ = p->next;
  p->next = nullptr;
  ++in_use_;
  return p;
}

Packet* PacketPool::alloc_large(std::uint32_t payload_bytes) noexcept {
  const std::uint64_t bytes = large_cost(payload_bytes);
  if (bytes > 0xFFFFFFFFull) return nullptr;
  if (large_bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes > large_budget_) {
    large_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    return nullptr;
  }
  Packet* p = new (std::nothrow) Packet;
  if (p != nullptr) p->buf = new (std::nothrow) std::uint8_t[bytes];
  if (p == nullptr || p->buf == nullptr) {
    delete p;
    large_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    return nullptr;
  }
  p->cap = static_cast<std::uint32_t>(bytes);
  p->pool = this;
  p->large = true;
  p->reset_for_send(payload_bytes);
  return p;
}

void PacketPool::free(Packet* p) noexcept {
  if (p->large) {
    large_bytes_.fetch_sub(p->cap, std::memory_order_relaxed);
    delete[] p->buf;
    delete p;
    return;
  }
  if (p->cap == kSmallPacketBytes && buffer_bytes_ > kSmallPacketBytes) {
    p->next = free_small_;
    free_small_ = p;
  } else {
    p->next = free_;
    free_ = p;
  }
  --in_use_;
}

Packet* PacketPool::clone(const Packet& src) noexcept {
  Packet* p = src.cap > buffer_bytes_ ? alloc_large(src.cap - kHeadroom - wire::kTrailerBytes) : alloc();
  if (p == nullptr) return nullptr;
  std::uint8_t* buf = p->buf;
  const std::uint32_t cap = p->cap;
  const bool large = p->large;
  *p = src;
  p->buf = buf;
  p->cap = cap;
  p->large = large;
  p->pool = this;
  p->next = nullptr;
  // Copy only the live bytes: the datagram (or, before sealing, extensions + payload).
  const std::uint32_t begin = src.off < src.payload_off ? src.off : src.payload_off;
  std::uint32_t end = src.off + src.len;
  if (src.payload_off + src.payload_len > end) end = src.payload_off + src.payload_len;
  if (end > cap || end > src.cap || begin > end) {
    free(p);
    return nullptr;
  }
  std::memcpy(buf + begin, src.buf + begin, end - begin);
  return p;
}

}  // namespace tmc
