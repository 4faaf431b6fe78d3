// The causal module's entry point: ordering.causal, exported through the module ABI.
#include <tmc/module.hpp>

#include "causal/causal.hpp"

TMC_MODULE("causal", "1.0.0", TMC_MODULE_STAGE(tmc::modules::causal_info()));
