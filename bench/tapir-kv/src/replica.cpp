#include "replica.hpp"

namespace tapir {

void Replica::on_message(std::uint32_t from, Bytes msg, Nanos) {
  if (!decode(msg, in_)) {
    ++stats_.malformed;
    return;
  }
  handle(from, in_);
}

bool Replica::finalized(const OpId& opid) const {
  auto it = record_.find(opid);
  return it != record_.end() && it->second.state == State::finalized;
}

void Replica::send(std::uint32_t client, const IrMessage& m) {
  encode(m, buf_);
  ++stats_.sent[static_cast<std::size_t>(m.type)];
  net_.send_to_client(client, buf_, m.type);
}

void Replica::execute_inconsistent(const Request& op) {
  if (op.op == OpCode::commit) store_.commit(op.txnid, op.ts, op.txn);
  else if (op.op == OpCode::abort) store_.abort(op.txnid);
}

void Replica::handle(std::uint32_t from, const IrMessage& m) {
  ++stats_.received[static_cast<std::size_t>(m.type)];
  out_.view = view_;
  out_.replica = index_;
  out_.opid = m.opid;
  switch (m.type) {
    case MsgType::propose_inconsistent: {
      auto [it, fresh] = record_.try_emplace(m.opid);
      Entry& e = it->second;
      if (fresh || !e.proposed) {
        e.kind = Kind::inconsistent;
        e.op = m.request;
        e.proposed = true;
      } else {
        ++stats_.duplicates;
      }
      out_.type = MsgType::reply_inconsistent;
      out_.finalized = e.state == State::finalized;
      send(from, out_);
      if (e.finalize_early && e.state == State::tentative) {
        // Its Finalize overtook it (e.g. a repaired Propose behind the Finalize): the
        // client has decided already, so finalize now instead of waiting for its resend.
        e.finalize_early = false;
        e.state = State::finalized;
        execute_inconsistent(e.op);
        e.op = Request{};
        out_.type = MsgType::confirm;
        out_.finalized = true;
        send(from, out_);
      }
      return;
    }
    case MsgType::finalize_inconsistent: {
      auto it = record_.find(m.opid);
      if (it == record_.end() || !it->second.proposed) {
        // Not proposed here yet: remember it and stay silent; the Propose finalizes it
        // when it comes (or the client resends, and sync-lite re-proposes).
        ++stats_.early_finalizes;
        Entry& e = record_[m.opid];
        e.kind = Kind::inconsistent;
        e.proposed = false;
        e.finalize_early = true;
        return;
      }
      if (it->second.state == State::tentative) {
        it->second.state = State::finalized;
        execute_inconsistent(it->second.op);
        it->second.op = Request{};
      }
      out_.type = MsgType::confirm;
      out_.finalized = true;
      send(from, out_);
      return;
    }
    case MsgType::propose_consensus: {
      auto [it, fresh] = record_.try_emplace(m.opid);
      if (fresh) {
        it->second.kind = Kind::consensus;
        PrepareCheck check = PrepareCheck::ok;
        it->second.result = m.request.op == OpCode::prepare
                                ? store_.prepare(m.request.txnid, m.request.txn, m.request.ts, &check)
                                : Reply{Status::fail, {}, {}};
        ++stats_.prepare_checks[static_cast<std::size_t>(check)];
      } else {
        ++stats_.duplicates;
      }
      out_.type = MsgType::reply_consensus;
      out_.finalized = it->second.state == State::finalized;
      out_.result = it->second.result;
      send(from, out_);
      return;
    }
    case MsgType::finalize_consensus: {
      auto [it, fresh] = record_.try_emplace(m.opid);
      if (fresh) {
        // Finalized before its Propose arrived: record the decided result without
        // executing; a late Propose then answers it, marked finalized.
        ++stats_.early_finalizes;
        it->second.kind = Kind::consensus;
      }
      it->second.state = State::finalized;
      it->second.result = m.result;
      out_.type = MsgType::confirm;
      out_.finalized = true;
      send(from, out_);
      return;
    }
    case MsgType::unlogged: {
      out_.type = MsgType::unlogged_reply;
      out_.result = m.request.has_ts ? store_.get_at(m.request.key, m.request.ts) : store_.get(m.request.key);
      send(from, out_);
      return;
    }
    case MsgType::reply_inconsistent:
    case MsgType::reply_consensus:
    case MsgType::confirm:
    case MsgType::unlogged_reply:
      ++stats_.malformed;  // a client's message type sent to a replica
      return;
  }
}

}  // namespace tapir
