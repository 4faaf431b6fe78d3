// The fec module's entry point: fec.xor, exported through the module ABI.
#include <tmc/module.hpp>

#include "fec/fec.hpp"

TMC_MODULE("fec", "1.0.0", TMC_MODULE_STAGE(tmc::modules::fec_xor_info()));
