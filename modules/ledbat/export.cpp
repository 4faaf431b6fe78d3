// The ledbat module's entry point: the "ledbat" congestion controller, exported through
// the module ABI (congestion.window's `algorithm: ledbat` once the module is loaded).
#include <tmc/module.hpp>

#include "ledbat/ledbat.hpp"

TMC_MODULE("ledbat", "1.0.0",
           TMC_MODULE_CONTROLLER("ledbat",
                                 "LEDBAT (RFC 6817) on RTT samples: aims for 25 ms of queuing delay, backs off "
                                 "when the delay rises above it, halves on loss",
                                 [](const tmc::CongestionLimits& limits) {
                                   return tmc::modules::make_ledbat_controller(limits);
                                 }));
