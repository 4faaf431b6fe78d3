// The simulator draws from the library's deterministic generator (include/tmc/rng.hpp).
#pragma once

#include "tmc/rng.hpp"

namespace tmc::sim {
using tmc::derive;
using tmc::mix64;
using tmc::Rng;
using tmc::splitmix64;
}  // namespace tmc::sim
