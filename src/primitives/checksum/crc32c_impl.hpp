// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of checksum.crc32c.
//
// Two implementations with identical results: a portable slicing-by-8 table version, and
// one using the SSE4.2 crc32 instruction. crc32c() picks the hardware one once, at static
// initialisation, when the CPU reports SSE4.2; the library itself is compiled for the
// baseline ISA, so it still runs on CPUs without it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmc::detail {

/// CRC32C of `n` bytes at `data`, continuing from `crc` (the value a previous call
/// returned; 0 to start). crc32c("123456789", 9) == 0xE3069283.
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

/// The portable slicing-by-8 implementation (always available).
std::uint32_t crc32c_sw(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

/// The SSE4.2 implementation. Call only when crc32c_hw_available() is true.
std::uint32_t crc32c_hw(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

/// True when this CPU has the SSE4.2 crc32 instruction (decided once, at static init).
bool crc32c_hw_available() noexcept;

}  // namespace tmc::detail
