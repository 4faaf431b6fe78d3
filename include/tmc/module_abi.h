/* The module ABI: how a shared object adds stage kinds and congestion controllers to libTMC.
 *
 * Terms
 *   module      one shared object. It exports one function, tmc_module_entry, which returns
 *               a pointer to a static, read-only table (struct tmc_module) describing it.
 *   stage kind  what a module provides for a pipeline: a struct tmc_stage_kind carries the
 *               same facts as tmc::StageInfo (kind, synopsis, notes, parameters, counters,
 *               wire bytes, extensions, placement layer) and the stage's operations as C
 *               function pointers over an opaque state (`void*`) the module owns.
 *   controller  a congestion-control algorithm, found by name for `congestion control:`
 *               (struct tmc_controller_kind), with create/destroy and the calls of
 *               tmc::CongestionController.
 *   host        the runtime side. It hands every operation a `struct tmc_io`: a pointer to
 *               the host's function table (struct tmc_host, static and read-only), a
 *               context for the current pipeline, and (revision 2) the pipeline's hot
 *               calls and counters bound to the stage. Packets are opaque handles
 *               (struct tmc_packet) read and changed only through tmc_host's accessors.
 *
 * Versions and growth
 *   `abi_version` is the one number the runtime compares: a module whose abi_version is
 *   above TMC_MODULE_ABI_VERSION of the runtime is refused (it may rely on what the runtime
 *   lacks); one at or below it that the runtime still speaks loads. Every struct begins
 *   with `struct_size` (sizeof as the module was compiled): a struct may grow at its end
 *   without a new abi_version, and the runtime reads a field only when struct_size covers
 *   it; fields past a module's struct_size read as absent (NULL / 0). A struct_size too
 *   small for the fields a version requires is refused. `reserved` fields must be zero.
 *   The host's table also begins with struct_size, so a module built against a newer
 *   header checks that a host call exists before using it (TMC_HOST_HAS), and a field of
 *   struct tmc_io past revision 1 before reading it (TMC_IO_HAS).
 *   Revisions of ABI 1: revision 2 appends tmc_host.io_size and tmc_io's bound calls.
 *
 * Lifecycle of a stage
 *   create(params, env) once per pipeline (cold; may allocate) -> on_start -> hot calls
 *   (on_send, on_receive, on_tick) -> on_stop -> destroy. create returns the state or NULL
 *   with a message in `err`. Counters are indexes into the kind's `counters` array.
 *
 * Ownership of buffers
 *   A tmc_packet handle is owned by exactly one party. Handing it to io->host->down, up or
 *   drop, or to release, gives it away; a stage that keeps packets (a repair buffer) holds
 *   the handle and must give it back by stop/destroy at the latest. Packets come from the
 *   host's pool only (alloc, clone, alloc_large). Strings and arrays in the module's tables
 *   are static: the runtime reads them while the module is loaded and never frees them.
 *   Parameter values passed to create live only for that call.
 *
 * Threading
 *   One pipeline's calls never run concurrently: a stage needs no lock. Different pipelines
 *   (channels, simulated members) may run on different threads at once, so a module keeps
 *   no mutable global state. tmc_module_entry may be called more than once.
 *
 * Determinism
 *   A stage or controller never reads a clock, sleeps, touches a socket, starts a thread or
 *   uses a process-wide random source. Time comes from io->host->now_ns (and `now_ns`
 *   arguments), randomness from env->seed. Given the same inputs it produces the same
 *   outputs: that is what lets the simulator replay a failing seed exactly.
 *
 * Hot calls
 *   on_send, on_receive, on_tick, the packet accessors and every controller call run per
 *   message: they must not allocate and must not block.
 *
 * Misbehaviour
 *   A hot operation returns 0 on success and non-zero on a fault (the C++ adapter returns
 *   non-zero when the stage throws; no exception ever crosses this boundary). The runtime
 *   then counts the fault on the channel (counter "<kind>.module_faults"), stops calling
 *   the stage and drops every packet that reaches it from then on (drops.unsupported). A
 *   packet handed to the faulting call is considered lost. A create that fails makes the
 *   channel's open fail with the module's message. A module that crashes (a bad pointer)
 *   cannot be contained in-process: load only modules whose digest a trusted index vouches for.
 *
 * Nothing in this header is C++: it compiles as C99 and as C++.
 */
#ifndef TMC_MODULE_ABI_H
#define TMC_MODULE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version this header describes. */
#define TMC_MODULE_ABI_VERSION 1u
/** The symbol every module exports (type tmc_module_entry_fn). */
#define TMC_MODULE_ENTRY_SYMBOL "tmc_module_entry"

#if defined(_WIN32)
#define TMC_MODULE_EXPORT __declspec(dllexport)
#else
#define TMC_MODULE_EXPORT __attribute__((visibility("default")))
#endif

/** Where the compiler places a module stage, top (application) to bottom (network),
 *  relative to the built-in stages. Several module stages in one layer keep the order in
 *  which the manifest lists them.
 *    ORDERING  below ordering.group and ordering.fifo, directly above ordering.seq: a
 *              delivery order of its own (it may read the per-sender sequence numbers
 *              ordering.seq sets on both paths when that stage is present).
 *    MESSAGE   below ordering.seq, above fragment.split: sees whole application messages
 *              on send and whole messages on receive (after reassembly).
 *    DATAGRAM  below fragment.split and pacing.coalesce, above reliability.arq: sees each
 *              datagram as reliability will repair it.
 *    REPAIR    below reliability.arq, flow.credit and congestion.window, above
 *              pacing.bucket: repair without a round trip (forward error correction);
 *              what it rebuilds goes up to reliability, which then has nothing to ask for.
 *    BOTTOM    below membership.heartbeat, above checksum.crc32c and faults.inject: every
 *              datagram, control traffic included; the checksum covers its bytes. */
enum tmc_layer {
  TMC_LAYER_ORDERING = 0,
  TMC_LAYER_MESSAGE = 1,
  TMC_LAYER_DATAGRAM = 2,
  TMC_LAYER_REPAIR = 3,
  TMC_LAYER_BOTTOM = 4
};

/** Parameter types, in the order of tmc::ParamType. */
enum tmc_param_type {
  TMC_PARAM_BOOL = 0,
  TMC_PARAM_INT = 1,
  TMC_PARAM_REAL = 2,
  TMC_PARAM_STRING = 3,
  TMC_PARAM_STRING_LIST = 4
};

/** tmc_param_spec.flags: which bounds are set (a zeroed spec allows any value). */
#define TMC_PARAM_HAS_MIN 1u     /**< integer: `min` is the smallest allowed */
#define TMC_PARAM_HAS_MAX 2u     /**< integer: `max` is the largest allowed */
#define TMC_PARAM_HAS_LO 4u      /**< real: `lo` is the lower bound */
#define TMC_PARAM_HAS_HI 8u      /**< real: `hi` is the upper bound */
#define TMC_PARAM_LO_OPEN 16u    /**< real: `lo` itself is not allowed */

/** One declared parameter (tmc::ParamSpec). Texts in YAML spelling. */
struct tmc_param_spec {
  const char* name;
  uint32_t type; /**< enum tmc_param_type */
  uint32_t flags;
  const char* default_value; /**< "true", "64", "0.5", "strict", "a,b" */
  const char* doc;
  int64_t min;
  int64_t max;
  double lo;
  double hi;
  const char* const* one_of; /**< allowed words of a string (or of each list item) */
  uint32_t n_one_of;
  uint32_t reserved;
};

/** One counter (tmc::CounterSpec): full name ("fec.xor.parity_sent") and what it counts. */
struct tmc_counter_spec {
  const char* name;
  const char* doc;
};

/** A wire extension the stage owns (tmc::WireExtension); modules use types 128..255. */
struct tmc_wire_extension {
  uint32_t type;
  uint32_t body_bytes; /**< body length or its largest; 0: unbounded */
  const char* name;
  const char* carried_on;
  const char* body;
};

/** A resolved parameter value given to create(): the registry has checked it against the
 *  spec and filled the default. `text` is the YAML spelling (a list comma-joined); the
 *  typed field matching the spec's type is set too. */
struct tmc_param_value {
  const char* name;
  const char* text;
  uint32_t type; /**< enum tmc_param_type */
  uint32_t boolean;
  int64_t integer;
  double real;
};

/** What a stage knows about its endpoint (tmc::StageEnv). */
struct tmc_stage_env {
  uint32_t struct_size;
  uint32_t channel;  /**< hash of the channel id */
  uint32_t sender;   /**< this endpoint's sender id */
  uint32_t epoch;    /**< this endpoint's incarnation */
  uint64_t seed;     /**< the stage's only source of randomness */
  uint32_t max_payload_bytes;
  uint32_t reserved;
};

/** Opaque: a packet of the host's pool. */
struct tmc_packet;
/** Opaque: the pipeline's membership view (read only through tmc_host). */
struct tmc_group;

/** An event for the application (tmc::Event). `type` is tmc::EventType's value. */
struct tmc_event {
  uint32_t type;
  uint32_t sender;
  uint32_t epoch;
  uint32_t reserved;
  uint64_t seq;
  uint64_t count;
  uint64_t token;
  uint64_t members; /**< member slots 0..63, as a mask */
};

/** The per-packet fields a stage may read and write (tmc::Packet's metadata). */
enum tmc_packet_field {
  TMC_PF_KIND = 0,        /**< wire kind (data, ack, ...) */
  TMC_PF_FLAGS = 1,       /**< base-header flags */
  TMC_PF_CHANNEL = 2,
  TMC_PF_SENDER = 3,
  TMC_PF_EPOCH = 4,
  TMC_PF_SEQ = 5,         /**< per-sender sequence (set by ordering.seq) */
  TMC_PF_RX_NS = 6,
  TMC_PF_SRC_IP = 7,
  TMC_PF_SRC_PORT = 8,
  TMC_PF_DST_IP = 9,      /**< unicast destination, 0 = the group */
  TMC_PF_DST_PORT = 10,
  TMC_PF_TOKEN = 11,
  TMC_PF_SEALED = 12,     /**< read only */
  TMC_PF_PAYLOAD_LEN = 13 /**< read only: payload bytes (after the header and extensions) */
};

/** The host's functions. Packet accessors take the handle; the pipeline calls take the
 *  `ctx` of the tmc_io they arrived with. Every one is hot-path safe. */
struct tmc_host {
  uint32_t struct_size;
  uint32_t abi_version;

  /* --- the pipeline (tmc::StageIo) ---------------------------------------------------- */
  uint64_t (*now_ns)(void* ctx);
  void (*down)(void* ctx, struct tmc_packet* p);
  void (*up)(void* ctx, struct tmc_packet* p);
  void (*drop)(void* ctx, struct tmc_packet* p, uint32_t reason); /**< tmc::DropReason value */
  void (*arm_timer)(void* ctx, uint64_t deadline_ns);
  void (*cancel_timer)(void* ctx);
  void (*count)(void* ctx, uint32_t counter_index, uint64_t n);
  void (*notify)(void* ctx, const struct tmc_event* e);
  struct tmc_packet* (*alloc)(void* ctx);
  struct tmc_packet* (*clone)(void* ctx, const struct tmc_packet* p);
  struct tmc_packet* (*alloc_large)(void* ctx, uint32_t payload_bytes);
  const struct tmc_group* (*group)(void* ctx);

  /* --- the group view (read only) ----------------------------------------------------- */
  uint64_t (*group_view_id)(const struct tmc_group* g);
  uint32_t (*group_slots)(const struct tmc_group* g);
  /* The two masks cover slots 0..63; a module in a larger group reads the state of higher
     slots with group_member_state. */
  uint64_t (*group_alive)(const struct tmc_group* g);     /**< mask, self excluded */
  uint64_t (*group_receivers)(const struct tmc_group* g); /**< mask: whom "ack from all" waits for */
  uint32_t (*group_member_sender)(const struct tmc_group* g, uint32_t slot);
  uint32_t (*group_member_epoch)(const struct tmc_group* g, uint32_t slot);
  uint32_t (*group_member_state)(const struct tmc_group* g, uint32_t slot); /**< tmc::MemberState */
  int32_t (*group_slot_of_sender)(const struct tmc_group* g, uint32_t sender); /**< -1: none */

  /* --- packets ------------------------------------------------------------------------ */
  uint8_t* (*packet_data)(struct tmc_packet* p); /**< first valid byte */
  uint32_t (*packet_len)(const struct tmc_packet* p);
  uint8_t* (*packet_payload)(struct tmc_packet* p);
  /** Send path: prepend an extension of `type` (128..255 for modules) with a body of
   *  `body_len` bytes; returns the body to fill, or NULL (no headroom, too many, sealed). */
  uint8_t* (*packet_push_ext)(struct tmc_packet* p, uint32_t type, uint32_t body_len);
  /** The body of extension `type`, or NULL; *len_out receives its length. */
  const uint8_t* (*packet_ext)(const struct tmc_packet* p, uint32_t type, uint32_t* len_out);
  /** Write the base header in front (idempotent); after it data/len cover the datagram. */
  void (*packet_seal)(struct tmc_packet* p);
  /** Make `p` an empty send-path packet with `payload_bytes` of payload room. */
  void (*packet_reset_for_send)(struct tmc_packet* p, uint32_t payload_bytes);
  /** Give the packet back to its pool. */
  void (*packet_release)(struct tmc_packet* p);
  uint64_t (*packet_get)(const struct tmc_packet* p, uint32_t field); /**< enum tmc_packet_field */
  void (*packet_set)(struct tmc_packet* p, uint32_t field, uint64_t value);

  void* reserved[8];

  /* --- revision 2 (appended; absent from a host built against an older header) ------- */
  /** sizeof(struct tmc_io) as the host builds it: which of tmc_io's revision-2 fields the
   *  host fills (TMC_IO_HAS). */
  uint32_t io_size;
  uint32_t reserved_r2;
};

/** True when the host `h` provides `member` (built against a header at least that new). */
#define TMC_HOST_HAS(h, member) \
  ((h)->struct_size >= offsetof(struct tmc_host, member) + sizeof((h)->member) && (h)->member != NULL)

/** What each stage operation receives: the host's table, the pipeline's context and the
 *  time of the call (what host->now_ns(ctx) returns, without the call).
 *
 *  Revision 2 adds the pipeline's hot calls bound to this stage's place in it, built once
 *  per pipeline, not per call: `down(self, p)` goes straight to the next stage where
 *  `host->down(ctx, p)` goes through the host's table first, and `counters` is the stage's
 *  own counter block (add to counters[i] for i < n_counters; no call at all). They do what
 *  the tmc_host calls of the same names do, with `self` in place of `ctx`. A module checks
 *  TMC_IO_HAS(io, member) before using them (a host built against an older header passes
 *  a revision-1 tmc_io); `counters` may be NULL (then count through host->count). */
struct tmc_io {
  const struct tmc_host* host;
  void* ctx;
  uint64_t now_ns;

  /* --- revision 2 ---------------------------------------------------------------------- */
  void* self;
  void (*down)(void* self, struct tmc_packet* p);
  void (*up)(void* self, struct tmc_packet* p);
  void (*drop)(void* self, struct tmc_packet* p, uint32_t reason);
  void (*arm_timer)(void* self, uint64_t deadline_ns);
  void (*cancel_timer)(void* self);
  struct tmc_packet* (*alloc)(void* self);
  struct tmc_packet* (*clone)(void* self, const struct tmc_packet* p);
  uint64_t* counters;
  uint32_t n_counters;
  uint32_t reserved;
};

/** True when the host of `io` fills tmc_io's `member` (a revision-2 field). */
#define TMC_IO_HAS(io, member)                                                          \
  ((io)->host->struct_size >= offsetof(struct tmc_host, io_size) + sizeof(uint32_t) && \
   (io)->host->io_size >= offsetof(struct tmc_io, member) + sizeof((io)->member))

/** One stage kind. The first block is its description (tmc::StageInfo), the second its
 *  operations. Required: kind, synopsis, create, destroy. An absent on_send / on_receive
 *  passes the packet on; an absent tick/start/stop does nothing. */
struct tmc_stage_kind {
  uint32_t struct_size;
  uint32_t layer; /**< enum tmc_layer */
  const char* kind;     /**< "<category>.<name>", e.g. "fec.xor" */
  const char* synopsis; /**< one line */
  const char* notes;    /**< a paragraph */
  const struct tmc_param_spec* params;
  uint32_t n_params;
  uint32_t n_counters;
  const struct tmc_counter_spec* counters;
  const struct tmc_wire_extension* extensions;
  uint32_t n_extensions;
  uint32_t wire_bytes_per_datagram;
  uint32_t wire_bytes_per_message;
  uint32_t per_message; /**< honours per-message flags */
  const char* serves;   /**< manifest property it serves, or NULL */
  const char* const* requires_below;
  uint32_t n_requires_below;
  uint32_t n_requires_above;
  const char* const* requires_above;

  /** Cold. Returns the state, or NULL after writing why (NUL-terminated) into err. */
  void* (*create)(const struct tmc_param_value* params, uint32_t n_params, const struct tmc_stage_env* env,
                  char* err, size_t err_cap);
  void (*destroy)(void* state);
  int (*on_send)(void* state, struct tmc_packet* p, const struct tmc_io* io);
  int (*on_receive)(void* state, struct tmc_packet* p, const struct tmc_io* io);
  int (*on_tick)(void* state, const struct tmc_io* io);
  int (*on_start)(void* state, const struct tmc_io* io);
  int (*on_stop)(void* state, const struct tmc_io* io);
  uint64_t (*held_packets)(const void* state);
  uint64_t (*max_held_packets)(const void* state);
  uint64_t (*send_backlog)(const void* state);

  void* reserved[8];
};

/** The bounds a controller works in (tmc::CongestionLimits). */
struct tmc_congestion_limits {
  uint32_t mss_bytes;
  uint32_t initial_window_packets;
  uint32_t min_window_packets;
  uint32_t max_window_packets;
};

/** One congestion controller (tmc::CongestionController). Calls are hot: no allocation. */
struct tmc_controller_kind {
  uint32_t struct_size;
  uint32_t reserved0;
  const char* name; /**< the word of `congestion control:`, e.g. "ledbat" */
  const char* doc;  /**< one line */
  void* (*create)(const struct tmc_congestion_limits* limits, char* err, size_t err_cap);
  void (*destroy)(void* state);
  void (*on_sent)(void* state, uint64_t bytes, uint64_t now_ns);
  void (*on_acked)(void* state, uint64_t bytes, uint64_t rtt_ns, uint64_t now_ns);
  void (*on_loss)(void* state, uint64_t now_ns);
  void (*on_timeout)(void* state, uint64_t now_ns); /**< NULL: on_loss */
  uint64_t (*window_bytes)(const void* state);
  void* reserved[4];
};

/** The module's table, returned by tmc_module_entry. */
struct tmc_module {
  uint32_t struct_size;
  uint32_t abi_version; /**< TMC_MODULE_ABI_VERSION the module was built for */
  const char* name;     /**< as in the repository index, e.g. "fec" */
  const char* version;  /**< e.g. "1.0.0" */
  const struct tmc_stage_kind* const* stages;
  uint32_t n_stages;
  uint32_t n_controllers;
  const struct tmc_controller_kind* const* controllers;
  /** Non-zero only for modules built with the C++ adapter (tmc/module.hpp): a fingerprint
   *  of the C++ types it shares with the host (tmc::Packet, tmc::Group, the standard
   *  library's). The loader refuses a module whose fingerprint differs from its own. */
  uint64_t cxx_layout;
  void* reserved[4];
};

/** The entry point. `host` stays valid while the module is loaded. Returns NULL to refuse
 *  (the loader reports "init failed"). */
typedef const struct tmc_module* (*tmc_module_entry_fn)(const struct tmc_host* host);

#ifdef __cplusplus
}
#endif

#endif /* TMC_MODULE_ABI_H */
