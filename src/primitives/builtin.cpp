// The one list of built-in stages. Each primitive lives in src/primitives/<category>/ and
// exposes `void register_<category>_<name>(Registry&)`; adding a primitive means adding one
// line to TMC_BUILTIN_STAGES (the macro declares and calls it).
#include "tmc/stage.hpp"

#define TMC_BUILTIN_STAGES(X) \
  X(ordering_seq)             \
  X(ordering_fifo)            \
  X(checksum_crc32c)          \
  X(faults_inject)

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
