// CRC32C in software (slicing-by-8) and with SSE4.2, see crc32c_impl.hpp.
#include "primitives/checksum/crc32c_impl.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define TMC_CRC32C_X86 1
#else
#define TMC_CRC32C_X86 0
#endif

namespace tmc::detail {
namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u;  // Castagnoli, bit-reflected

// table[k][b]: the CRC of byte b followed by k zero bytes. Slicing-by-8 folds eight input
// bytes per step with eight independent lookups instead of eight dependent ones.
using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c & 1u) != 0 ? (c >> 1) ^ kPoly : c >> 1;
    t[0][b] = c;
  }
  for (std::uint32_t b = 0; b < 256; ++b) {
    for (std::size_t k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  }
  return t;
}

constexpr Tables kTables = make_tables();

#if TMC_CRC32C_X86
bool detect_hw() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2") != 0;
}
#else
bool detect_hw() noexcept { return false; }
#endif

// Decided once; crc32c() then branches on a constant the predictor learns immediately.
const bool g_hw = detect_hw();

}  // namespace

std::uint32_t crc32c_sw(const void* data, std::size_t n, std::uint32_t crc) noexcept {
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::uint32_t c = ~crc;
  while (n >= 8) {
    // Little-endian assembly of the first word keeps this correct on any host byte order.
    const std::uint32_t lo = c ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                                  std::uint32_t{p[3]} << 24);
    c = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^ kTables[5][(lo >> 16) & 0xFFu] ^
        kTables[4][lo >> 24] ^ kTables[3][p[4]] ^ kTables[2][p[5]] ^ kTables[1][p[6]] ^ kTables[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xFFu];
  return ~c;
}

#if TMC_CRC32C_X86
__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(const void* data, std::size_t n,
                                                           std::uint32_t crc) noexcept {
  const auto* p = static_cast<const std::uint8_t*>(data);
#if defined(__x86_64__)
  std::uint64_t c = ~crc;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);  // unaligned load; compiles to one mov
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
#else
  std::uint32_t c32 = ~crc;
#endif
  while (n >= 4) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    c32 = _mm_crc32_u32(c32, w);
    p += 4;
    n -= 4;
  }
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#else
std::uint32_t crc32c_hw(const void* data, std::size_t n, std::uint32_t crc) noexcept {
  return crc32c_sw(data, n, crc);
}
#endif

bool crc32c_hw_available() noexcept { return g_hw; }

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) noexcept {
  return g_hw ? crc32c_hw(data, n, crc) : crc32c_sw(data, n, crc);
}

}  // namespace tmc::detail
