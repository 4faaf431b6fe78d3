// fec.xor — forward error correction below reliability: one XOR parity datagram per block
// of k data datagrams lets every receiver rebuild one lost datagram of the block without
// a round trip. See fec.cpp for the wire format and the rules; README.md for placement.
#pragma once

#include <cstdint>

#include "tmc/stage.hpp"

namespace tmc::modules {

/// The wire extension fec.xor owns (module range 128..255).
inline constexpr std::uint8_t kFecExt = 200;
/// Body of the tag on a data datagram: u32 block, u8 index in the block.
inline constexpr std::uint8_t kFecTagBody = 5;
/// Body of the extension on a parity datagram: u32 block, u8 datagrams covered,
/// u16 flags xor, u16 extension-bytes xor, u32 payload-length xor.
inline constexpr std::uint8_t kFecParityBody = 13;

/// fec.xor's description: parameters, counters, placement facts, factory.
StageInfo fec_xor_info();

}  // namespace tmc::modules
