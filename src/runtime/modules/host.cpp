// The host table and the Stage / CongestionController adapters over a module's C ops.
//
// Hot path: a module stage call costs one indirect call into the module; nothing is
// allocated per message. Each ModuleStage keeps one tmc_io, bound to the StageIo it is
// called with (once per pipeline, not per call): its revision-2 calls go straight to the
// pipeline (Pipeline::bind_module_io) and its counters are the pipeline's own, so a
// module's io.down() or io.count() costs what a built-in's does plus at most one hop.
// The tmc_host table's pipeline calls take the `ctx` (HostCtx) and reach the same StageIo.
#include "runtime/modules/host.hpp"

#include <array>
#include <cstring>
#include <string>

#include "runtime/pipeline.hpp"
#include "tmc/group.hpp"
#include "tmc/packet.hpp"

namespace tmc::detail {

namespace {

// The ctx of every call a module makes back: the pipeline's StageIo for the current call
// and how many counters the module declared (a module must not count past them).
struct HostCtx {
  StageIo* io = nullptr;
  std::uint32_t n_counters = 0;
};

StageIo& io_of(void* ctx) noexcept { return *static_cast<HostCtx*>(ctx)->io; }
Packet* pk(tmc_packet* p) noexcept { return reinterpret_cast<Packet*>(p); }
const Packet* pk(const tmc_packet* p) noexcept { return reinterpret_cast<const Packet*>(p); }
tmc_packet* h(Packet* p) noexcept { return reinterpret_cast<tmc_packet*>(p); }
const Group& gr(const tmc_group* g) noexcept { return *reinterpret_cast<const Group*>(g); }

bool slot_ok(const tmc_group* g, std::uint32_t slot) noexcept { return slot < gr(g).slots(); }

std::uint64_t packet_get(const tmc_packet* hp, std::uint32_t field) noexcept {
  const Packet& p = *pk(hp);
  switch (field) {
    case TMC_PF_KIND: return static_cast<std::uint64_t>(p.kind);
    case TMC_PF_FLAGS: return p.flags;
    case TMC_PF_CHANNEL: return p.channel;
    case TMC_PF_SENDER: return p.sender;
    case TMC_PF_EPOCH: return p.epoch;
    case TMC_PF_SEQ: return p.seq;
    case TMC_PF_RX_NS: return p.rx_ns;
    case TMC_PF_SRC_IP: return p.src_ip;
    case TMC_PF_SRC_PORT: return p.src_port;
    case TMC_PF_DST_IP: return p.dst_ip;
    case TMC_PF_DST_PORT: return p.dst_port;
    case TMC_PF_TOKEN: return p.token;
    case TMC_PF_SEALED: return p.sealed ? 1 : 0;
    case TMC_PF_PAYLOAD_LEN: return p.payload_len;
    default: return 0;
  }
}

void packet_set(tmc_packet* hp, std::uint32_t field, std::uint64_t v) noexcept {
  Packet& p = *pk(hp);
  switch (field) {
    case TMC_PF_KIND:
      if (v <= wire::kMaxKind) p.kind = static_cast<wire::Kind>(v);
      break;
    case TMC_PF_FLAGS: p.flags = static_cast<std::uint16_t>(v & wire::kKnownFlags); break;
    case TMC_PF_CHANNEL: p.channel = static_cast<std::uint32_t>(v); break;
    case TMC_PF_SENDER: p.sender = static_cast<std::uint32_t>(v); break;
    case TMC_PF_EPOCH: p.epoch = static_cast<std::uint32_t>(v); break;
    case TMC_PF_SEQ: p.seq = v; break;
    case TMC_PF_RX_NS: p.rx_ns = v; break;
    case TMC_PF_SRC_IP: p.src_ip = static_cast<std::uint32_t>(v); break;
    case TMC_PF_SRC_PORT: p.src_port = static_cast<std::uint16_t>(v); break;
    case TMC_PF_DST_IP: p.dst_ip = static_cast<std::uint32_t>(v); break;
    case TMC_PF_DST_PORT: p.dst_port = static_cast<std::uint16_t>(v); break;
    case TMC_PF_TOKEN: p.token = v; break;
    default: break;  // read-only or unknown: ignored
  }
}

const tmc_host kHost = {
    .struct_size = sizeof(tmc_host),
    .abi_version = TMC_MODULE_ABI_VERSION,
    .now_ns = [](void* c) noexcept { return io_of(c).now_ns(); },
    .down = [](void* c, tmc_packet* p) noexcept { io_of(c).down(pk(p)); },
    .up = [](void* c, tmc_packet* p) noexcept { io_of(c).up(pk(p)); },
    .drop =
        [](void* c, tmc_packet* p, std::uint32_t reason) noexcept {
          io_of(c).drop(pk(p), reason < kDropReasonCount ? static_cast<DropReason>(reason) : DropReason::unsupported);
        },
    .arm_timer = [](void* c, std::uint64_t d) noexcept { io_of(c).arm_timer(d); },
    .cancel_timer = [](void* c) noexcept { io_of(c).cancel_timer(); },
    .count =
        [](void* c, std::uint32_t index, std::uint64_t n) noexcept {
          if (index < static_cast<HostCtx*>(c)->n_counters) io_of(c).count(index, n);
        },
    .notify =
        [](void* c, const tmc_event* e) noexcept {
          Event ev;
          ev.type = static_cast<EventType>(e->type);
          ev.sender = e->sender;
          ev.epoch = e->epoch;
          ev.seq = e->seq;
          ev.count = e->count;
          ev.token = e->token;
          for (std::uint64_t m = e->members; m != 0; m &= m - 1) ev.members.insert(__builtin_ctzll(m));
          io_of(c).notify(ev);
        },
    .alloc = [](void* c) noexcept { return h(io_of(c).alloc()); },
    .clone = [](void* c, const tmc_packet* p) noexcept { return h(io_of(c).clone(*pk(p))); },
    .alloc_large = [](void* c, std::uint32_t n) noexcept { return h(io_of(c).alloc_large(n)); },
    .group = [](void* c) noexcept { return reinterpret_cast<const tmc_group*>(&io_of(c).group()); },
    .group_view_id = [](const tmc_group* g) noexcept { return gr(g).view_id(); },
    .group_slots = [](const tmc_group* g) noexcept { return static_cast<std::uint32_t>(gr(g).slots()); },
    .group_alive = [](const tmc_group* g) noexcept { return gr(g).alive().word(0); },
    .group_receivers = [](const tmc_group* g) noexcept { return gr(g).receivers().word(0); },
    .group_member_sender =
        [](const tmc_group* g, std::uint32_t s) noexcept {
          return slot_ok(g, s) ? gr(g).member(static_cast<int>(s)).sender : 0u;
        },
    .group_member_epoch =
        [](const tmc_group* g, std::uint32_t s) noexcept {
          return slot_ok(g, s) ? gr(g).member(static_cast<int>(s)).epoch : 0u;
        },
    .group_member_state =
        [](const tmc_group* g, std::uint32_t s) noexcept {
          return slot_ok(g, s) ? static_cast<std::uint32_t>(gr(g).member(static_cast<int>(s)).state) : 0u;
        },
    .group_slot_of_sender =
        [](const tmc_group* g, std::uint32_t sender) noexcept {
          return static_cast<std::int32_t>(gr(g).slot_of_sender(sender));
        },
    .packet_data = [](tmc_packet* p) noexcept { return pk(p)->data(); },
    .packet_len = [](const tmc_packet* p) noexcept { return pk(p)->len; },
    .packet_payload = [](tmc_packet* p) noexcept { return pk(p)->payload(); },
    .packet_push_ext =
        [](tmc_packet* p, std::uint32_t type, std::uint32_t len) noexcept -> std::uint8_t* {
          if (type > 255 || len > 255) return nullptr;
          return pk(p)->push_ext(static_cast<wire::Ext>(type), static_cast<std::uint8_t>(len));
        },
    .packet_ext =
        [](const tmc_packet* p, std::uint32_t type, std::uint32_t* len_out) noexcept -> const std::uint8_t* {
          if (type > 255) return nullptr;
          std::uint8_t n = 0;
          const std::uint8_t* body = pk(p)->ext(static_cast<wire::Ext>(type), &n);
          if (len_out != nullptr) *len_out = n;
          return body;
        },
    .packet_seal = [](tmc_packet* p) noexcept { pk(p)->seal(); },
    .packet_reset_for_send = [](tmc_packet* p, std::uint32_t n) noexcept { pk(p)->reset_for_send(n); },
    .packet_release = [](tmc_packet* p) noexcept { pk(p)->release(); },
    .packet_get = &packet_get,
    .packet_set = &packet_set,
    .reserved = {},
    .io_size = sizeof(tmc_io),
    .reserved_r2 = 0,
};

StageIo& so(void* s) noexcept { return *static_cast<StageIo*>(s); }

// The bound calls over any StageIo (a test's or a benchmark's): one virtual call each.
// Counters go through the host table (the StageIo owns them).
void bind_any_io(StageIo& io, tmc_io& v) noexcept {
  v.self = &io;
  v.down = [](void* s, tmc_packet* p) noexcept { so(s).down(pk(p)); };
  v.up = [](void* s, tmc_packet* p) noexcept { so(s).up(pk(p)); };
  v.drop = [](void* s, tmc_packet* p, std::uint32_t reason) noexcept {
    so(s).drop(pk(p), reason < kDropReasonCount ? static_cast<DropReason>(reason) : DropReason::unsupported);
  };
  v.arm_timer = [](void* s, std::uint64_t d) noexcept { so(s).arm_timer(d); };
  v.cancel_timer = [](void* s) noexcept { so(s).cancel_timer(); };
  v.alloc = [](void* s) noexcept { return h(so(s).alloc()); };
  v.clone = [](void* s, const tmc_packet* p) noexcept { return h(so(s).clone(*pk(p))); };
  v.counters = nullptr;
}

class ModuleStage final : public Stage {
 public:
  ModuleStage(std::shared_ptr<const LoadedModule> module, const tmc_stage_kind* kind, const StageInfo* info,
              std::size_t fault_counter)
      : module_(std::move(module)), kind_(kind), info_(info), fault_counter_(fault_counter) {
    ctx_.n_counters = static_cast<std::uint32_t>(fault_counter);
    io_.host = &kHost;
    io_.ctx = &ctx_;
    io_.n_counters = ctx_.n_counters;
  }
  ~ModuleStage() override {
    if (state_ != nullptr) kind_->destroy(state_);
  }
  ModuleStage(const ModuleStage&) = delete;
  ModuleStage& operator=(const ModuleStage&) = delete;

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    // Values in the order of the kind's declared parameters (the registry filled them all).
    std::vector<std::string> texts;
    std::vector<tmc_param_value> values;
    texts.reserve(info_->params.size());
    values.reserve(info_->params.size());
    for (const ParamSpec& spec : info_->params) {
      tmc_param_value v{};
      v.name = spec.name.data();  // NUL-terminated: points into the module's table
      v.type = static_cast<std::uint32_t>(spec.type);
      auto it = params.values().find(spec.name);
      texts.push_back(it == params.values().end() ? std::string(spec.default_value) : param_value_to_string(it->second));
      switch (spec.type) {
        case ParamType::boolean: v.boolean = params.boolean(spec.name) ? 1 : 0; break;
        case ParamType::integer: v.integer = params.integer(spec.name); break;
        case ParamType::real: v.real = params.real(spec.name); break;
        default: break;
      }
      values.push_back(v);
    }
    for (std::size_t i = 0; i < values.size(); ++i) values[i].text = texts[i].c_str();
    tmc_stage_env e{};
    e.struct_size = sizeof(e);
    e.channel = env.channel;
    e.sender = env.sender;
    e.epoch = env.epoch;
    e.seed = env.seed;
    e.max_payload_bytes = env.max_payload_bytes;
    std::array<char, 512> err{};
    state_ = kind_->create(values.data(), static_cast<std::uint32_t>(values.size()), &e, err.data(), err.size());
    if (state_ == nullptr) {
      err.back() = '\0';
      errors.push_back("module " + module_->name() + " " + module_->version() + ": create failed: " +
                       (err[0] != '\0' ? std::string(err.data()) : std::string("no reason given")));
      return false;
    }
    return true;
  }

  // Hot: one test, the view's clock, one indirect call; after it only `this` is live (a
  // fault reads the StageIo back from the view), so the call needs almost no frame.
  // send_ / receive_ are the module's operations, null when it has none (pass-through) or
  // after a fault (drop).
  void on_send(Packet* p, StageIo& io) noexcept override {
    if (send_ == nullptr || &io != ctx_.io) [[unlikely]] return on_send_slow(p, io);
    io_.now_ns = io.now_ns();
    if (send_(state_, h(p), &io_) != 0) [[unlikely]] fault(*ctx_.io);
  }
  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (receive_ == nullptr || &io != ctx_.io) [[unlikely]] return on_receive_slow(p, io);
    io_.now_ns = io.now_ns();
    if (receive_(state_, h(p), &io_) != 0) [[unlikely]] fault(*ctx_.io);
  }
  void on_tick(StageIo& io) noexcept override { hook(kind_->on_tick, io); }
  void on_start(StageIo& io) noexcept override { hook(kind_->on_start, io); }
  void on_stop(StageIo& io) noexcept override { hook(kind_->on_stop, io); }
  [[nodiscard]] std::size_t held_packets() const noexcept override {
    return kind_->held_packets != nullptr ? kind_->held_packets(state_) : 0;
  }
  [[nodiscard]] std::size_t max_held_packets() const noexcept override {
    return kind_->max_held_packets != nullptr ? kind_->max_held_packets(state_) : 0;
  }
  [[nodiscard]] std::size_t send_backlog() const noexcept override {
    return failed_ || kind_->send_backlog == nullptr ? 0 : kind_->send_backlog(state_);
  }

 private:
  void hook(int (*fn)(void*, const tmc_io*), StageIo& io) noexcept {
    if (failed_ || fn == nullptr) return;
    enter(io);
    if (fn(state_, &io_) != 0) [[unlikely]] fault(io);
  }
  [[gnu::noinline]] void on_send_slow(Packet* p, StageIo& io) noexcept {
    if (send_ == nullptr) return failed_ ? io.drop(p, DropReason::unsupported) : io.down(p);
    enter(io);
    if (send_(state_, h(p), &io_) != 0) fault(io);
  }
  [[gnu::noinline]] void on_receive_slow(Packet* p, StageIo& io) noexcept {
    if (receive_ == nullptr) return failed_ ? io.drop(p, DropReason::unsupported) : io.up(p);
    enter(io);
    if (receive_(state_, h(p), &io_) != 0) fault(io);
  }
  // The view is rebuilt only when the stage is called with another StageIo than the last
  // (in a pipeline: once, on the first call).
  void enter(StageIo& io) noexcept {
    if (&io != ctx_.io) {
      ctx_.io = &io;
      if (!Pipeline::bind_module_io(io, io_)) bind_any_io(io, io_);
    }
    io_.now_ns = io.now_ns();
  }
  // Contained: counted, and the stage is never called again (a stage that broke its own
  // invariants cannot be trusted with the next packet). Its timer is disarmed.
  [[gnu::cold, gnu::noinline]] void fault(StageIo& io) noexcept {
    failed_ = true;
    send_ = nullptr;
    receive_ = nullptr;
    io.count(fault_counter_, 1);
    io.cancel_timer();
  }

  std::shared_ptr<const LoadedModule> module_;
  const tmc_stage_kind* kind_;
  const StageInfo* info_;
  std::size_t fault_counter_;
  void* state_ = nullptr;
  int (*send_)(void*, tmc_packet*, const tmc_io*) = kind_->on_send;
  int (*receive_)(void*, tmc_packet*, const tmc_io*) = kind_->on_receive;
  bool failed_ = false;
  HostCtx ctx_;
  tmc_io io_{};
};

}  // namespace

const tmc_host& module_host() noexcept { return kHost; }

std::unique_ptr<Stage> make_module_stage(std::shared_ptr<const LoadedModule> module, const tmc_stage_kind* kind,
                                         const StageInfo* info, std::size_t fault_counter) {
  return std::make_unique<ModuleStage>(std::move(module), kind, info, fault_counter);
}

namespace {

class ModuleController final : public CongestionController {
 public:
  ModuleController(std::shared_ptr<const LoadedModule> module, const tmc_controller_kind* kind, void* state)
      : module_(std::move(module)), kind_(kind), state_(state) {}
  ~ModuleController() override { kind_->destroy(state_); }
  ModuleController(const ModuleController&) = delete;
  ModuleController& operator=(const ModuleController&) = delete;

  void on_sent(std::uint64_t bytes, std::uint64_t now_ns) noexcept override {
    if (kind_->on_sent != nullptr) kind_->on_sent(state_, bytes, now_ns);
  }
  void on_acked(std::uint64_t bytes, std::uint64_t rtt_ns, std::uint64_t now_ns) noexcept override {
    if (kind_->on_acked != nullptr) kind_->on_acked(state_, bytes, rtt_ns, now_ns);
  }
  void on_loss(std::uint64_t now_ns) noexcept override {
    if (kind_->on_loss != nullptr) kind_->on_loss(state_, now_ns);
  }
  void on_timeout(std::uint64_t now_ns) noexcept override {
    if (kind_->on_timeout != nullptr) return kind_->on_timeout(state_, now_ns);
    on_loss(now_ns);
  }
  [[nodiscard]] std::uint64_t window_bytes() const noexcept override { return kind_->window_bytes(state_); }
  [[nodiscard]] std::string_view name() const noexcept override { return kind_->name; }

 private:
  std::shared_ptr<const LoadedModule> module_;
  const tmc_controller_kind* kind_;
  void* state_;
};

}  // namespace

std::unique_ptr<CongestionController> make_module_controller(std::shared_ptr<const LoadedModule> module,
                                                             const tmc_controller_kind* kind,
                                                             const CongestionLimits& limits, std::string* error) {
  tmc_congestion_limits l{limits.mss_bytes, limits.initial_window_packets, limits.min_window_packets,
                          limits.max_window_packets};
  std::array<char, 512> err{};
  void* state = kind->create(&l, err.data(), err.size());
  if (state == nullptr) {
    err.back() = '\0';
    if (error != nullptr) {
      *error = "module " + module->name() + " " + module->version() + ": controller '" + kind->name +
               "' create failed: " + (err[0] != '\0' ? std::string(err.data()) : std::string("no reason given"));
    }
    return nullptr;
  }
  return std::make_unique<ModuleController>(std::move(module), kind, state);
}

}  // namespace tmc::detail
