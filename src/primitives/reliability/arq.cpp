// reliability.arq — acknowledged multicast with retransmission (paper §3.2).
//
// Synopsis
//   Sender: stamps each reliable packet with a reliable sequence number (Ext::rel), keeps a
//   copy until the packet's ack set has acknowledged it, retransmits on timeout (RTO from
//   measured RTT, Jacobson/Karels, Karn's rule, exponential backoff) and on NACK, and
//   reports each message's outcome exactly once: delivery_met (who acked) or
//   delivery_failed (who never did) after max_retries, or at once when the view says a
//   required member failed or left.
//   Receiver: delivers each reliable packet once (dedupe per sender incarnation in a
//   bitmap window), acknowledges with cumulative + 64-bit SACK acks coalesced by time
//   (ack_delay_us) and count (ack_every), re-acks duplicates (the earlier ack was lost),
//   and repairs gaps with NACKs delayed by a random time and suppressed when another
//   member already asked for the same range (NORM/SRM-style). Acks and NACKs go by unicast
//   to the sender they concern (feedback=unicast, where the shell can route it; see
//   Notes). With deliver=in_order it
//   passes each sender's reliable packets up in sequence order, holding those behind a
//   gap (see Notes).
// Params
//   messages (all|flagged), ack_from, ack_fraction, ack_k, max_retries, window,
//   rto_initial_us, rto_min_us, rto_max_us, ack_delay_us, ack_every, nack_delay_us,
//   deliver (arrival|in_order), feedback (unicast|multicast).
// Wire
//   Ext::rel on reliable data/control packets, Kind::ack and Kind::nack with Ext::ack
//   bodies; layouts in ack_format.hpp. Unreliable packets carry nothing extra.
// Notes
//   The ack set is fixed when a message is sent, from the Group view (tmc/group.hpp).
//
//   Feedback (feedback=unicast, the default): acks and NACKs go to the address the
//   sender's heartbeats come from, when the shell routes unicast to members
//   (StageEnv::unicast_reachable: the simulator and unicast fan-out channels; a multicast
//   socket is bound to the group and hears no unicast, so there feedback stays multicast)
//   and the view knows that address. Then no receiver reads another's acks: with n
//   members, an ack round costs the sender n - 1 datagrams and each receiver none, instead
//   of every member reading n - 1. NACKs are unicast too, so receivers no longer overhear
//   each other's requests; what suppression remains: the sender repairs by multicast and
//   at most once per half RTT per packet (duplicate NACKs for one loss cost no extra data),
//   and a receiver's NACK waits a random delay during which another's repair fills its gap
//   and cancels it. NACKs still overheard (feedback=multicast, or no address known) suppress
//   as before. Flow control's credits ride on acks (flow.credit) and congestion.window reads
//   acks and NACKs addressed to its own sender: both see the same feedback either way.
//   A network sequencer's redirect (StageIo::redirect_to_group) concerns data sent to the
//   sequencer, never feedback, which is addressed to members.
//   Each Ext::rel also carries the sender's trailing edge (lowest unsettled rseq): a
//   receiver that joins mid-stream starts there instead of at 1, and a receiver stops
//   waiting for (and NACKing) anything the sender has already settled, so a partition
//   that heals never leaves a receiver asking for history forever.
//   Hot paths do not allocate: the sender's window and the receivers' bitmaps (64 senders)
//   are allocated in configure().
//
//   deliver=in_order (the compiler asks for it when point-to-point ordering sits above):
//   a reliable packet that arrives above a gap is held here, in a ring indexed by its
//   reliable number, and passed up when the gap fills, so the ordering stage above sees
//   each sender's packets in order and holds nothing. The point is cost: with coalescing
//   above, one held datagram carries a whole batch, where the ordering stage would hold
//   every message of it separately. Holding here is an optimisation only; ordering above
//   stays the authority. Held packets go up early, in order, when the sender's trailing
//   edge passes them (it gave up on the gap), when its incarnation changes or its state is
//   evicted, after rto_max_us without the gap filling, and a packet arriving when `window`
//   packets are held (all senders together) is not held at all. Acks do not wait for
//   delivery: a held packet is acknowledged like any other.
// Parts
//   This file is the stage's shell: parameters, dispatch and the one timer. The sender
//   window is arq_sender.hpp, the receive state (dedupe, acks, NACKs) arq_receiver.hpp, the
//   deliver=in_order hold arq_hold.hpp; what they share is arq_config.hpp.

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "primitives/reliability/ack_format.hpp"
#include "primitives/reliability/arq_config.hpp"
#include "primitives/reliability/arq_receiver.hpp"
#include "primitives/reliability/arq_sender.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

using arq::c_malformed;
using arq::c_queued;
using arq::kUs;

class ArqStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    env_ = env;
    arq::Config cfg;
    const std::string messages = params.get_string("messages", "all");
    if (messages == "all") {
      cfg.all_messages = true;
    } else if (messages == "flagged") {
      cfg.all_messages = false;
    } else {
      errors.push_back("parameter 'messages' must be 'all' or 'flagged', got '" + messages + "'");
    }
    std::vector<std::string> ack_from;
    const std::string from = params.get_string("ack_from", "");
    for (std::size_t pos = 0; pos <= from.size();) {
      std::size_t comma = from.find(',', pos);
      if (comma == std::string::npos) comma = from.size();
      std::string name = from.substr(pos, comma - pos);
      const auto b = name.find_first_not_of(" \t");
      const auto e = name.find_last_not_of(" \t");
      name = b == std::string::npos ? std::string() : name.substr(b, e - b + 1);
      if (!name.empty()) ack_from.push_back(std::move(name));
      pos = comma + 1;
    }
    if (ack_from.size() > kMaxGroupMembers) {
      errors.push_back("parameter 'ack_from' names " + std::to_string(ack_from.size()) + " members; at most " +
                       std::to_string(kMaxGroupMembers) + " are possible");
    }
    cfg.ack_fraction = params.get_real("ack_fraction", 0.0);
    if (!(cfg.ack_fraction >= 0.0 && cfg.ack_fraction <= 1.0)) {
      errors.push_back("parameter 'ack_fraction' must lie in [0, 1], got " + std::to_string(cfg.ack_fraction));
    }
    const std::int64_t k = params.get_int("ack_k", 0);
    if (k < 0 || k > static_cast<std::int64_t>(kMaxGroupMembers)) {
      errors.push_back("parameter 'ack_k' must lie in [0, 64], got " + std::to_string(k));
    }
    cfg.ack_k = static_cast<std::uint32_t>(std::clamp<std::int64_t>(k, 0, 64));
    const int ways = (ack_from.empty() ? 0 : 1) + (cfg.ack_fraction > 0.0 ? 1 : 0) + (cfg.ack_k > 0 ? 1 : 0);
    if (ways > 1) errors.push_back("give at most one of the parameters 'ack_from', 'ack_fraction' and 'ack_k'");
    cfg.mode = !ack_from.empty()                           ? arq::AckMode::named
               : (cfg.ack_fraction > 0.0 || cfg.ack_k > 0) ? arq::AckMode::count
                                                           : arq::AckMode::all;

    auto int_param = [&](const char* name, std::int64_t def, std::int64_t lo, std::int64_t hi) {
      const std::int64_t v = params.get_int(name, def);
      if (v < lo || v > hi) {
        errors.push_back("parameter '" + std::string(name) + "' must lie in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "], got " + std::to_string(v));
        return std::clamp(v, lo, hi);
      }
      return v;
    };
    cfg.max_retries = static_cast<std::uint32_t>(int_param("max_retries", 8, 0, 1000));
    cfg.window = static_cast<std::uint32_t>(
        int_param("window", 4096, 1, static_cast<std::int64_t>(detail::kMaxRelTrailDistance)));
    const std::int64_t day_us = 86'400'000'000;
    cfg.rto_initial_ns = static_cast<std::uint64_t>(int_param("rto_initial_us", 50'000, 1, day_us)) * kUs;
    cfg.rto_min_ns = static_cast<std::uint64_t>(int_param("rto_min_us", 2'000, 1, day_us)) * kUs;
    cfg.rto_max_ns = static_cast<std::uint64_t>(int_param("rto_max_us", 1'000'000, 1, day_us)) * kUs;
    cfg.ack_delay_ns = static_cast<std::uint64_t>(int_param("ack_delay_us", 500, 0, day_us)) * kUs;
    cfg.ack_every = static_cast<std::uint32_t>(int_param("ack_every", 32, 1, 1'000'000));
    cfg.nack_delay_ns = static_cast<std::uint64_t>(int_param("nack_delay_us", 1'000, 0, day_us)) * kUs;
    const std::string deliver = params.get_string("deliver", "arrival");
    if (deliver == "in_order") {
      cfg.in_order = true;
    } else if (deliver != "arrival") {
      errors.push_back("parameter 'deliver' must be 'arrival' or 'in_order', got '" + deliver + "'");
    }
    const std::string feedback = params.get_string("feedback", "unicast");
    if (feedback == "multicast") {
      cfg.unicast_feedback = false;
    } else if (feedback != "unicast") {
      errors.push_back("parameter 'feedback' must be 'unicast' or 'multicast', got '" + feedback + "'");
    }
    if (cfg.rto_min_ns > cfg.rto_max_ns) {
      errors.push_back("parameter 'rto_min_us' (" + std::to_string(cfg.rto_min_ns / kUs) +
                       ") must not exceed 'rto_max_us' (" + std::to_string(cfg.rto_max_ns / kUs) + ")");
    }
    if (!errors.empty()) return false;
    window_ = cfg.window;
    in_order_ = cfg.in_order;
    // Cold: the whole window and every receive bitmap, once.
    sender_.configure(cfg, env, std::move(ack_from));
    receiver_.configure(cfg, env);
    return true;
  }

  void on_start(StageIo& io) noexcept override { check_view(io); }

  void on_stop(StageIo& io) noexcept override {
    // Acknowledge what we received and have not acked yet (an ack waiting for its delay):
    // membership's goodbye goes out after this (it is lower in the pipeline), and a sender
    // that hears the goodbye first fails every message it still waits for us on.
    receiver_.ack_pending(io);
    // The pipeline is retiring: report every message still waiting as failed, so the
    // application never waits on silence.
    ++depth_;
    sender_.fail_all(io);
    --depth_;
    io.cancel_timer();
    armed_ns_ = 0;
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override {
    return sender_.held() + sender_.queued() + receiver_.held();
  }
  // One copy per unsettled message in the window (the queue is bounded by the shell's send
  // queue), and with deliver=in_order as many received packets held for order.
  [[nodiscard]] std::size_t max_held_packets() const noexcept override {
    return std::size_t{window_} * (in_order_ ? 2 : 1);
  }
  [[nodiscard]] std::size_t send_backlog() const noexcept override { return sender_.queued(); }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (!sender_.is_reliable(*p)) {
      io.down(p);
      return;
    }
    // While this stage is busy (a stage above sends from inside a delivery), or messages
    // are already waiting, keep FIFO order through the queue.
    if (depth_ > 0 || sender_.must_wait()) {
      sender_.enqueue(p);
      io.count(c_queued);
      if (depth_ == 0) update_timer(io);
      return;
    }
    ++depth_;
    check_view(io);
    sender_.transmit_new(p, io);
    sender_.pump(io);
    --depth_;
    update_timer(io);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    ++depth_;
    check_view(io);
    if (p->kind == wire::Kind::ack) {
      on_ack(p, io);
    } else if (p->kind == wire::Kind::nack) {
      on_nack(p, io);
    } else if ((p->kind == wire::Kind::data || p->kind == wire::Kind::control) &&
               (p->flags & wire::kFlagReliable) != 0 && p->ext(wire::Ext::rel) != nullptr) {
      receiver_.on_reliable(p, io);  // passes p up last
      p = nullptr;
    } else {
      io.up(p);
    }
    sender_.pump(io);
    --depth_;
    update_timer(io);
  }

  void on_tick(StageIo& io) noexcept override {
    armed_ns_ = 0;
    ++depth_;
    check_view(io);
    const std::uint64_t now = io.now_ns();
    sender_.on_tick(now, io);
    receiver_.on_tick(now, io);
    sender_.pump(io);
    --depth_;
    update_timer(io);
  }

 private:
  // Called on every input: a new view reaches both halves.
  void check_view(StageIo& io) noexcept {
    const Group& g = io.group();
    if (g.view_id() == view_seen_) return;
    view_seen_ = g.view_id();
    receiver_.set_self_receives(g.member(g.self_slot()).receives);
    sender_.on_view(g, io);
  }

  void on_ack(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    const auto ack = detail::decode_ack(b, len);
    if (!ack) {
      io.count(c_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    // Acks for other senders are not ours; either way nothing above wants them.
    if (ack->target_sender == env_.sender && ack->target_epoch == env_.epoch) sender_.on_ack(*ack, p->sender, io);
    p->release();
  }

  void on_nack(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    const auto nack = detail::decode_nack(b, len);
    if (!nack || nack->count == 0) {
      io.count(c_malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (nack->target_sender == env_.sender && nack->target_epoch == env_.epoch) {
      sender_.on_nack(*nack, io);
    } else {
      // Another receiver asked for a repair of some sender's packets.
      receiver_.overheard_nack(*nack);
    }
    p->release();
  }

  void update_timer(StageIo& io) noexcept {
    std::uint64_t next = 0;
    for (std::uint64_t t : {sender_.deadline(), receiver_.deadline()}) {
      if (t != 0 && (next == 0 || t < next)) next = t;
    }
    if (next == armed_ns_) return;
    armed_ns_ = next;
    if (next == 0) {
      io.cancel_timer();
    } else {
      io.arm_timer(next);
    }
  }

  StageEnv env_;
  std::uint32_t window_ = 4096;
  bool in_order_ = false;
  std::uint64_t view_seen_ = ~std::uint64_t{0};
  arq::ArqSender sender_;
  arq::ArqReceiver receiver_;
  std::uint64_t armed_ns_ = 0;
  int depth_ = 0;
};

}  // namespace

void register_reliability_arq(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "reliability.arq",
      .synopsis = "Acknowledged multicast: sending window, RTO/NACK retransmission, duplicate suppression, and a "
                  "met/failed outcome for every reliable message.",
      .notes =
          "A packet is reliable when messages=all and it is data, or when its flags carry `reliable` (data or "
          "control). Reliable packets carry extension `rel` (type 7), one u64: the low 48 bits the reliable "
          "sequence number (1, 2, ... per sender incarnation), the high 16 bits the distance back to the "
          "sender's trailing edge (lowest unsettled number), so late joiners start there and receivers stop "
          "waiting for what the sender has settled. Receivers ack with `ack` packets (unicast to the sender they concern with feedback=unicast "
          "where the shell routes unicast to members and the view knows the sender's address, else multicast; "
          "extension `ack`, 24 bytes: target sender, target epoch, u64 cumulative, u64 SACK bitmap), coalesced for at most "
          "ack_delay_us or every ack_every new packets, and re-ack duplicates. Gaps are NACKed (20-byte body: "
          "target, first, count) after a random delay in [0, nack_delay_us] (scaled by the number of other "
          "receiving members over 8, at most 1), addressed like acks; a repair that arrives first cancels it, and a "
          "receiver that hears another's (multicast) NACK for the same range stays quiet. The sender keeps a copy of each reliable packet until its ack "
          "set (fixed at send from the membership view: every receiver, the ack_from names, ceil(ack_fraction "
          "x receivers) or ack_k of them) has acked it; it retransmits on RTO (Jacobson/Karels from RTT "
          "samples, Karn's rule, exponential backoff to rto_max_us) and on NACK (once per half RTT). After "
          "max_retries timeouts that show a loss (a waited-for member acked a later message, or acked "
          "nothing new for rto_max_us since the message is known to have left the stages below: a member "
          "acked it or a later one, or nothing older is unsettled; a message waiting below for flow credit or "
          "a congestion window is not lost), or at once when a required member fails or leaves, the message fails: "
          "delivery_failed names the members that never acked; delivery_met names those that did. At most "
          "`window` messages are unsettled; more wait in order inside the stage. Unreliable packets pass "
          "untouched (zero bytes). Send-only members never ack. With deliver=in_order a receiver holds each "
          "sender's reliable packets that arrive above a gap and passes them up when it fills, so an ordering "
          "stage above holds nothing (one held datagram may be a whole coalesced batch); acks never wait for "
          "delivery, and held packets go up early, in order, when the sender settles past the gap, restarts, "
          "or rto_max_us passes.",
      .params = {{"messages", ParamType::string, "all", "'all' (every data message) or 'flagged' (only messages "
                                                        "sent with the reliable flag)"},
                 {"ack_from", ParamType::string, "", "comma-separated member names whose acks are required "
                                                     "(empty: every receiver)"},
                 {"ack_fraction", ParamType::real, "0", "(0, 1]: acks needed from this fraction of the receivers "
                                                        "(rounded up); 0 = unused"},
                 {"ack_k", ParamType::integer, "0", "acks needed from this many receivers; 0 = unused"},
                 {"max_retries", ParamType::integer, "8", "timeouts showing a loss before a message fails"},
                 {"window", ParamType::integer, "4096", "unsettled reliable messages per sender (max 65535); more "
                                                        "wait in a FIFO queue"},
                 {"rto_initial_us", ParamType::integer, "50000", "retransmission timeout before the first RTT sample"},
                 {"rto_min_us", ParamType::integer, "2000", "lower bound of the RTO"},
                 {"rto_max_us", ParamType::integer, "1000000", "upper bound of the RTO and its backoff"},
                 {"ack_delay_us", ParamType::integer, "500", "longest a receiver holds back an ack to coalesce"},
                 {"ack_every", ParamType::integer, "32", "a receiver acks at once after this many new packets"},
                 {"nack_delay_us", ParamType::integer, "1000", "a receiver NACKs a gap after a random delay up to "
                                                               "this (suppressed if another member asks first)"},
                 {"deliver", ParamType::string, "arrival",
                  "'arrival': reliable packets go up as they arrive; 'in_order': each sender's go up in sequence "
                  "order, those above a gap held here until it fills (at most `window` held, for at most "
                  "rto_max_us), so that ordering above holds nothing (the compiler asks for it under "
                  "point-to-point ordering)"},
                 {"feedback", ParamType::string, "unicast",
                  "'unicast': acks and NACKs go to the sender they concern, where the shell routes unicast to "
                  "members and the sender's address is known (else to the group); 'multicast': always to the "
                  "group"}},
      .counters = {{"reliability.sent", "reliable packets stamped and sent for the first time"},
                   {"reliability.retransmits", "reliable packets sent again (on timeout or NACK)"},
                   {"reliability.timeouts", "retransmission timeouts"},
                   {"reliability.acks_sent", "ack packets sent"},
                   {"reliability.acks_received", "ack packets for this sender received"},
                   {"reliability.nacks_sent", "NACK packets sent"},
                   {"reliability.nacks_received", "NACK packets for this sender received"},
                   {"reliability.nacks_suppressed", "NACKs not sent because another member asked first"},
                   {"reliability.duplicates", "reliable packets received again (dropped and re-acked)"},
                   {"reliability.delivered", "reliable packets passed up (once each)"},
                   {"reliability.met", "reliable messages whose ack set acknowledged them"},
                   {"reliability.failed", "reliable messages given up (retries exhausted or member gone)"},
                   {"reliability.queued", "reliable messages that waited for room in the window"},
                   {"reliability.rtt_samples", "RTT samples taken (never from retransmitted packets)"},
                   {"reliability.beyond_window", "reliable packets dropped: beyond the receive window"},
                   {"reliability.no_buffer", "copies, acks or NACKs not made: the packet pool was exhausted"},
                   {"reliability.malformed", "reliability extensions of the wrong length"},
                   {"reliability.unknown_acker", "acks from a sender that is not in the membership view"},
                   {"reliability.senders_evicted", "receive state of a silent sender reused for a new one"},
                   {"reliability.held_in_order", "deliver=in_order: packets held above a gap until it filled"},
                   {"reliability.held_released_early",
                    "deliver=in_order: held packets passed up before their gap filled (rto_max_us passed, the "
                    "sender restarted or its state was evicted)"}},
      .factory = [] { return std::make_unique<ArqStage>(); },
      .wire_bytes_per_datagram = wire::kExtHeaderBytes + 8,
      .serves = "reliability",
      .requires_below = {"membership.heartbeat"},
      .per_message = true,
      .extensions = {{.type = static_cast<std::uint8_t>(wire::Ext::ack),
                      .name = "ack",
                      .body_bytes = 24,
                      .carried_on = "kind ack / nack",
                      .body = "ack (24 bytes): u32 target sender, u32 target epoch, u64 cumulative, u64 SACK "
                              "bitmap (bit i: cumulative + 2 + i received); nack (20 bytes): u32 target sender, "
                              "u32 target epoch, u64 first missing, u32 count"},
                     {.type = static_cast<std::uint8_t>(wire::Ext::rel),
                      .name = "rel",
                      .body_bytes = 8,
                      .carried_on = "reliable data and control (flag bit 1)",
                      .body = "u64: low 48 bits the reliable sequence number (from 1 per incarnation, over "
                              "reliable packets only), high 16 bits the distance back to the sender's trailing "
                              "edge (its lowest unsettled number) (8 bytes)"}},
  });
}

}  // namespace tmc
