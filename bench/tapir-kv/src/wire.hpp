// TAPIR-KV wire format: the IR messages of the spec's §2 and the TAPIR requests and
// replies they carry, as small little-endian binary records (one message per datagram or
// per length-prefixed stream frame).
//
// Encoding writes into a caller-owned buffer that is cleared and reused, so a steady-state
// sender allocates nothing per message. Decoding is bounds-checked: a truncated or
// malformed record decodes to false and is dropped by the caller.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "types.hpp"

namespace tapir {

using Bytes = std::span<const std::uint8_t>;

enum class MsgType : std::uint8_t {
  propose_inconsistent = 1,
  reply_inconsistent = 2,
  finalize_inconsistent = 3,
  propose_consensus = 4,
  reply_consensus = 5,
  finalize_consensus = 6,
  confirm = 7,
  unlogged = 8,
  unlogged_reply = 9,
};
inline constexpr int kMsgTypes = 10;
const char* msg_type_name(MsgType t);

enum class OpCode : std::uint8_t { get = 1, prepare = 2, commit = 3, abort = 4 };

/// A TAPIR request (the op of an IR message).
struct Request {
  OpCode op = OpCode::get;
  std::uint64_t txnid = 0;
  std::string key;           ///< get
  bool has_ts = false;       ///< get at a version / prepare / commit
  Timestamp ts;
  Txn txn;                   ///< prepare, commit, abort
};

/// A TAPIR reply (the result of an IR message).
struct Reply {
  Status status = Status::ok;
  std::string value;  ///< get
  Timestamp ts;       ///< get: the version; prepare RETRY: the proposed timestamp
  bool operator==(const Reply& o) const {
    return status == o.status && value == o.value && ts == o.ts;
  }
};

/// Every IR message in one flat record (fields unused by a type stay default).
struct IrMessage {
  MsgType type = MsgType::propose_inconsistent;
  std::uint64_t view = 0;
  std::uint32_t replica = 0;
  OpId opid;
  bool finalized = false;
  Request request;  ///< propose_*, unlogged
  Reply result;     ///< reply_consensus, finalize_consensus, unlogged_reply
};

class Writer {
 public:
  explicit Writer(std::vector<std::uint8_t>& out) : out_(out) { out_.clear(); }
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void ts(const Timestamp& t) {
    u64(t.time);
    u64(t.client);
  }
  void str(std::string_view s);

 private:
  std::vector<std::uint8_t>& out_;
};

class Reader {
 public:
  explicit Reader(Bytes in) : in_(in) {}
  bool u8(std::uint8_t& v);
  bool u32(std::uint32_t& v);
  bool u64(std::uint64_t& v);
  bool ts(Timestamp& t) { return u64(t.time) && u64(t.client); }
  bool str(std::string& s);
  [[nodiscard]] bool done() const { return pos_ == in_.size(); }

 private:
  Bytes in_;
  std::size_t pos_ = 0;
};

/// Encode `m` into `out` (cleared first).
void encode(const IrMessage& m, std::vector<std::uint8_t>& out);
/// Decode into `m` (its strings and vectors are reused); false when malformed.
bool decode(Bytes in, IrMessage& m);
/// Just the type and the opid of an encoded message (no allocation); false when too short.
/// For a transport that matches replies to the requests they answer.
bool peek_opid(Bytes in, MsgType& type, OpId& opid);

}  // namespace tapir
