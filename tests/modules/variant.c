/* A module written against the C ABI alone, built in variants for the loader's tests:
 *   TMC_TEST_OLD        struct sizes of a header revision without the optional tail
 *                       fields (loads: ABI 1 is spoken)
 *   TMC_TEST_NEWER      abi_version one above this header's (refused)
 *   TMC_TEST_NO_ENTRY   no entry point (refused)
 *   TMC_TEST_INIT_FAIL  the entry point returns NULL (refused)
 *   TMC_TEST_BAD_EXT    an extension type in the built-in range (refused)
 *   TMC_TEST_BUILTIN    a stage kind that is built in (refused by ModuleSet)
 *   TMC_TEST_EXT_A/_B   two modules whose stages both own wire extension 200 (the second
 *                       is refused by a ModuleSet holding the first)
 * Its stage, "cpass.<variant>", passes packets on; on_receive reports a fault when the
 * parameter `fault_on_receive` is true. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tmc/module_abi.h"

#if defined(TMC_TEST_OLD)
#define KIND "cpass.old"
#define NAME "cpass-old"
#elif defined(TMC_TEST_EXT_A)
#define KIND "cpass.ext_a"
#define NAME "cpass-ext-a"
#elif defined(TMC_TEST_EXT_B)
#define KIND "cpass.ext_b"
#define NAME "cpass-ext-b"
#elif defined(TMC_TEST_BUILTIN)
#define KIND "checksum.crc32c"
#define NAME "cpass-builtin"
#else
#define KIND "cpass.plain"
#define NAME "cpass"
#endif

struct state {
  int fault_on_receive;
};

static void* create(const struct tmc_param_value* params, uint32_t n, const struct tmc_stage_env* env, char* err,
                    size_t cap) {
  (void)env;
  struct state* s = calloc(1, sizeof *s);
  if (s == NULL) {
    strncpy(err, "out of memory", cap);
    return NULL;
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (strcmp(params[i].name, "fault_on_receive") == 0) s->fault_on_receive = (int)params[i].boolean;
  }
  return s;
}

static void destroy(void* s) { free(s); }

/* The old variant is written as against a header before revision 2 of struct tmc_io: it
 * goes through the host's table. The others use the bound calls when the host has them. */
#if defined(TMC_TEST_OLD)
#define BOUND(io, member) 0
#else
#define BOUND(io, member) TMC_IO_HAS(io, member)
#endif

static int on_send(void* s, struct tmc_packet* p, const struct tmc_io* io) {
  (void)s;
  if (BOUND(io, down)) {
    io->down(io->self, p);
  } else {
    io->host->down(io->ctx, p);
  }
  return 0;
}

static int on_receive(void* s, struct tmc_packet* p, const struct tmc_io* io) {
  if (((struct state*)s)->fault_on_receive) {
    io->host->drop(io->ctx, p, 13 /* tmc::DropReason::unsupported */);
    return 1;
  }
  if (BOUND(io, up)) {
    io->up(io->self, p);
  } else {
    io->host->up(io->ctx, p);
  }
  return 0;
}

static const struct tmc_param_spec params[] = {
    {.name = "fault_on_receive", .type = TMC_PARAM_BOOL, .default_value = "false",
     .doc = "report a fault on the first packet received"},
};

#if defined(TMC_TEST_BAD_EXT)
static const struct tmc_wire_extension exts[] = {{.type = 5, .body_bytes = 4, .name = "bad"}};
#elif defined(TMC_TEST_EXT_A) || defined(TMC_TEST_EXT_B)
static const struct tmc_wire_extension exts[] = {{.type = 200, .body_bytes = 4, .name = "tag"}};
#endif

static const struct tmc_stage_kind stage = {
#if defined(TMC_TEST_OLD)
    .struct_size = offsetof(struct tmc_stage_kind, held_packets),
#else
    .struct_size = sizeof(struct tmc_stage_kind),
#endif
    .layer = TMC_LAYER_BOTTOM,
    .kind = KIND,
    .synopsis = "Passes packets on (a module written in C).",
    .params = params,
    .n_params = 1,
#if defined(TMC_TEST_BAD_EXT) || defined(TMC_TEST_EXT_A) || defined(TMC_TEST_EXT_B)
    .extensions = exts,
    .n_extensions = 1,
#endif
    .create = create,
    .destroy = destroy,
    .on_send = on_send,
    .on_receive = on_receive,
};

static const struct tmc_stage_kind* const stages[] = {&stage};

static const struct tmc_module table = {
#if defined(TMC_TEST_OLD)
    .struct_size = offsetof(struct tmc_module, cxx_layout),
#else
    .struct_size = sizeof(struct tmc_module),
#endif
#if defined(TMC_TEST_NEWER)
    .abi_version = TMC_MODULE_ABI_VERSION + 1,
#else
    .abi_version = TMC_MODULE_ABI_VERSION,
#endif
    .name = NAME,
    .version = "0.1.0",
    .stages = stages,
    .n_stages = 1,
};

#if !defined(TMC_TEST_NO_ENTRY)
TMC_MODULE_EXPORT const struct tmc_module* tmc_module_entry(const struct tmc_host* host) {
  (void)host;
#if defined(TMC_TEST_INIT_FAIL)
  return host == NULL ? &table : NULL; /* always NULL: the host is never NULL */
#else
  return &table;
#endif
}
#else
TMC_MODULE_EXPORT const struct tmc_module* not_the_entry(void) { return &table; }
#endif
