// The one list of built-in stages. Each primitive lives in src/primitives/<category>/ and
// exposes `void register_<category>_<name>(Registry&)`; adding a primitive means adding one
// line to TMC_BUILTIN_STAGES (the macro declares and calls it).
#include "tmc/stage.hpp"

#define TMC_BUILTIN_STAGES(X) \
  X(ordering_seq)             \
  X(ordering_fifo)            \
  X(ordering_group)           \
  X(checksum_crc32c)          \
  X(security_aead)            \
  X(faults_inject)            \
  X(fragment_split)           \
  X(pacing_bucket)            \
  X(pacing_coalesce)          \
  X(membership_heartbeat)     \
  X(reliability_arq)          \
  X(flow_credit)              \
  X(congestion_window)        \
  X(lifetime_deadline)

namespace tmc {

#define TMC_DECLARE_REGISTER(name) void register_##name(Registry& r);
TMC_BUILTIN_STAGES(TMC_DECLARE_REGISTER)
#undef TMC_DECLARE_REGISTER

void register_builtin_stages(Registry& r) {
#define TMC_CALL_REGISTER(name) register_##name(r);
  TMC_BUILTIN_STAGES(TMC_CALL_REGISTER)
#undef TMC_CALL_REGISTER
}

}  // namespace tmc
