// The runtime's side of the module ABI: the host table handed to every module call, and
// the adapters that make a module's C stage kind a tmc::Stage and its C controller a
// tmc::CongestionController.
#pragma once

#include <memory>

#include "tmc/module_abi.h"
#include "tmc/modules.hpp"

namespace tmc::detail {

/// The host's function table (static; one for every module).
const tmc_host& module_host() noexcept;

/// A tmc::Stage over a module's C operations. `fault_counter` is the index of the
/// "<kind>.module_faults" counter the loader appended to the kind's counters.
std::unique_ptr<Stage> make_module_stage(std::shared_ptr<const LoadedModule> module, const tmc_stage_kind* kind,
                                         const StageInfo* info, std::size_t fault_counter);

/// A tmc::CongestionController over a module's C controller, or nullptr with `error` set.
std::unique_ptr<CongestionController> make_module_controller(std::shared_ptr<const LoadedModule> module,
                                                             const tmc_controller_kind* kind,
                                                             const CongestionLimits& limits, std::string* error);

}  // namespace tmc::detail
