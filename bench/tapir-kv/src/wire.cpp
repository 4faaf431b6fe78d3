#include "wire.hpp"

#include <cstring>

namespace tapir {

const char* status_name(Status s) {
  switch (s) {
    case Status::ok: return "OK";
    case Status::fail: return "FAIL";
    case Status::retry: return "RETRY";
    case Status::abstain: return "ABSTAIN";
    case Status::timeout: return "TIMEOUT";
  }
  return "?";
}

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::propose_inconsistent: return "propose_inconsistent";
    case MsgType::reply_inconsistent: return "reply_inconsistent";
    case MsgType::finalize_inconsistent: return "finalize_inconsistent";
    case MsgType::propose_consensus: return "propose_consensus";
    case MsgType::reply_consensus: return "reply_consensus";
    case MsgType::finalize_consensus: return "finalize_consensus";
    case MsgType::confirm: return "confirm";
    case MsgType::unlogged: return "unlogged";
    case MsgType::unlogged_reply: return "unlogged_reply";
  }
  return "?";
}

void Writer::u32(std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void Writer::u64(std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void Writer::str(std::string_view s) {
  u32(static_cast<std::uint32_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}

bool Reader::u8(std::uint8_t& v) {
  if (in_.size() - pos_ < 1) return false;
  v = in_[pos_++];
  return true;
}
bool Reader::u32(std::uint32_t& v) {
  if (in_.size() - pos_ < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(in_[pos_ + i]) << (8 * i);
  pos_ += 4;
  return true;
}
bool Reader::u64(std::uint64_t& v) {
  if (in_.size() - pos_ < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in_[pos_ + i]) << (8 * i);
  pos_ += 8;
  return true;
}
bool Reader::str(std::string& s) {
  std::uint32_t n = 0;
  if (!u32(n) || in_.size() - pos_ < n) return false;
  s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  return true;
}

namespace {

constexpr std::uint32_t kMaxSetEntries = 1024;

void put_opid(Writer& w, const OpId& o) {
  w.u64(o.client);
  w.u64(o.req);
}
bool get_opid(Reader& r, OpId& o) { return r.u64(o.client) && r.u64(o.req); }

void put_txn(Writer& w, const Txn& t) {
  w.u32(static_cast<std::uint32_t>(t.reads.size()));
  for (const auto& e : t.reads) {
    w.str(e.key);
    w.ts(e.version);
  }
  w.u32(static_cast<std::uint32_t>(t.writes.size()));
  for (const auto& e : t.writes) {
    w.str(e.key);
    w.str(e.value);
  }
}
bool get_txn(Reader& r, Txn& t) {
  std::uint32_t n = 0;
  if (!r.u32(n) || n > kMaxSetEntries) return false;
  t.reads.resize(n);
  for (auto& e : t.reads)
    if (!r.str(e.key) || !r.ts(e.version)) return false;
  if (!r.u32(n) || n > kMaxSetEntries) return false;
  t.writes.resize(n);
  for (auto& e : t.writes)
    if (!r.str(e.key) || !r.str(e.value)) return false;
  return true;
}

void put_request(Writer& w, const Request& q) {
  w.u8(static_cast<std::uint8_t>(q.op));
  w.u64(q.txnid);
  w.str(q.key);
  w.u8(q.has_ts ? 1 : 0);
  w.ts(q.ts);
  put_txn(w, q.txn);
}
bool get_request(Reader& r, Request& q) {
  std::uint8_t op = 0, has_ts = 0;
  if (!r.u8(op) || op < 1 || op > 4) return false;
  q.op = static_cast<OpCode>(op);
  if (!r.u64(q.txnid) || !r.str(q.key) || !r.u8(has_ts) || !r.ts(q.ts)) return false;
  q.has_ts = has_ts != 0;
  return get_txn(r, q.txn);
}

void put_reply(Writer& w, const Reply& p) {
  w.u8(static_cast<std::uint8_t>(p.status));
  w.str(p.value);
  w.ts(p.ts);
}
bool get_reply(Reader& r, Reply& p) {
  std::uint8_t s = 0;
  if (!r.u8(s) || s > 4) return false;
  p.status = static_cast<Status>(s);
  return r.str(p.value) && r.ts(p.ts);
}

}  // namespace

void encode(const IrMessage& m, std::vector<std::uint8_t>& out) {
  Writer w(out);
  w.u8(static_cast<std::uint8_t>(m.type));
  switch (m.type) {
    case MsgType::propose_inconsistent:
    case MsgType::propose_consensus:
    case MsgType::unlogged:
      put_opid(w, m.opid);
      put_request(w, m.request);
      break;
    case MsgType::reply_inconsistent:
    case MsgType::confirm:
      w.u64(m.view);
      w.u32(m.replica);
      put_opid(w, m.opid);
      w.u8(m.finalized ? 1 : 0);
      break;
    case MsgType::reply_consensus:
      w.u64(m.view);
      w.u32(m.replica);
      put_opid(w, m.opid);
      w.u8(m.finalized ? 1 : 0);
      put_reply(w, m.result);
      break;
    case MsgType::finalize_inconsistent:
      put_opid(w, m.opid);
      break;
    case MsgType::finalize_consensus:
      put_opid(w, m.opid);
      put_reply(w, m.result);
      break;
    case MsgType::unlogged_reply:
      w.u32(m.replica);
      put_opid(w, m.opid);
      put_reply(w, m.result);
      break;
  }
}

bool peek_opid(Bytes in, MsgType& type, OpId& opid) {
  Reader r(in);
  std::uint8_t t = 0;
  if (!r.u8(t) || t < 1 || t >= kMsgTypes) return false;
  type = static_cast<MsgType>(t);
  std::uint64_t view = 0;
  std::uint32_t replica = 0;
  switch (type) {
    case MsgType::reply_inconsistent:
    case MsgType::confirm:
    case MsgType::reply_consensus:
      if (!r.u64(view) || !r.u32(replica)) return false;
      break;
    case MsgType::unlogged_reply:
      if (!r.u32(replica)) return false;
      break;
    default:
      break;
  }
  return get_opid(r, opid);
}

bool decode(Bytes in, IrMessage& m) {
  Reader r(in);
  std::uint8_t t = 0;
  if (!r.u8(t) || t < 1 || t >= kMsgTypes) return false;
  m.type = static_cast<MsgType>(t);
  std::uint8_t fin = 0;
  bool ok = false;
  switch (m.type) {
    case MsgType::propose_inconsistent:
    case MsgType::propose_consensus:
    case MsgType::unlogged:
      ok = get_opid(r, m.opid) && get_request(r, m.request);
      break;
    case MsgType::reply_inconsistent:
    case MsgType::confirm:
      ok = r.u64(m.view) && r.u32(m.replica) && get_opid(r, m.opid) && r.u8(fin);
      break;
    case MsgType::reply_consensus:
      ok = r.u64(m.view) && r.u32(m.replica) && get_opid(r, m.opid) && r.u8(fin) && get_reply(r, m.result);
      break;
    case MsgType::finalize_inconsistent:
      ok = get_opid(r, m.opid);
      break;
    case MsgType::finalize_consensus:
      ok = get_opid(r, m.opid) && get_reply(r, m.result);
      break;
    case MsgType::unlogged_reply:
      ok = r.u32(m.replica) && get_opid(r, m.opid) && get_reply(r, m.result);
      break;
  }
  m.finalized = fin != 0;
  return ok && r.done();
}

}  // namespace tapir
