// The one list of built-in stages. Each primitive lives in src/primitives/<category>/ and
// exposes a register_* function; adding a primitive means adding one line here.
#include "tmc/stage.hpp"

namespace tmc {

void register_builtin_stages(Registry& r) {
  (void)r;
}

}  // namespace tmc
