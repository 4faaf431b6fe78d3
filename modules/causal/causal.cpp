// ordering.causal — causal delivery: a message is delivered only after every message that
// happened before it (ISIS CBCAST, Birman, Schiper and Stephenson 1991).
//
// Rule
//   Each member keeps a vector VT: for every sender, how many of its messages it has
//   delivered (its own entry: how many it has sent). Sending a data message increments
//   the own entry and stamps the message with VT. A message m from j is delivered when
//   VT(m)[j] = VT[j] + 1 (the next from j) and VT(m)[k] <= VT[k] for every other k (all
//   that j had delivered when it sent m is delivered here too); then VT[j] += 1. Until
//   then it waits in a bounded buffer; each delivery re-examines what waits. Messages
//   that are not causally related (concurrent) are delivered in whatever order they
//   become deliverable, which may differ between members.
//
// Wire
//   Extension 201 on every data message this stage stamps: n entries of u32 sender id,
//   u32 count (n <= 16, only senders with a count above 0; 8 n bytes). Control kinds,
//   messages flagged unordered and unstamped messages pass straight through.
//
// Needs reliability below
//   The rule waits for every message a delivery depends on; a message that never comes
//   holds its dependants until `hold_us`. Place reliability.arq below (requires_below) so
//   that nothing is lost; the stage also drops duplicates (a count already delivered).
//
// Bounds and the give-up policy
//   At most `window` messages wait. When the buffer is full, or the oldest waiting message
//   has waited `hold_us`, the stage gives up on what that message waits for: for each
//   sender k whose messages VT[k]+1 .. VT(m)[k] are missing (for j: up to VT(m)[j]-1) it
//   raises one gap_skipped event (sender k, seq VT[k]+1, count) and moves VT[k] past them,
//   then delivers m and whatever that unblocks. Those messages, should they arrive later,
//   are dropped as stale: every message is delivered once or inside a reported gap.
//   At most 16 senders are tracked (their entries fit the extension); a message from
//   another sender passes up unordered (counted), and so does a message naming more.
//   A sender seen with a new epoch restarted: its waiting messages are released (gaps
//   skipped) and its count starts over. Memory is fixed at configure: the buffer and the
//   16-entry vector; nothing is allocated per message.
#include "causal/causal.hpp"

#include <algorithm>
#include <limits>
#include <memory>
#include <vector>

namespace tmc::modules {
namespace {

constexpr std::string_view kKind = "ordering.causal";
constexpr auto kExt = static_cast<wire::Ext>(kCausalExt);
constexpr std::uint32_t kNone = 0xFFFFFFFFu;

#define TMC_CAUSAL_COUNTERS(X, P)                                                                                      \
  X(P, stamped, "data messages stamped with the vector timestamp on send")                                             \
  X(P, delivered_at_once, "received messages deliverable on arrival")                                                  \
  X(P, held, "received messages put in the buffer to wait for what they depend on")                                    \
  X(P, released, "held messages delivered once their dependencies were delivered")                                     \
  X(P, forced, "held messages delivered after giving up on a dependency (buffer full or hold_us)")                     \
  X(P, gaps_skipped, "gap_skipped events raised by giving up")                                                         \
  X(P, seqs_skipped, "messages given up on (counted in the gaps)")                                                     \
  X(P, stale_dropped, "messages dropped: their count was delivered or given up already")                               \
  X(P, duplicates_dropped, "messages dropped: the same message is already held")                                       \
  X(P, unordered,                                                                                                      \
    "messages not ordered: received unstamped, flagged unordered or beyond 16 senders, or sent unstamped for lack of " \
    "headroom")                                                                                                        \
  X(P, malformed, "messages with a malformed timestamp, passed up unordered")                                          \
  X(P, epoch_changes, "senders seen with a new epoch (restarted)")
TMC_STAGE_COUNTERS("ordering.causal_", TMC_CAUSAL_COUNTERS);

struct Entry {
  std::uint32_t id = 0;
  std::uint32_t epoch = 0;
  std::uint64_t count = 0;  ///< messages delivered (own entry: sent)
  bool used = false;
  bool epoch_known = true;  ///< false: added from another's timestamp, not heard from yet
};

struct Held {
  Packet* p = nullptr;
  std::uint32_t from = kNone;  ///< index into the vector
  std::uint64_t at_ns = 0;
};

class CausalStage final : public Stage {
 public:
  ~CausalStage() override {
    for (auto& h : held_) {
      if (h.p != nullptr) h.p->release();
    }
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)errors;
    env_ = env;
    window_ = static_cast<std::uint32_t>(params.integer("window"));
    hold_ns_ = static_cast<std::uint64_t>(params.integer("hold_us")) * 1000;
    held_.assign(window_, Held{});
    vt_[0] = Entry{.id = env.sender, .epoch = env.epoch, .count = 0, .used = true};
    return true;
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return n_held_; }
  [[nodiscard]] std::size_t max_held_packets() const noexcept override { return window_; }

  // --- send ---------------------------------------------------------------------------

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->kind != wire::Kind::data || (p->flags & wire::kFlagUnordered) != 0) {
      io.down(p);
      return;
    }
    std::uint32_t n = 0;
    for (const Entry& e : vt_) n += e.used && (e.count > 0 || &e == &vt_[0]) ? 1 : 0;
    std::uint8_t* b = p->push_ext(kExt, static_cast<std::uint8_t>(n * kCausalEntryBytes));
    if (b == nullptr) {
      // No headroom: send it unstamped (receivers pass it up unordered) rather than lose it.
      io.count(unordered);
      io.down(p);
      return;
    }
    ++vt_[0].count;
    for (const Entry& e : vt_) {
      if (!e.used || (e.count == 0 && &e != &vt_[0])) continue;
      wire::put_u32(b, e.id);
      wire::put_u32(b + 4, static_cast<std::uint32_t>(e.count));
      b += kCausalEntryBytes;
    }
    io.count(stamped);
    io.down(p);
  }

  // --- receive ------------------------------------------------------------------------

  void on_receive(Packet* p, StageIo& io) noexcept override {
    std::uint8_t len = 0;
    const std::uint8_t* body = p->kind == wire::Kind::data ? p->ext(kExt, &len) : nullptr;
    if (body == nullptr || (p->flags & wire::kFlagUnordered) != 0) {
      if (p->kind == wire::Kind::data) io.count(unordered);
      io.up(p);
      return;
    }
    if (len % kCausalEntryBytes != 0 || len / kCausalEntryBytes > kCausalMaxSenders) {
      io.count(malformed);
      io.up(p);
      return;
    }
    const std::uint32_t j = entry_for(p->sender, p->epoch, io);
    std::uint64_t own = 0;
    if (j == kNone || !timestamp_of(*p, p->sender, own) || own == 0) {
      io.count(j == kNone ? unordered : malformed);
      io.up(p);
      return;
    }
    if (own <= vt_[j].count) {
      io.count(stale_dropped);
      io.drop(p, DropReason::stale);
      return;
    }
    if (deliverable(*p, j)) {
      io.count(delivered_at_once);
      deliver(p, j, io);
      release(io);
      return;
    }
    hold(p, j, own, io);
  }

  void on_tick(StageIo& io) noexcept override {
    armed_ns_ = 0;
    const std::uint64_t now = io.now_ns();
    for (;;) {
      const std::uint32_t o = oldest();
      if (o == kNone || held_[o].at_ns + hold_ns_ > now) break;
      force(o, io);
      release(io);
    }
    arm(io);
  }

 private:
  // --- the vector ---------------------------------------------------------------------

  // The entry of sender `id`, added if new; kNone when the vector is full. A new epoch of a
  // known sender restarts its count, after releasing what of it waits.
  std::uint32_t entry_for(std::uint32_t id, std::uint32_t epoch, StageIo& io) noexcept {
    std::uint32_t free = kNone;
    for (std::uint32_t i = 1; i < kCausalMaxSenders; ++i) {
      Entry& e = vt_[i];
      if (!e.used) {
        if (free == kNone) free = i;
        continue;
      }
      if (e.id != id) continue;
      if (!e.epoch_known) {
        e.epoch = epoch;
        e.epoch_known = true;
      } else if (e.epoch != epoch) {
        io.count(epoch_changes);
        io.notify(Event{.type = EventType::epoch_changed, .sender = id, .epoch = epoch, .stage = kKind});
        for (std::uint32_t h = 0; h < window_; ++h) {
          if (held_[h].p != nullptr && held_[h].from == i) force(h, io);
        }
        e.epoch = epoch;
        e.count = 0;
        release(io);
      }
      return i;
    }
    if (free == kNone) return kNone;
    vt_[free] = Entry{.id = id, .epoch = epoch, .count = 0, .used = true};
    return free;
  }

  [[nodiscard]] std::uint32_t find(std::uint32_t id) const noexcept {
    for (std::uint32_t i = 0; i < kCausalMaxSenders; ++i) {
      if (vt_[i].used && vt_[i].id == id) return i;
    }
    return kNone;
  }

  // VT(m)[id] into `out` (0 when m does not name it); false when m names an id twice.
  static bool timestamp_of(const Packet& p, std::uint32_t id, std::uint64_t& out) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p.ext(kExt, &len);
    out = 0;
    bool found = false;
    for (std::uint32_t at = 0; at + kCausalEntryBytes <= len; at += kCausalEntryBytes) {
      if (wire::get_u32(b + at) != id) continue;
      if (found) return false;
      found = true;
      out = wire::get_u32(b + at + 4);
    }
    return true;
  }

  // CBCAST's condition: the next from j, and nothing from anyone else it depends on missing.
  [[nodiscard]] bool deliverable(const Packet& p, std::uint32_t j) const noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p.ext(kExt, &len);
    for (std::uint32_t at = 0; at + kCausalEntryBytes <= len; at += kCausalEntryBytes) {
      const std::uint32_t id = wire::get_u32(b + at);
      const std::uint64_t c = wire::get_u32(b + at + 4);
      if (id == vt_[j].id) {
        if (c != vt_[j].count + 1) return false;
        continue;
      }
      if (id == env_.sender) continue;  // our own messages: delivered (sent) before anyone saw them
      const std::uint32_t k = find(id);
      const std::uint64_t have = k == kNone ? 0 : vt_[k].count;
      if (c > have) return false;
    }
    return true;
  }

  void deliver(Packet* p, std::uint32_t j, StageIo& io) noexcept {
    ++vt_[j].count;
    io.up(p);
  }

  // --- the buffer ---------------------------------------------------------------------

  void hold(Packet* p, std::uint32_t j, std::uint64_t own, StageIo& io) noexcept {
    for (std::uint32_t h = 0; h < window_; ++h) {
      if (held_[h].p == nullptr || held_[h].from != j) continue;
      std::uint64_t c = 0;
      (void)timestamp_of(*held_[h].p, vt_[j].id, c);
      if (c == own) {
        io.count(duplicates_dropped);
        io.drop(p, DropReason::duplicate);
        return;
      }
    }
    if (n_held_ == window_) {
      // Full: give up on what the oldest waits for, then take its place.
      force(oldest(), io);
      release(io);
      // What that released may have made `p` deliverable, or stale.
      if (own <= vt_[j].count) {
        io.count(stale_dropped);
        io.drop(p, DropReason::stale);
        return;
      }
      if (deliverable(*p, j)) {
        io.count(delivered_at_once);
        deliver(p, j, io);
        release(io);
        return;
      }
    }
    for (std::uint32_t h = 0; h < window_; ++h) {
      if (held_[h].p != nullptr) continue;
      held_[h] = Held{.p = p, .from = j, .at_ns = io.now_ns()};
      ++n_held_;
      io.count(held);
      break;
    }
    arm(io);
  }

  // Deliver every held message that has become deliverable, until none has.
  void release(StageIo& io) noexcept {
    bool progress = n_held_ > 0;
    while (progress) {
      progress = false;
      for (std::uint32_t h = 0; h < window_ && n_held_ > 0; ++h) {
        Held& x = held_[h];
        if (x.p == nullptr) continue;
        std::uint64_t own = 0;
        (void)timestamp_of(*x.p, vt_[x.from].id, own);
        if (own <= vt_[x.from].count) {  // given up on meanwhile
          Packet* p = take(h);
          io.count(stale_dropped);
          io.drop(p, DropReason::stale);
          continue;
        }
        if (!deliverable(*x.p, x.from)) continue;
        const std::uint32_t j = x.from;
        Packet* p = take(h);
        io.count(released);
        deliver(p, j, io);
        progress = true;
      }
    }
  }

  // Give up on what held message `h` waits for (one gap_skipped per sender), deliver it.
  void force(std::uint32_t h, StageIo& io) noexcept {
    const std::uint32_t j = held_[h].from;
    Packet* p = take(h);
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(kExt, &len);
    for (std::uint32_t at = 0; at + kCausalEntryBytes <= len; at += kCausalEntryBytes) {
      const std::uint32_t id = wire::get_u32(b + at);
      if (id == env_.sender) continue;
      std::uint64_t want = wire::get_u32(b + at + 4);
      std::uint32_t k = id == vt_[j].id ? j : find(id);
      if (k == j) want -= 1;  // m itself is the next from j
      if (k == kNone) {
        k = entry_for(id, 0, io);  // a sender we never heard from: track it to skip past
        if (k == kNone) continue;
        vt_[k].epoch_known = false;
      }
      if (want > vt_[k].count) {
        io.count(gaps_skipped);
        io.count(seqs_skipped, want - vt_[k].count);
        io.notify(Event{.type = EventType::gap_skipped,
                        .sender = id,
                        .epoch = vt_[k].epoch,
                        .seq = vt_[k].count + 1,
                        .count = want - vt_[k].count,
                        .stage = kKind});
        vt_[k].count = want;
      }
    }
    io.count(forced);
    deliver(p, j, io);
  }

  Packet* take(std::uint32_t h) noexcept {
    Packet* p = held_[h].p;
    held_[h] = Held{};
    --n_held_;
    return p;
  }

  [[nodiscard]] std::uint32_t oldest() const noexcept {
    std::uint32_t o = kNone;
    for (std::uint32_t h = 0; h < window_; ++h) {
      if (held_[h].p != nullptr && (o == kNone || held_[h].at_ns < held_[o].at_ns)) o = h;
    }
    return o;
  }

  void arm(StageIo& io) noexcept {
    const std::uint32_t o = oldest();
    if (o == kNone) {
      if (armed_ns_ != 0) io.cancel_timer();
      armed_ns_ = 0;
      return;
    }
    const std::uint64_t due = held_[o].at_ns + hold_ns_;
    if (due != armed_ns_) {
      armed_ns_ = due;
      io.arm_timer(due);
    }
  }

  StageEnv env_;
  std::uint32_t window_ = 256;
  std::uint64_t hold_ns_ = 0;
  Entry vt_[kCausalMaxSenders];  ///< [0] is this member
  std::vector<Held> held_;       ///< `window` slots, fixed at configure
  std::uint32_t n_held_ = 0;
  std::uint64_t armed_ns_ = 0;
};

}  // namespace

StageInfo causal_info() {
  return StageInfo{
      .kind = kKind,
      .synopsis = "Causal ordering (ISIS CBCAST): a message is delivered only after every message that happened "
                  "before it; concurrent messages in any order.",
      .notes =
          "Every data message carries the sender's vector timestamp (extension 201: up to 16 entries of u32 sender, "
          "u32 count, only senders with a count above 0). A message from j is delivered when it is the next from j "
          "and everything j had delivered when sending it is delivered here; otherwise it waits in a buffer of "
          "`window` messages. When the buffer is full or the oldest has waited `hold_us`, the stage gives up on "
          "what it waits for: one `gap_skipped` event per sender whose messages are missing, those counts skipped "
          "(later arrivals dropped as stale), and the message delivered. Needs reliability.arq below so that "
          "nothing is lost and the give-up never happens in normal operation. At most 16 senders are tracked; "
          "messages of others, unstamped ones and those flagged unordered pass up untouched. A sender with a new "
          "epoch restarted: what of it waits is released and its count starts over.",
      .params = {{.name = "window",
                  .type = ParamType::integer,
                  .default_value = "256",
                  .doc = "Messages waiting for their causal predecessors at most.",
                  .min = 1,
                  .max = 65536},
                 {.name = "hold_us",
                  .type = ParamType::integer,
                  .default_value = "2000000",
                  .doc = "Longest a message waits before the stage gives up on what it depends on, in microseconds.",
                  .min = 1,
                  .max = 3'600'000'000}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<CausalStage>(); },
      .wire_bytes_per_datagram = wire::kExtHeaderBytes + kCausalMaxSenders * kCausalEntryBytes,
      .requires_below = {"reliability.arq"},
      .per_message = true,
      .extensions = {WireExtension{.type = kCausalExt,
                                   .name = "causal",
                                   .body_bytes = kCausalMaxSenders * kCausalEntryBytes,
                                   .carried_on = "data",
                                   .body = "vector timestamp: up to 16 entries of u32 sender id, u32 messages "
                                           "delivered (8 bytes each)"}},
      .layer = StageLayer::ordering,
  };
}

}  // namespace tmc::modules
