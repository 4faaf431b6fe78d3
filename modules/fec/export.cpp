// The fec module's entry point: fec.xor, exported through the module ABI.
#include <tmc/module.hpp>

#include "fec/fec.hpp"

TMC_MODULE("fec", "1.0.0", tmc::modules::fec_xor_module_stage());
