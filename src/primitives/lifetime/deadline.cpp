// lifetime.deadline — message lifetimes on the wire (as DDS's LIFESPAN).
//
// Synopsis
//   Send: a datagram of a message with a lifetime (Packet::expires_ns, set by the pipeline
//   from the message's own lifetime or the channel's) carries what remains of it, written
//   as it leaves, so time spent queued above (credit, a congestion window, a repair) counts;
//   one whose lifetime ran out on the way down is not sent. Receive: the remaining lifetime
//   becomes the packet's deadline on this member's clock, less the skew; a datagram that
//   arrives with less than the skew left is dropped here, and the pipeline drops at
//   delivery a message whose deadline passed while a stage above held it (ordering,
//   reassembly), so no message is ever delivered after its deadline.
// Params
//   duration_us (int, 0)  every message's lifetime; 0 = only messages that give their own
//                         (read by the pipeline through the plan's traits)
//   skew_us (int, 1000)   bound on the one-way delay plus clock drift over a lifetime
// Wire
//   Ext::lifetime (4 bytes: u32 microseconds left) on data datagrams of messages with a
//   lifetime only; datagrams of other messages, and every datagram of a channel without
//   this stage, carry nothing.
// Notes
//   Remaining time rather than an absolute deadline: receivers need no synchronised clock.
//   A receiver's deadline is arrival + remaining - skew, which is never later than the
//   sender's deadline as long as the datagram's one-way delay (plus the difference in the
//   two clocks' rates over the lifetime) stays within the skew. Reliability above stops
//   repairing an expired message and reports delivery_expired (see reliability.arq).
//   Dropped datagrams are counted here (lifetime.expired_*), not under drops.*.
#include <memory>
#include <string>
#include <vector>

#include "tmc/stage.hpp"
#include "tmc/wire.hpp"

namespace tmc {
namespace {

constexpr std::string_view kKind = "lifetime.deadline";
constexpr std::uint8_t kBodyBytes = 4;
constexpr std::uint64_t kMaxLeftUs = 0xFFFFFFFFu;

#define TMC_LIFETIME_COUNTERS(X, P)                                                                      \
  X(P, stamped, "datagrams sent carrying the lifetime their message has left")                         \
  X(P, expired_sent, "datagrams not sent: their message's lifetime ran out before they left")          \
  X(P, no_room, "datagrams not sent: no headroom for the lifetime extension")                          \
  X(P, expired_received, "datagrams dropped on arrival: less than the skew of their lifetime was left") \
  X(P, expired_at_delivery, "messages dropped at delivery: their deadline passed while a stage held them") \
  X(P, malformed, "lifetime extensions of the wrong length (dropped)")
TMC_STAGE_COUNTERS("lifetime.", TMC_LIFETIME_COUNTERS);

class DeadlineStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)env;
    (void)errors;
    skew_ns_ = static_cast<std::uint64_t>(params.integer("skew_us")) * 1000;
    return true;
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (p->expires_ns == 0 || p->kind != wire::Kind::data) {
      io.down(p);
      return;
    }
    const std::uint64_t now = io.now_ns();
    const std::uint64_t left_us = p->expires_ns > now ? (p->expires_ns - now) / 1000 : 0;
    if (left_us == 0) {
      io.count(expired_sent);
      p->release();
      return;
    }
    std::uint8_t* body = p->push_ext(wire::Ext::lifetime, kBodyBytes);
    if (body == nullptr) {
      // Sent without it, a receiver could deliver the message after its deadline.
      io.count(no_room);
      p->release();
      return;
    }
    wire::put_u32(body, static_cast<std::uint32_t>(left_us < kMaxLeftUs ? left_us : kMaxLeftUs));
    io.count(stamped);
    io.down(p);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    std::uint8_t len = 0;
    const std::uint8_t* body = p->ext(wire::Ext::lifetime, &len);
    if (body == nullptr) {
      io.up(p);
      return;
    }
    if (len != kBodyBytes) {
      io.count(malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    const std::uint64_t left_ns = std::uint64_t{wire::get_u32(body)} * 1000;
    if (left_ns <= skew_ns_) {
      io.count(expired_received);
      p->release();
      return;
    }
    p->expires_ns = io.now_ns() + (left_ns - skew_ns_);
    io.up(p);
  }

 private:
  std::uint64_t skew_ns_ = 0;
};

}  // namespace

void register_lifetime_deadline(Registry& r) {
  (void)r.add(StageInfo{
      .kind = kKind,
      .synopsis = "Carries each message's remaining lifetime; receivers never deliver it after its deadline.",
      .notes = "Send: a data datagram of a message with a lifetime carries what remains of it (the `lifetime` "
               "extension), written as it leaves, so time queued above for credit, a window or a repair counts; "
               "one whose lifetime ran out on the way down is not sent (`lifetime.expired_sent`). Receive: the "
               "remaining lifetime less `skew_us` becomes the packet's deadline on this member's clock; a "
               "datagram with no more than the skew left is dropped on arrival, and the pipeline drops at "
               "delivery a message whose deadline passed while a stage above held it. Remaining time instead "
               "of an absolute deadline means no clock synchronisation: a receiver never delivers a message "
               "after the sender's deadline as long as the one-way delay plus clock drift stays within the "
               "skew. Messages without a lifetime carry nothing. Reliability above stops repairing an expired "
               "message and reports `delivery_expired`. Drops are counted here (`lifetime.expired_*`), not "
               "under `drops.*`.",
      .params = {{.name = "duration_us",
                  .type = ParamType::integer,
                  .default_value = "0",
                  .doc = "every message's lifetime (0: only messages that give their own); applied by the "
                         "pipeline when it takes the message",
                  .min = 0,
                  .max = 3'600'000'000},
                 {.name = "skew_us",
                  .type = ParamType::integer,
                  .default_value = "1000",
                  .doc = "bound on the one-way delay plus clock drift: taken off the lifetime a receiver sees",
                  .min = 0,
                  .max = 60'000'000}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<DeadlineStage>(); },
      .wire_bytes_per_datagram = wire::kExtHeaderBytes + kBodyBytes,
      .serves = "lifetime",
      .per_message = true,
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::lifetime),
                      .name = "lifetime",
                      .body_bytes = kBodyBytes,
                      .carried_on = "data of messages with a lifetime",
                      .body = "u32 microseconds of the message's lifetime left when the datagram was sent (4 bytes)"}},
  });
}

}  // namespace tmc
