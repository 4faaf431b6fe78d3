#include "runtime/pipeline.hpp"

#include <algorithm>
#include <limits>
#include <span>

#include "primitives/common/app_ack.hpp"
#include "tmc/module_abi.h"

namespace tmc {

// Each stage talks to the pipeline through its own Io, which knows the stage's index.
class Pipeline::Io final : public StageIo {
 public:
  Io(Pipeline& pl, std::size_t index, std::size_t counter_base)
      : StageIo(&pl.now_ns_), pl_(pl), index_(index), counter_base_(counter_base) {}

  void down(Packet* p) noexcept override { pl_.pass_down(index_, p); }
  void up(Packet* p) noexcept override { pl_.pass_up(index_, p); }
  void drop(Packet* p, DropReason r) noexcept override { pl_.drop(p, r); }
  // The pipeline keeps 0 to mean "not armed" (and next_deadline_ns() returns 0 for "none"),
  // so a deadline of 0 — "due now" on a clock that starts at 0 — is armed as 1.
  void arm_timer(std::uint64_t deadline_ns) noexcept override {
    pl_.set_deadline(index_, deadline_ns == 0 ? 1 : deadline_ns);
  }
  void cancel_timer() noexcept override { pl_.set_deadline(index_, 0); }
  void count(std::size_t i, std::uint64_t n) noexcept override { pl_.bump(counter_base_ + i, n); }
  void notify(const Event& e) noexcept override { pl_.sink_.on_event(e); }
  Packet* alloc() noexcept override { return pl_.pool_.alloc(); }
  Packet* alloc_small() noexcept override { return pl_.pool_.alloc_small(); }
  Packet* clone(const Packet& p) noexcept override { return pl_.pool_.clone(p); }
  Packet* alloc_large(std::uint32_t payload_bytes) noexcept override { return pl_.pool_.alloc_large(payload_bytes); }
  Group& group() noexcept override { return pl_.group_; }
  double load() const noexcept override { return pl_.sink_.load(); }
  void redirect_to_group(std::uint32_t ip, std::uint16_t port) noexcept override {
    pl_.redirect_ip_ = ip;
    pl_.redirect_port_ = port;
  }
  /// This stage's counters (values_ is sized once by build and never moves after).
  std::uint64_t* counters() noexcept { return pl_.values_.data() + counter_base_; }

 private:
  Pipeline& pl_;
  std::size_t index_;
  std::size_t counter_base_;
};

double GaugeSnapshot::get(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return values[i];
  }
  return std::numeric_limits<double>::quiet_NaN();
}

std::uint64_t CounterSnapshot::get(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return values[i];
  }
  return 0;
}

Pipeline::Pipeline(PacketPool& pool, PipelineSink& sink, const StageEnv& env) : pool_(pool), sink_(sink), env_(env) {
#define TMC_PC_NAME(name, doc) counter_names_.emplace_back("pipeline." #name);
  TMC_PIPELINE_COUNTERS(TMC_PC_NAME)
#undef TMC_PC_NAME
  for (std::size_t r = 0; r < kDropReasonCount; ++r) {
    counter_names_.push_back("drops." + std::string(drop_reason_name(static_cast<DropReason>(r))));
  }
  wire_counter_base_ = counter_names_.size();
  for (int e = 1; e <= static_cast<int>(wire::DecodeError::duplicate_extension); ++e) {
    counter_names_.push_back(std::string("wire.") + wire::decode_error_name(static_cast<wire::DecodeError>(e)));
  }
}

Pipeline::~Pipeline() = default;

namespace {
Packet* pk(tmc_packet* p) noexcept { return reinterpret_cast<Packet*>(p); }
tmc_packet* handle(Packet* p) noexcept { return reinterpret_cast<tmc_packet*>(p); }
}  // namespace

bool Pipeline::bind_module_io(StageIo& io, tmc_io& v) noexcept {
  auto* self = dynamic_cast<Io*>(&io);
  if (self == nullptr) return false;
  // Io is final: each call below is direct, so a module's call costs one indirect hop.
  v.self = self;
  v.down = [](void* s, tmc_packet* p) noexcept { static_cast<Io*>(s)->down(pk(p)); };
  v.up = [](void* s, tmc_packet* p) noexcept { static_cast<Io*>(s)->up(pk(p)); };
  v.drop = [](void* s, tmc_packet* p, std::uint32_t reason) noexcept {
    static_cast<Io*>(s)->drop(pk(p), reason < kDropReasonCount ? static_cast<DropReason>(reason) : DropReason::unsupported);
  };
  v.arm_timer = [](void* s, std::uint64_t deadline_ns) noexcept { static_cast<Io*>(s)->arm_timer(deadline_ns); };
  v.cancel_timer = [](void* s) noexcept { static_cast<Io*>(s)->cancel_timer(); };
  v.alloc = [](void* s) noexcept { return handle(static_cast<Io*>(s)->alloc()); };
  v.clone = [](void* s, const tmc_packet* p) noexcept {
    return handle(static_cast<Io*>(s)->clone(*reinterpret_cast<const Packet*>(p)));
  };
  v.counters = self->counters();
  return true;
}

Status Pipeline::build(const Plan& plan, const Registry& registry, const StageEnv& env, PacketPool& pool,
                       PipelineSink& sink, std::unique_ptr<Pipeline>& out) {
  std::unique_ptr<Pipeline> pl(new Pipeline(pool, sink, env));
  pl->network_sequenced_ = plan.traits.network_sequenced;
  pl->group_.reset(plan.member, env.sender, env.epoch, plan.duplexity != Duplexity::send_only, plan.members,
                   plan.max_members);
  std::vector<std::string> errors;
  for (const PlannedStage& ps : plan.stages) {
    if (ps.placement != Placement::software) continue;
    const StageInfo* info = registry.find(ps.kind);
    if (info == nullptr) {
      return {Code::UNKNOWN_STAGE, "plan names stage '" + ps.kind + "', which the registry does not hold"};
    }
    Params params;
    if (!registry.resolve_params(*info, ps.params, params, errors)) continue;
    std::unique_ptr<Stage> stage = info->factory();
    std::vector<std::string> stage_errors;
    if (!stage->configure(params, env, stage_errors)) {
      for (auto& e : stage_errors) errors.push_back("stage '" + ps.kind + "': " + e);
      continue;
    }
    const std::size_t base = pl->counter_names_.size();
    for (const CounterSpec& c : info->counters) pl->counter_names_.emplace_back(c.name);
    pl->gauge_begin_.push_back(pl->gauge_names_.size());
    for (const GaugeSpec& g : info->gauges) pl->gauge_names_.emplace_back(g.name);
    if (auto* a = dynamic_cast<detail::AppAcknowledged*>(stage.get())) pl->app_ackers_.emplace_back(pl->stages_.size(), a);
    pl->ios_.push_back(std::make_unique<Io>(*pl, pl->stages_.size(), base));
    pl->stages_.push_back(std::move(stage));
    pl->kinds_.push_back(ps.kind);
  }
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    // Stages built so far are destroyed in reverse order by ~Pipeline (vector dtor).
    return {Code::INVALID_ARGUMENT, msg};
  }
  pl->values_.assign(pl->counter_names_.size(), 0);
  pl->gauge_begin_.push_back(pl->gauge_names_.size());
  pl->deadlines_.assign(pl->stages_.size(), 0);
  pl->lifetime_ns_ = plan.traits.lifetime_ns;
  for (std::size_t i = 0; i < pl->counter_names_.size(); ++i) {
    if (pl->counter_names_[i] == "lifetime.expired_at_delivery") pl->expired_at_delivery_ = i;
  }
  out = std::move(pl);
  return Status::ok();
}

void Pipeline::send(Packet* p, std::uint64_t now_ns) noexcept {
  now_ns_ = now_ns;
  p->channel = env_.channel;
  p->sender = env_.sender;
  p->epoch = env_.epoch;
  // Lifetime counts from here: the message's own, else the channel's.
  const std::uint64_t lifetime = p->lifetime_ns != 0 ? p->lifetime_ns : lifetime_ns_;
  if (lifetime != 0) p->expires_ns = now_ns + lifetime;
  bump(static_cast<std::size_t>(PipelineCounter::sent_messages));
  bump(static_cast<std::size_t>(PipelineCounter::sent_bytes), p->payload_len);
  pass_down(static_cast<std::size_t>(-1), p);
}

void Pipeline::receive(Packet* p, std::uint64_t now_ns) noexcept {
  now_ns_ = now_ns;
  p->rx_ns = now_ns;
  bump(static_cast<std::size_t>(PipelineCounter::received_packets));
  bump(static_cast<std::size_t>(PipelineCounter::received_bytes), p->len);
  const wire::DecodeError err = wire::decode(*p);
  if (err != wire::DecodeError::none) {
    bump(wire_counter_base_ + static_cast<std::size_t>(err) - 1);
    drop(p, DropReason::malformed);
    return;
  }
  if (p->channel != env_.channel) {
    drop(p, DropReason::foreign_channel);
    return;
  }
  // Exception: on a channel sequenced by the network, a datagram stamped by the sequencer
  // (Ext::group_seq) is our own message coming back in the group's order, to be delivered
  // in that order (ChannelTraits::network_sequenced).
  if (p->sender == env_.sender && p->epoch == env_.epoch &&
      !(network_sequenced_ && p->ext(wire::Ext::group_seq) != nullptr)) {
    // Our own datagram, looped back by IP_MULTICAST_LOOP for the other members on this host.
    bump(static_cast<std::size_t>(PipelineCounter::own_packets));
    p->release();
    return;
  }
  pass_up(stages_.size(), p);
}

bool Pipeline::app_ack(std::uint64_t token, std::uint32_t sender, std::uint64_t now_ns) noexcept {
  now_ns_ = now_ns;
  const int slot = group_.slot_of_sender(sender);
  if (slot == kNoSlot) return false;
  bool known = false;
  for (const auto& [i, a] : app_ackers_) known = a->on_app_ack(token, slot, *ios_[i]) || known;
  return known;
}

std::size_t Pipeline::app_acks(std::span<const AppAckRecord> acks) noexcept {
  std::size_t known = 0;
  for (const AppAckRecord& a : acks) known += app_ack(a.token, a.sender, a.at_ns) ? 1 : 0;
  return known;
}

void Pipeline::tick(std::uint64_t now_ns) noexcept {
  now_ns_ = now_ns;
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    if (deadlines_[i] != 0 && deadlines_[i] <= now_ns) {
      deadlines_[i] = 0;
      stages_[i]->on_tick(*ios_[i]);
    }
  }
  recompute_deadline();
}

void Pipeline::forget(std::uint64_t token, ForgetScope scope, std::uint64_t now_ns) noexcept {
  now_ns_ = now_ns;
  for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->on_forget(token, scope, *ios_[i]);
}

void Pipeline::start(std::uint64_t now_ns) noexcept {
  if (started_) return;
  started_ = true;
  now_ns_ = now_ns;
  for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->on_start(*ios_[i]);
}

void Pipeline::stop(std::uint64_t now_ns) noexcept {
  if (stopped_) return;
  stopped_ = true;
  now_ns_ = now_ns;
  for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->on_stop(*ios_[i]);
}

void Pipeline::pass_down(std::size_t from, Packet* p) noexcept {
  const std::size_t next = from + 1;  // from == size_t(-1) wraps to 0: the application
  if (next < stages_.size()) {
    stages_[next]->on_send(p, *ios_[next]);
    return;
  }
  p->seal();
  if (p->dst_ip == redirect_ip_ && redirect_ip_ != 0 && p->dst_port == redirect_port_) {
    p->dst_ip = 0;  // see StageIo::redirect_to_group
    p->dst_port = 0;
  }
  bump(static_cast<std::size_t>(PipelineCounter::transmitted_packets));
  bump(static_cast<std::size_t>(PipelineCounter::transmitted_bytes), p->len);
  sink_.transmit(p);
}

void Pipeline::pass_up(std::size_t from, Packet* p) noexcept {
  if (from > 0) {
    stages_[from - 1]->on_receive(p, *ios_[from - 1]);
    return;
  }
  if (p->kind == wire::Kind::control && p->gap_cause != 0 && p->payload_len == 0) {
    // A settled-edge marker of reliability (Packet::rseq) that no ordering stage took:
    // news for ordering only, never a message.
    p->release();
    return;
  }
  if (p->expires_ns != 0 && now_ns_ >= p->expires_ns && expired_at_delivery_ != 0) {
    // Its lifetime ran out while a stage above lifetime.deadline held it (a reorder
    // buffer, reassembly): never delivered late.
    bump(expired_at_delivery_);
    p->release();
    return;
  }
  bump(static_cast<std::size_t>(PipelineCounter::delivered_messages));
  bump(static_cast<std::size_t>(PipelineCounter::delivered_bytes), p->payload_len);
  sink_.deliver(p);
}

void Pipeline::drop(Packet* p, DropReason r) noexcept {
  bump(kPipelineCounterCount + static_cast<std::size_t>(r));
  p->release();
}

void Pipeline::set_deadline(std::size_t stage, std::uint64_t deadline_ns) noexcept {
  const std::uint64_t old_ns = deadlines_[stage];
  deadlines_[stage] = deadline_ns;
  if (deadline_ns != 0 && (next_deadline_ == 0 || deadline_ns < next_deadline_)) {
    next_deadline_ = deadline_ns;
  } else if (old_ns != 0 && old_ns == next_deadline_ && deadline_ns != old_ns) {
    // This stage held the earliest deadline and moved it later (or cancelled it): another
    // stage's, or none, may now be the earliest. Keeping the old value would make the
    // shell wake for a tick that has nothing to do.
    recompute_deadline();
  }
}

void Pipeline::recompute_deadline() noexcept {
  std::uint64_t d = 0;
  for (std::uint64_t x : deadlines_) {
    if (x != 0 && (d == 0 || x < d)) d = x;
  }
  next_deadline_ = d;
}

std::size_t Pipeline::send_backlog() const noexcept {
  std::size_t n = 0;
  for (const auto& s : stages_) n += s->send_backlog();
  return n;
}

std::size_t Pipeline::max_held_packets() const noexcept {
  std::size_t n = 0;
  for (const auto& s : stages_) n += s->max_held_packets();
  return n;
}

std::size_t Pipeline::held_packets() const noexcept {
  std::size_t n = 0;
  for (const auto& s : stages_) n += s->held_packets();
  return n;
}

CounterSnapshot Pipeline::counters() const {
  CounterSnapshot s;
  s.names = counter_names_;
  s.values = values_;
  return s;
}

GaugeSnapshot Pipeline::gauges() const {
  GaugeSnapshot s;
  s.names = gauge_names_;
  // A gauge its stage left unfilled reads NaN rather than a plausible number.
  s.values.assign(gauge_names_.size(), std::numeric_limits<double>::quiet_NaN());
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const std::size_t begin = gauge_begin_[i];
    const std::size_t end = gauge_begin_[i + 1];
    if (end > begin) stages_[i]->read_gauges(std::span<double>(s.values.data() + begin, end - begin));
  }
  return s;
}

}  // namespace tmc
