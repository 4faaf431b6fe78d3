// The workload's key space: K random 64-character [A-Za-z0-9] keys, the same at every
// process for a given seed (replicas preload them, clients draw from them).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tapir {

inline std::vector<std::string> make_keys(std::size_t count, std::uint64_t seed = 42) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, 61);
  std::vector<std::string> keys(count, std::string(64, 'x'));
  for (auto& k : keys)
    for (auto& ch : k) ch = kAlphabet[pick(rng)];
  return keys;
}

}  // namespace tapir
