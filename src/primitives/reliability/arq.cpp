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
//   In groups of nine members or more with acks from all, acks are sparse: each receiver
//   acks a stride of datagrams that grows with the group, at staggered points, when the
//   sender pauses and when the sender asks; duplicates are not re-acked there (see
//   ack_stride() in arq_config.hpp).
// Params
//   messages (all|flagged), ack_from, ack_fraction, ack_k, max_retries, window,
//   rto_initial_us, rto_min_us, rto_max_us, ack_delay_us, ack_every, nack_delay_us,
//   deliver (arrival|in_order), feedback (unicast|multicast), acks (receiver|application).
// Wire
//   Ext::rel on reliable data/control packets, Kind::ack and Kind::nack with Ext::ack
//   bodies; layouts in ack_format.hpp. Unreliable packets carry nothing extra.
// Notes
//   The ack set is fixed when a message is sent, from the Group view (tmc/group.hpp).
//
//   Feedback (feedback=unicast, the default): acks and NACKs go to the address the
//   sender's heartbeats come from, when the shell routes unicast to members
//   (StageEnv::unicast_reachable: the runtime, where every member sends from a socket of
//   its own that it reads, and the simulator) and the view knows that address. Then no receiver reads another's acks: with n
//   members, an ack round costs the sender n - 1 datagrams and each receiver none, instead
//   of every member reading n - 1. NACKs are unicast too, so receivers no longer overhear
//   each other's requests; what suppression remains: the sender repairs by multicast and
//   at most once per half RTT per packet (duplicate NACKs for one loss cost no extra data),
//   and a receiver's NACK waits a random delay during which another's repair fills its gap
//   and cancels it. NACKs still overheard (feedback=multicast, or no address known) suppress
//   as before. Flow control's credits ride on acks (flow.credit) and congestion.window reads
//   acks and NACKs addressed to its own sender: both see the same feedback either way.
//   With sparse acks (a large group) a NACK carries the receiver's position as well and
//   counts as its ack (congestion.window reads it too): the receiver's next stride ack is
//   due a stride after it, so most stride acks of a lossy large group are NACKs.
//   A network sequencer's redirect (StageIo::redirect_to_group) concerns data sent to the
//   sequencer, never feedback, which is addressed to members.
//   Each Ext::rel also carries the sender's trailing edge (lowest unsettled rseq): a
//   receiver that joins mid-stream starts there instead of at 1, and a receiver stops
//   waiting for (and NACKing) anything the sender has already settled, so a partition
//   that heals never leaves a receiver asking for history forever.
//   Hot paths do not allocate: the sender's window and the receivers' bitmaps (kMaxRxSenders, 128 senders)
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
//
//   Acknowledgments by reply (Channel::acknowledge, detail::AppAcknowledged): the
//   application may acknowledge a message on a member's behalf when that member's own
//   reply shows it has the message; it counts as that member's ack (with an RTT sample:
//   the reply's round trip). With acks=application that is the only ack: receivers send
//   none (they still NACK gaps), a message is retransmitted until its replies came, and a
//   receiver passes a packet it already had up again, so that when a request arrived but
//   its reply was lost, the application answers again (at-least-once delivery, for
//   idempotent handlers). The reply is the ack: no ack datagrams, and the timeout follows
//   the replies' round trip.
// Parts
//   This file is the stage's shell: parameters, dispatch and the one timer. The sender
//   window is arq_sender.hpp, the receive state (dedupe, acks, NACKs) arq_receiver.hpp, the
//   deliver=in_order hold arq_hold.hpp; what they share is arq_config.hpp.

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "primitives/common/app_ack.hpp"
#include "primitives/common/stage_timer.hpp"
#include "primitives/reliability/ack_format.hpp"
#include "primitives/reliability/arq_config.hpp"
#include "primitives/reliability/arq_receiver.hpp"
#include "primitives/reliability/arq_sender.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

namespace ctr = arq::ctr;
using arq::kUs;

constexpr std::string_view kMessages[] = {"all", "flagged"};
constexpr std::string_view kDeliver[] = {"arrival", "in_order"};
constexpr std::string_view kFeedback[] = {"unicast", "multicast"};
constexpr std::string_view kAcks[] = {"receiver", "application"};
constexpr std::int64_t kDayUs = 86'400'000'000;

// Gauges, declared once: the enum and the names (P #id) come from this list.
#define TMC_ARQ_GAUGES(X, P)                                                                          \
  X(P, srtt_ns, "smoothed round-trip time of acks (0 before the first sample)")                      \
  X(P, rto_ns, "retransmission timeout from the RTT estimate, before a message's own backoff")       \
  X(P, in_flight, "reliable messages sent and not yet settled (a copy kept of each)")               \
  X(P, held_packets, "deliver=in_order: received packets held above a gap, all senders")           \
  X(P, ack_state_bytes, "heap the sender keeps to know who must ack what and who did (window + members)")
TMC_STAGE_GAUGES("reliability.", TMC_ARQ_GAUGES);

class ArqStage final : public Stage, public detail::AppAcknowledged {
 public:
  // The registry has checked every value against its ParamSpec (register_reliability_arq)
  // and filled the defaults; what is left here are the rules that tie parameters together.
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    env_ = env;
    arq::Config cfg;
    cfg.all_messages = params.text("messages") == "all";
    std::vector<std::string> ack_from = params.list("ack_from");
    if (ack_from.size() > kMaxMaxMembers) {
      errors.push_back("parameter 'ack_from' names " + std::to_string(ack_from.size()) + " members; at most " +
                       std::to_string(kMaxMaxMembers) + " are possible");
    }
    cfg.ack_fraction = params.real("ack_fraction");
    cfg.ack_k = static_cast<std::uint32_t>(params.integer("ack_k"));
    const int ways = (ack_from.empty() ? 0 : 1) + (cfg.ack_fraction > 0.0 ? 1 : 0) + (cfg.ack_k > 0 ? 1 : 0);
    if (ways > 1) errors.push_back("give at most one of the parameters 'ack_from', 'ack_fraction' and 'ack_k'");
    cfg.mode = !ack_from.empty()                           ? arq::AckMode::named
               : (cfg.ack_fraction > 0.0 || cfg.ack_k > 0) ? arq::AckMode::count
                                                           : arq::AckMode::all;
    auto us = [&](std::string_view name) { return static_cast<std::uint64_t>(params.integer(name)) * kUs; };
    cfg.max_retries = static_cast<std::uint32_t>(params.integer("max_retries"));
    cfg.window = static_cast<std::uint32_t>(params.integer("window"));
    cfg.rto_initial_ns = us("rto_initial_us");
    cfg.rto_min_ns = us("rto_min_us");
    cfg.rto_max_ns = us("rto_max_us");
    cfg.ack_delay_ns = us("ack_delay_us");
    cfg.ack_every = static_cast<std::uint32_t>(params.integer("ack_every"));
    cfg.nack_delay_ns = us("nack_delay_us");
    cfg.in_order = params.text("deliver") == "in_order";
    cfg.unicast_feedback = params.text("feedback") == "unicast";
    cfg.app_acks = params.text("acks") == "application";
    cfg.tail_probe = params.boolean("tail_probe");
    if (cfg.app_acks && cfg.in_order) {
      errors.push_back("parameter 'acks' = application needs deliver = arrival: a retransmitted request goes up "
                       "again, which cannot be in order");
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
    // Acknowledge what we received (an ack waiting for its delay, and with unicast feedback
    // every sender's position again) to the group: membership's goodbye goes out after this
    // (it is lower in the pipeline) and to the group, and a sender that hears the goodbye
    // first fails every message it still waits for us on.
    receiver_.ack_all_to_group(io);
    // The pipeline is retiring: report every message still waiting as failed, so the
    // application never waits on silence.
    ++depth_;
    sender_.fail_all(io);
    --depth_;
    timer_.cancel(io);
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

  void read_gauges(std::span<double> out) const noexcept override {
    out[Gauge::srtt_ns] = static_cast<double>(sender_.srtt_ns());
    out[Gauge::rto_ns] = static_cast<double>(sender_.rto_ns());
    out[Gauge::in_flight] = static_cast<double>(sender_.held());
    out[Gauge::held_packets] = static_cast<double>(receiver_.held());
    out[Gauge::ack_state_bytes] = static_cast<double>(sender_.state_bytes());
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (!sender_.is_reliable(*p)) {
      io.down(p);
      return;
    }
    // While this stage is busy (a stage above sends from inside a delivery), or messages
    // are already waiting, keep FIFO order through the queue.
    if (depth_ > 0 || sender_.must_wait()) {
      sender_.enqueue(p);
      io.count(ctr::queued);
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

  void on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept override {
    ++depth_;
    sender_.forget(token, scope, io);
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
    } else if (p->kind == wire::Kind::control && (p->flags & wire::kFlagReliable) == 0 &&
               p->ext(wire::Ext::ack) != nullptr) {
      on_edge(p, io);
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

  bool on_app_ack(std::uint64_t token, int slot, StageIo& io) noexcept override {
    ++depth_;
    check_view(io);
    const bool known = sender_.on_app_ack(token, slot, io);
    sender_.pump(io);
    --depth_;
    update_timer(io);
    return known;
  }

  void on_tick(StageIo& io) noexcept override {
    timer_.fired();
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

  // The ack body of an ack or an edge announcement; a malformed one is counted and dropped.
  static std::optional<detail::AckBody> ack_body_or_drop(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    auto ack = detail::decode_ack(b, len);
    if (!ack) {
      io.count(ctr::malformed);
      io.drop(p, DropReason::malformed);
    }
    return ack;
  }

  void on_ack(Packet* p, StageIo& io) noexcept {
    const auto ack = ack_body_or_drop(p, io);
    if (!ack) return;
    // Acks for other senders are not ours; either way nothing above wants them.
    if (ack->target_sender == env_.sender && ack->target_epoch == env_.epoch) sender_.on_ack(*ack, p->sender, io);
    p->release();
  }

  // A sender's announcement of its trailing edge (ArqSender::announce_edge()): a control
  // packet with an ack body addressed to the sender itself; never passed up.
  void on_edge(Packet* p, StageIo& io) noexcept {
    const auto ack = ack_body_or_drop(p, io);
    if (!ack) return;
    const std::uint32_t sender = p->sender;
    const std::uint32_t epoch = p->epoch;
    p->release();
    if (ack->target_sender == sender && ack->target_epoch == epoch) {
      receiver_.on_edge(sender, epoch, ack->cumulative, io);
      receiver_.on_ack_request(sender, epoch, io);
    }
  }

  void on_nack(Packet* p, StageIo& io) noexcept {
    std::uint8_t len = 0;
    const std::uint8_t* b = p->ext(wire::Ext::ack, &len);
    const auto nack = detail::decode_nack(b, len);
    if (!nack || nack->count == 0) {
      io.count(ctr::malformed);
      io.drop(p, DropReason::malformed);
      return;
    }
    if (nack->target_sender == env_.sender && nack->target_epoch == env_.epoch) {
      // A large group's NACK carries the receiver's position: its ack, taken first.
      if (const auto pos = detail::decode_nack_position(b, len)) sender_.on_ack(*pos, p->sender, io, /*packet=*/false);
      sender_.on_nack(*nack, io);
    } else {
      // Another receiver asked for a repair of some sender's packets.
      receiver_.overheard_nack(*nack);
    }
    p->release();
  }

  void update_timer(StageIo& io) noexcept {
    timer_.arm_earliest(io, {sender_.deadline(), receiver_.deadline()});
  }

  StageEnv env_;
  std::uint32_t window_ = 4096;
  bool in_order_ = false;
  std::uint64_t view_seen_ = ~std::uint64_t{0};
  arq::ArqSender sender_;
  arq::ArqReceiver receiver_;
  detail::StageTimer timer_;
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
          "waiting for what the sender has settled. Receivers ack with `ack` packets (unicast to the sender they "
          "concern with feedback=unicast where the shell routes unicast to members and the view knows the sender's address, else multicast; "
          "extension `ack`, 24 bytes: target sender, target epoch, u64 cumulative, u64 SACK bitmap), coalesced for at most "
          "ack_delay_us or every ack_every new packets, and re-ack duplicates. Gaps are NACKed (20-byte body: "
          "target, first, count; from eight receivers on 36 bytes, with the receiver's cumulative point and SACK "
          "bitmap, which the sender counts as its ack) after a random delay in [0, nack_delay_us] (scaled by the number of other "
          "receiving members over 8, at most 1), addressed like acks; a repair that arrives first cancels it, and a "
          "receiver that hears another's (multicast) NACK for the same range stays quiet. The sender keeps a copy "
          "of each reliable packet until its ack "
          "set (fixed at send from the membership view: every receiver, the ack_from names, ceil(ack_fraction "
          "x receivers) or ack_k of them) has acked it; it retransmits on RTO (Jacobson/Karels from RTT "
          "samples, Karn's rule, exponential backoff to rto_max_us) and on NACK (once per half RTT). When no ack "
          "has made progress for two smoothed RTTs plus ack_delay_us, the newest unsettled packet goes again, once "
          "until the next new one (tail_probe, as TCP's tail loss probe): a receiver that lost the end of a burst "
          "sees the gap and NACKs it at once instead of waiting for the RTO. After "
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
          "or rto_max_us passes. The application may acknowledge a message on a member's behalf (Channel::acknowledge: "
          "that member's reply shows it has the message); it counts as the member's ack, RTT sample included. With "
          "acks=application that is the only ack (request/response): receivers send none, NACK gaps as before, and "
          "pass a packet received again up again, so a request retransmitted because its reply was lost is "
          "answered again.",
      .params = {{.name = "messages",
                  .type = ParamType::string,
                  .default_value = "all",
                  .doc = "'all' (every data message) or 'flagged' (only messages sent with the reliable flag)",
                  .one_of = kMessages},
                 {.name = "ack_from",
                  .type = ParamType::string_list,
                  .default_value = "",
                  .doc = "comma-separated member names whose acks are required (empty: every receiver)"},
                 {.name = "ack_fraction",
                  .type = ParamType::real,
                  .default_value = "0",
                  .doc = "(0, 1]: acks needed from this fraction of the receivers (rounded up); 0 = unused",
                  .lo = 0.0,
                  .hi = 1.0},
                 {.name = "ack_k",
                  .type = ParamType::integer,
                  .default_value = "0",
                  .doc = "acks needed from this many receivers; 0 = unused",
                  .min = 0,
                  .max = kMaxMaxMembers},
                 {.name = "max_retries",
                  .type = ParamType::integer,
                  .default_value = "8",
                  .doc = "timeouts showing a loss before a message fails",
                  .min = 0,
                  .max = 1000},
                 {.name = "window",
                  .type = ParamType::integer,
                  .default_value = "4096",
                  .doc = "unsettled reliable messages per sender (max 65535); more wait in a FIFO queue",
                  .min = 1,
                  .max = static_cast<std::int64_t>(detail::kMaxRelTrailDistance)},
                 {.name = "rto_initial_us",
                  .type = ParamType::integer,
                  .default_value = "50000",
                  .doc = "retransmission timeout before the first RTT sample",
                  .min = 1,
                  .max = kDayUs},
                 {.name = "rto_min_us",
                  .type = ParamType::integer,
                  .default_value = "2000",
                  .doc = "lower bound of the RTO",
                  .min = 1,
                  .max = kDayUs},
                 {.name = "rto_max_us",
                  .type = ParamType::integer,
                  .default_value = "1000000",
                  .doc = "upper bound of the RTO and its backoff",
                  .min = 1,
                  .max = kDayUs},
                 {.name = "ack_delay_us",
                  .type = ParamType::integer,
                  .default_value = "500",
                  .doc = "longest a receiver holds back an ack to coalesce",
                  .min = 0,
                  .max = kDayUs},
                 {.name = "ack_every",
                  .type = ParamType::integer,
                  .default_value = "32",
                  .doc = "a receiver acks at once after this many new packets",
                  .min = 1,
                  .max = 1'000'000},
                 {.name = "nack_delay_us",
                  .type = ParamType::integer,
                  .default_value = "1000",
                  .doc = "a receiver NACKs a gap after a random delay up to this (suppressed if another member "
                         "asks first)",
                  .min = 0,
                  .max = kDayUs},
                 {.name = "deliver",
                  .type = ParamType::string,
                  .default_value = "arrival",
                  .doc = "'arrival': reliable packets go up as they arrive; 'in_order': each sender's go up in "
                         "sequence order, those above a gap held here until it fills (at most `window` held, for "
                         "at most rto_max_us), so that ordering above holds nothing (the compiler asks for it "
                         "under point-to-point ordering)",
                  .one_of = kDeliver},
                 {.name = "feedback",
                  .type = ParamType::string,
                  .default_value = "unicast",
                  .doc = "'unicast': acks and NACKs go to the sender they concern, where the shell routes unicast "
                         "to members and the sender's address is known (else to the group); 'multicast': always "
                         "to the group",
                  .one_of = kFeedback},
                 {.name = "acks",
                  .type = ParamType::string,
                  .default_value = "receiver",
                  .doc = "'receiver': receivers acknowledge what they receive; 'application': they send no acks "
                         "(NACKs still) and pass a packet received again up again, and the sending application "
                         "acknowledges each message on a member's behalf when its reply arrives "
                         "(Channel::acknowledge): request/response with idempotent handlers, where the reply is "
                         "the ack and a lost reply is repaired by retransmitting the request (needs "
                         "deliver=arrival)",
                  .one_of = kAcks},
                 {.name = "tail_probe",
                  .type = ParamType::boolean,
                  .default_value = "false",
                  .doc = "when no ack has made progress for two smoothed RTTs plus ack_delay_us, send the newest "
                         "unsettled packet again, once until the next new one (TCP's tail loss probe): a receiver "
                         "that lost the end of a burst sees the gap and NACKs it at once instead of waiting for "
                         "the RTO (counter tail_probes; needs an RTT sample; off with acks=application)"}},
      .counters = counter_list(ctr::kCounters),
      .gauges = gauge_list(kGauges),
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
                              "u32 target epoch, u64 first missing, u32 count; from eight receivers on (sparse acks) a nack is 36 "
                              "bytes, the same 20 then the receiver's position as in an ack (u64 cumulative, u64 SACK "
                              "bitmap), which the sender counts as that receiver's ack"},
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
