// Deterministic random numbers for stages and shells: splitmix64 for deriving seeds,
// xoshiro256** for draws.
//
// A stage that needs randomness (fault injection, jittered timers) owns an Rng seeded from
// its parameters and StageEnv::seed; the simulator seeds everything from the network seed.
// A run is then a pure function of its seed and its inputs. No std::random_device, no
// global state, no dependence on the standard library's distribution implementations
// (which differ between libstdc++ and libc++ and would break replay across toolchains).
#pragma once

#include <cstdint>

namespace tmc {

/// One step of splitmix64: advances `state` and returns a well-mixed 64-bit value.
constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// A stateless mix of a value (splitmix64's finaliser); used to derive per-member values.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  std::uint64_t s = x;
  return splitmix64(s);
}

/// Derive a value from a seed and a few labels (member index, incarnation, purpose).
constexpr std::uint64_t derive(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0) noexcept {
  return mix64(mix64(mix64(seed ^ 0x7A3C5E1F00000000ull) ^ a) ^ (b * 0x9E3779B97F4A7C15ull)) ^ mix64(c + 0x51ED27);
}

/// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
class Rng {
 public:
  explicit constexpr Rng(std::uint64_t seed = 0) noexcept { reseed(seed); }

  constexpr void reseed(std::uint64_t seed) noexcept {
    std::uint64_t s = seed;
    for (auto& w : s_) w = splitmix64(s);
  }

  constexpr std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1).
  constexpr double real() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// Uniform in [0, n); 0 when n is 0. Multiply-shift on the high bits (Lemire), whose
  /// bias is below 2^-32 for the ranges the simulator draws and is the same everywhere.
  constexpr std::uint64_t below(std::uint64_t n) noexcept {
    if (n == 0) return 0;
    if (n <= 0xFFFFFFFFull) return ((next() >> 32) * n) >> 32;
    return next() % n;
  }

  /// Uniform in [lo, hi] (inclusive); lo when hi < lo.
  constexpr std::uint64_t between(std::uint64_t lo, std::uint64_t hi) noexcept {
    if (hi <= lo) return lo;
    const std::uint64_t span = hi - lo;
    return span == ~std::uint64_t{0} ? next() : lo + below(span + 1);
  }

  /// True with probability `p` (no draw when p <= 0 or p >= 1, which keeps the streams
  /// of fault-free links short and makes "probability 1" exact).
  constexpr bool chance(double p) noexcept {
    if (p <= 0.0) return false;
    if (p >= 1.0) return true;
    return real() < p;
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4] = {};
};

}  // namespace tmc
