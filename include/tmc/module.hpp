// The C++ side of a module: write an ordinary tmc::Stage (with its tmc::StageInfo) or
// tmc::CongestionController, and export it with one macro.
//
//   #include <tmc/module.hpp>
//   class Tally final : public tmc::Stage { ... };            // an ordinary stage
//   tmc::StageInfo tally_info() {                              // its ordinary description
//     return {.kind = "tally.count", ..., .factory = [] { return std::make_unique<Tally>(); },
//             .layer = tmc::StageLayer::datagram};
//   }
//   TMC_MODULE("tally", "1.0.0",
//              TMC_MODULE_STAGE(tally_info()),
//              TMC_MODULE_CONTROLLER("toy", "a fixed window", make_toy));
//
// TMC_MODULE defines the module's entry point (tmc_module_entry, see tmc/module_abi.h): on
// its first call it evaluates the items once, keeps them for the module's life and builds
// the C table from them. Items:
//   TMC_MODULE_STAGE(info)                 a tmc::StageInfo (its `layer` places it)
//   TMC_MODULE_CONTROLLER(name, doc, make) make(const tmc::CongestionLimits&) returns a
//                                          std::unique_ptr<tmc::CongestionController>
//   TMC_MODULE_C_STAGE(kind_ptr)           a struct tmc_stage_kind written against the C ABI
//
// What the adapter does at the boundary
//   * Each stage instance is wrapped in a state the C operations point to; the Stage sees a
//     StageIo whose calls go to the host's table, and tmc::Packet pointers that are the
//     host's own packets (no copy). This shares tmc::Packet and tmc::Group with the host,
//     so the table carries a fingerprint of their layout (cxx_layout) and the loader
//     refuses a module built against different headers or a different standard library.
//     A module that must not depend on the C++ toolchain writes to tmc/module_abi.h alone.
//   * No exception crosses it: configure() or a factory that throws makes create() fail
//     with the exception's text (the channel's open fails, naming the module stage); the
//     hot calls are noexcept in tmc::Stage (a throw there would end the process before
//     any boundary could catch it), so a stage that finds itself broken reports it with
//     tmc::module::fault(io) and returns: the host then counts "<kind>.module_faults",
//     stops calling the stage and drops what reaches it.
//   * A module links libtmc (tmc::Params and tmc::Packet's out-of-line members come from
//     the process's own copy), and nothing else of the host's.
//
// Everything else is the stage contract of tmc/stage.hpp: deterministic, no clock, no
// global randomness, no allocation on the hot path (the adapter adds none).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tmc/congestion.hpp"
#include "tmc/group.hpp"
#include "tmc/module_abi.h"
#include "tmc/packet.hpp"
#include "tmc/stage.hpp"

namespace tmc::module {

/// The fingerprint of the C++ types the adapter shares with the host. The host computes
/// it from its own headers and refuses a module whose value differs.
[[nodiscard]] constexpr std::uint64_t cxx_layout() noexcept {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the sizes and offsets below
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFFu;
      h *= 1099511628211ull;
    }
  };
  mix(sizeof(Packet));
  mix(offsetof(Packet, buf));
  mix(offsetof(Packet, off));
  mix(offsetof(Packet, len));
  mix(offsetof(Packet, kind));
  mix(offsetof(Packet, sender));
  mix(offsetof(Packet, payload_off));
  mix(offsetof(Packet, payload_len));
  mix(offsetof(Packet, n_ext));
  mix(offsetof(Packet, seq));
  mix(offsetof(Packet, token));
  mix(offsetof(Packet, next));
  mix(offsetof(Packet, pool));
  mix(kHeadroom);
  mix(wire::kMaxExtensions);
  mix(sizeof(Group));
  mix(sizeof(MemberInfo));
  mix(sizeof(std::string));
  mix(sizeof(std::vector<int>));
  mix(sizeof(Params));
  mix(sizeof(Event));
  mix(kDropReasonCount);
  mix(TMC_MODULE_ABI_VERSION);
#if defined(_GLIBCXX_USE_CXX11_ABI)
  mix(_GLIBCXX_USE_CXX11_ABI + 1u);
#endif
  return h;
}

namespace detail {

/// The StageIo a module's stage sees. Its hot calls use the tmc_io's bound calls (revision
/// 2): down() is one indirect call into the pipeline and count() adds to the pipeline's
/// counter block in place. Under a host that predates them, the same calls go through the
/// host's table.
class AdapterIo final : public StageIo {
 public:
  AdapterIo() noexcept : StageIo(nullptr) {}
  /// The host keeps one tmc_io per stage instance (its fields are read at each call), so
  /// this does work only on a stage's first call. Under a host without the revision-2
  /// calls, `view_` is a copy whose calls are the host table's (same signatures, with the
  /// context as `self`), so the hot calls below never branch on the revision.
  void enter(const tmc_io* io) noexcept {
    if (io == io_) [[likely]] return;
    io_ = io;
    now_ns_ = &io->now_ns;  // the host's clock for the current call
    if (TMC_IO_HAS(io, reserved)) {
      view_ = io;
      return;
    }
    const tmc_host* h = io->host;
    shadow_ = tmc_io{};
    shadow_.self = io->ctx;
    shadow_.down = h->down;
    shadow_.up = h->up;
    shadow_.drop = h->drop;
    shadow_.arm_timer = h->arm_timer;
    shadow_.cancel_timer = h->cancel_timer;
    shadow_.alloc = h->alloc;
    shadow_.clone = h->clone;
    view_ = &shadow_;
  }
  void down(Packet* p) noexcept override { view_->down(view_->self, handle(p)); }
  void up(Packet* p) noexcept override { view_->up(view_->self, handle(p)); }
  void drop(Packet* p, DropReason reason) noexcept override {
    view_->drop(view_->self, handle(p), static_cast<std::uint32_t>(reason));
  }
  void arm_timer(std::uint64_t deadline_ns) noexcept override { view_->arm_timer(view_->self, deadline_ns); }
  void cancel_timer() noexcept override { view_->cancel_timer(view_->self); }
  void count(std::size_t index, std::uint64_t n) noexcept override {
    if (view_->counters != nullptr) {
      if (index < view_->n_counters) view_->counters[index] += n;
      return;
    }
    io_->host->count(io_->ctx, static_cast<std::uint32_t>(index), n);
  }
  void notify(const Event& e) noexcept override {
    tmc_event c{};
    c.type = static_cast<std::uint32_t>(e.type);
    c.sender = e.sender;
    c.epoch = e.epoch;
    c.seq = e.seq;
    c.count = e.count;
    c.token = e.token;
    c.members = e.members.word(0);  // slots 0..63 (the C event holds one mask)
    io_->host->notify(io_->ctx, &c);
  }
  Packet* alloc() noexcept override { return packet(view_->alloc(view_->self)); }
  Packet* clone(const Packet& p) noexcept override {
    return packet(view_->clone(view_->self, reinterpret_cast<const tmc_packet*>(&p)));
  }
  Packet* alloc_large(std::uint32_t payload_bytes) noexcept override {
    return packet(io_->host->alloc_large(io_->ctx, payload_bytes));
  }
  /// The host's view; a module stage only reads it.
  Group& group() noexcept override {
    return *const_cast<Group*>(reinterpret_cast<const Group*>(io_->host->group(io_->ctx)));
  }

  bool faulted = false;

  static tmc_packet* handle(Packet* p) noexcept { return reinterpret_cast<tmc_packet*>(p); }
  static Packet* packet(tmc_packet* p) noexcept { return reinterpret_cast<Packet*>(p); }

 private:
  const tmc_io* io_ = nullptr;    ///< what the host passed
  const tmc_io* view_ = nullptr;  ///< io_, or shadow_ under a host without revision 2
  tmc_io shadow_{};
};

/// One stage instance behind the C operations.
struct StageState {
  std::unique_ptr<Stage> stage;
  AdapterIo io;
};

inline void write_error(char* err, std::size_t cap, std::string_view text) noexcept {
  if (err == nullptr || cap == 0) return;
  const std::size_t n = text.size() < cap - 1 ? text.size() : cap - 1;
  std::memcpy(err, text.data(), n);
  err[n] = '\0';
}

inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

/// A stage kind exported through the adapter: the author's StageInfo plus the C arrays
/// built from it (they point into `info`, which lives as long as the module).
struct StageEntry {
  StageInfo info;
  std::vector<std::string> kind_copy;
  std::vector<std::vector<const char*>> one_of;
  std::vector<std::string> strings;  // NUL-terminated copies of every string_view
  std::vector<tmc_param_spec> params;
  std::vector<tmc_counter_spec> counters;
  std::vector<tmc_wire_extension> extensions;
  std::vector<const char*> below;
  std::vector<const char*> above;
  tmc_stage_kind c{};
};

struct ControllerEntry {
  std::string name;
  std::string doc;
  std::function<std::unique_ptr<CongestionController>(const CongestionLimits&)> make;
  tmc_controller_kind c{};
};

/// One argument of TMC_MODULE.
struct Item {
  std::shared_ptr<StageEntry> stage;
  std::shared_ptr<ControllerEntry> controller;
  const tmc_stage_kind* c_stage = nullptr;
};

// --- the C operations of an adapted stage -------------------------------------------------

inline void* stage_create(const StageEntry& e, const tmc_param_value* values, std::uint32_t n,
                          const tmc_stage_env* env, char* err, std::size_t err_cap) noexcept {
  try {
    Params params;
    for (std::uint32_t i = 0; i < n; ++i) {
      const tmc_param_value& v = values[i];
      switch (v.type) {
        case TMC_PARAM_BOOL: params.set(v.name, v.boolean != 0); break;
        case TMC_PARAM_INT: params.set(v.name, v.integer); break;
        case TMC_PARAM_REAL: params.set(v.name, v.real); break;
        case TMC_PARAM_STRING: params.set(v.name, std::string(v.text)); break;
        default: params.set(v.name, split_list(v.text)); break;
      }
    }
    StageEnv se;
    se.channel = env->channel;
    se.sender = env->sender;
    se.epoch = env->epoch;
    se.seed = env->seed;
    se.max_payload_bytes = env->max_payload_bytes;
    auto state = std::make_unique<StageState>();
    state->stage = e.info.factory();
    if (!state->stage) {
      write_error(err, err_cap, "the factory returned no stage");
      return nullptr;
    }
    std::vector<std::string> errors;
    if (!state->stage->configure(params, se, errors)) {
      std::string text;
      for (const std::string& s : errors) text += (text.empty() ? "" : "; ") + s;
      write_error(err, err_cap, text.empty() ? "configure() refused its parameters" : text);
      return nullptr;
    }
    return state.release();
  } catch (const std::exception& ex) {
    write_error(err, err_cap, std::string("threw: ") + ex.what());
  } catch (...) {
    write_error(err, err_cap, "threw an exception that is not a std::exception");
  }
  return nullptr;
}

inline void stage_destroy(void* s) noexcept {
  try {
    delete static_cast<StageState*>(s);
  } catch (...) {  // a destructor that throws is the module's bug; the state is gone either way
  }
}

template <auto Call>
int stage_call(void* s, const tmc_io* io) noexcept {
  auto* st = static_cast<StageState*>(s);
  st->io.enter(io);
  (st->stage.get()->*Call)(st->io);
  return st->io.faulted ? 1 : 0;
}

template <auto Call>
int stage_packet_call(void* s, tmc_packet* p, const tmc_io* io) noexcept {
  auto* st = static_cast<StageState*>(s);
  st->io.enter(io);
  (st->stage.get()->*Call)(AdapterIo::packet(p), st->io);
  return st->io.faulted ? 1 : 0;
}

inline std::uint64_t stage_held(const void* s) noexcept {
  return static_cast<const StageState*>(s)->stage->held_packets();
}
inline std::uint64_t stage_max_held(const void* s) noexcept {
  return static_cast<const StageState*>(s)->stage->max_held_packets();
}
inline std::uint64_t stage_backlog(const void* s) noexcept {
  return static_cast<const StageState*>(s)->stage->send_backlog();
}

/// A NUL-terminated copy of `s` that lives as long as the entry.
inline const char* keep(StageEntry& e, std::string_view s) {
  e.strings.emplace_back(s);
  return e.strings.back().c_str();
}

inline const char* keep_or_null(StageEntry& e, std::string_view s) { return s.empty() ? nullptr : keep(e, s); }

// create() has no user pointer in the C ABI, so an adapted kind's create is one of a fixed
// set of trampolines, each bound to one slot; a module may export up to kMaxStages kinds.
inline constexpr std::size_t kMaxStages = 16;
inline StageEntry* g_slots[kMaxStages] = {};

template <std::size_t I>
void* create_slot(const tmc_param_value* v, std::uint32_t n, const tmc_stage_env* env, char* err,
                  std::size_t cap) noexcept {
  return stage_create(*g_slots[I], v, n, env, err, cap);
}

template <std::size_t... I>
constexpr auto make_create_slots(std::index_sequence<I...>) {
  using Fn = void* (*)(const tmc_param_value*, std::uint32_t, const tmc_stage_env*, char*, std::size_t);
  return std::array<Fn, sizeof...(I)>{&create_slot<I>...};
}

inline void build_stage(StageEntry& e, std::size_t slot) {
  const StageInfo& i = e.info;
  e.strings.reserve(4 + 6 * i.params.size() + 2 * i.counters.size() + 4 * i.extensions.size() +
                    i.requires_below.size() + i.requires_above.size() + 64);
  for (const ParamSpec& p : i.params) {
    std::vector<const char*> words;
    for (std::string_view w : p.one_of) words.push_back(keep(e, w));
    e.one_of.push_back(std::move(words));
  }
  for (std::size_t k = 0; k < i.params.size(); ++k) {
    const ParamSpec& p = i.params[k];
    tmc_param_spec c{};
    c.name = keep(e, p.name);
    c.type = static_cast<std::uint32_t>(p.type);
    c.default_value = keep(e, p.default_value);
    c.doc = keep(e, p.doc);
    c.min = p.min;
    c.max = p.max;
    c.lo = p.lo;
    c.hi = p.hi;
    if (p.min != std::numeric_limits<std::int64_t>::min()) c.flags |= TMC_PARAM_HAS_MIN;
    if (p.max != std::numeric_limits<std::int64_t>::max()) c.flags |= TMC_PARAM_HAS_MAX;
    if (p.lo != -std::numeric_limits<double>::infinity()) c.flags |= TMC_PARAM_HAS_LO;
    if (p.hi != std::numeric_limits<double>::infinity()) c.flags |= TMC_PARAM_HAS_HI;
    if (p.lo_open) c.flags |= TMC_PARAM_LO_OPEN;
    c.one_of = e.one_of[k].empty() ? nullptr : e.one_of[k].data();
    c.n_one_of = static_cast<std::uint32_t>(e.one_of[k].size());
    e.params.push_back(c);
  }
  for (const CounterSpec& s : i.counters) e.counters.push_back({keep(e, s.name), keep(e, s.doc)});
  for (const WireExtension& x : i.extensions) {
    e.extensions.push_back({x.type, static_cast<std::uint32_t>(x.body_bytes), keep(e, x.name),
                            keep(e, x.carried_on), keep(e, x.body)});
  }
  for (std::string_view k : i.requires_below) e.below.push_back(keep(e, k));
  for (std::string_view k : i.requires_above) e.above.push_back(keep(e, k));

  static constexpr auto kCreate = make_create_slots(std::make_index_sequence<kMaxStages>{});
  g_slots[slot] = &e;
  tmc_stage_kind& c = e.c;
  c.struct_size = sizeof(tmc_stage_kind);
  // StageLayer counts from `none`; enum tmc_layer from ordering. A kind without a layer
  // is placed as a datagram stage.
  c.layer = i.layer == StageLayer::none ? std::uint32_t{TMC_LAYER_DATAGRAM} : static_cast<std::uint32_t>(i.layer) - 1;
  c.kind = keep(e, i.kind);
  c.synopsis = keep(e, i.synopsis);
  c.notes = keep(e, i.notes);
  c.params = e.params.data();
  c.n_params = static_cast<std::uint32_t>(e.params.size());
  c.counters = e.counters.data();
  c.n_counters = static_cast<std::uint32_t>(e.counters.size());
  c.extensions = e.extensions.data();
  c.n_extensions = static_cast<std::uint32_t>(e.extensions.size());
  c.wire_bytes_per_datagram = static_cast<std::uint32_t>(i.wire_bytes_per_datagram);
  c.wire_bytes_per_message = static_cast<std::uint32_t>(i.wire_bytes_per_message);
  c.per_message = i.per_message ? 1u : 0u;
  c.serves = keep_or_null(e, i.serves);
  c.requires_below = e.below.data();
  c.n_requires_below = static_cast<std::uint32_t>(e.below.size());
  c.requires_above = e.above.data();
  c.n_requires_above = static_cast<std::uint32_t>(e.above.size());
  c.create = kCreate[slot];
  c.destroy = &stage_destroy;
  c.on_send = &stage_packet_call<&Stage::on_send>;
  c.on_receive = &stage_packet_call<&Stage::on_receive>;
  c.on_tick = &stage_call<&Stage::on_tick>;
  c.on_start = &stage_call<&Stage::on_start>;
  c.on_stop = &stage_call<&Stage::on_stop>;
  c.held_packets = &stage_held;
  c.max_held_packets = &stage_max_held;
  c.send_backlog = &stage_backlog;
}

// --- controllers --------------------------------------------------------------------------

inline constexpr std::size_t kMaxControllers = 8;
inline ControllerEntry* g_controller_slots[kMaxControllers] = {};

template <std::size_t I>
void* controller_create_slot(const tmc_congestion_limits* l, char* err, std::size_t cap) noexcept {
  try {
    CongestionLimits limits;
    limits.mss_bytes = l->mss_bytes;
    limits.initial_window_packets = l->initial_window_packets;
    limits.min_window_packets = l->min_window_packets;
    limits.max_window_packets = l->max_window_packets;
    std::unique_ptr<CongestionController> c = g_controller_slots[I]->make(limits);
    if (!c) write_error(err, cap, "the factory returned no controller");
    return c.release();
  } catch (const std::exception& ex) {
    write_error(err, cap, std::string("threw: ") + ex.what());
  } catch (...) {
    write_error(err, cap, "threw an exception that is not a std::exception");
  }
  return nullptr;
}

template <std::size_t... I>
constexpr auto make_controller_slots(std::index_sequence<I...>) {
  using Fn = void* (*)(const tmc_congestion_limits*, char*, std::size_t);
  return std::array<Fn, sizeof...(I)>{&controller_create_slot<I>...};
}

inline CongestionController* cc(void* s) noexcept { return static_cast<CongestionController*>(s); }

inline void build_controller(ControllerEntry& e, std::size_t slot) {
  static constexpr auto kCreate = make_controller_slots(std::make_index_sequence<kMaxControllers>{});
  g_controller_slots[slot] = &e;
  tmc_controller_kind& c = e.c;
  c.struct_size = sizeof(tmc_controller_kind);
  c.name = e.name.c_str();
  c.doc = e.doc.c_str();
  c.create = kCreate[slot];
  c.destroy = [](void* s) noexcept {
    try {
      delete cc(s);
    } catch (...) {
    }
  };
  c.on_sent = [](void* s, std::uint64_t bytes, std::uint64_t now) noexcept { cc(s)->on_sent(bytes, now); };
  c.on_acked = [](void* s, std::uint64_t bytes, std::uint64_t rtt, std::uint64_t now) noexcept {
    cc(s)->on_acked(bytes, rtt, now);
  };
  c.on_loss = [](void* s, std::uint64_t now) noexcept { cc(s)->on_loss(now); };
  c.on_timeout = [](void* s, std::uint64_t now) noexcept { cc(s)->on_timeout(now); };
  c.window_bytes = [](const void* s) noexcept {
    return static_cast<const CongestionController*>(s)->window_bytes();
  };
}

/// The module's table and everything it points into; built once, never freed (the
/// module's own static storage outlives every table pointer the host keeps).
struct ModuleTable {
  std::vector<Item> items;
  std::vector<const tmc_stage_kind*> stages;
  std::vector<const tmc_controller_kind*> controllers;
  tmc_module c{};
};

inline const tmc_module* build_module(const char* name, const char* version, std::vector<Item> items) {
  auto* t = new ModuleTable;
  t->items = std::move(items);
  std::size_t n_stages = 0;
  std::size_t n_controllers = 0;
  for (Item& it : t->items) {
    if (it.stage) {
      if (n_stages == kMaxStages) return nullptr;
      build_stage(*it.stage, n_stages++);
      t->stages.push_back(&it.stage->c);
    } else if (it.controller) {
      if (n_controllers == kMaxControllers) return nullptr;
      build_controller(*it.controller, n_controllers++);
      t->controllers.push_back(&it.controller->c);
    } else if (it.c_stage != nullptr) {
      t->stages.push_back(it.c_stage);
    }
  }
  t->c.struct_size = sizeof(tmc_module);
  t->c.abi_version = TMC_MODULE_ABI_VERSION;
  t->c.name = name;
  t->c.version = version;
  t->c.stages = t->stages.data();
  t->c.n_stages = static_cast<std::uint32_t>(t->stages.size());
  t->c.controllers = t->controllers.data();
  t->c.n_controllers = static_cast<std::uint32_t>(t->controllers.size());
  t->c.cxx_layout = cxx_layout();
  return &t->c;
}

/// The body of tmc_module_entry: builds the table on the first call (thread-safe static
/// initialisation); an exception while building it refuses the load (NULL).
template <class Items>
const tmc_module* entry(const char* name, const char* version, Items&& make_items) noexcept {
  static const tmc_module* table = [&]() noexcept -> const tmc_module* {
    try {
      return build_module(name, version, make_items());
    } catch (...) {
      return nullptr;
    }
  }();
  return table;
}

}  // namespace detail

/// Inside a hot call of a module stage: report that the stage cannot go on (a broken
/// invariant). The host counts "<kind>.module_faults", stops calling the stage and drops
/// what reaches it. Only for stages exported through TMC_MODULE.
inline void fault(StageIo& io) noexcept { static_cast<detail::AdapterIo&>(io).faulted = true; }

inline detail::Item stage(StageInfo info) {
  auto e = std::make_shared<detail::StageEntry>();
  e->info = std::move(info);
  detail::Item it;
  it.stage = std::move(e);
  return it;
}

template <class Make>
detail::Item controller(std::string name, std::string doc, Make make) {
  auto e = std::make_shared<detail::ControllerEntry>();
  e->name = std::move(name);
  e->doc = std::move(doc);
  e->make = std::move(make);
  detail::Item it;
  it.controller = std::move(e);
  return it;
}

inline detail::Item c_stage(const tmc_stage_kind* kind) {
  detail::Item it;
  it.c_stage = kind;
  return it;
}

}  // namespace tmc::module

#define TMC_MODULE_STAGE(info) ::tmc::module::stage(info)
#define TMC_MODULE_CONTROLLER(name, doc, make) ::tmc::module::controller(name, doc, make)
#define TMC_MODULE_C_STAGE(kind_ptr) ::tmc::module::c_stage(kind_ptr)

/// Defines the module's entry point; see the top of this file.
#define TMC_MODULE(NAME, VERSION, ...)                                                         \
  extern "C" TMC_MODULE_EXPORT const struct tmc_module* tmc_module_entry(const struct tmc_host* host) { \
    (void)host;                                                                                \
    return ::tmc::module::detail::entry(                                                       \
        NAME, VERSION, [] { return std::vector<::tmc::module::detail::Item>{__VA_ARGS__}; });  \
  }
