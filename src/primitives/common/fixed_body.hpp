// Fixed-layout extension bodies: a struct of unsigned integer fields, written big-endian
// one after the other in the order named, with no padding and no tag.
//
//   struct FlowBody { std::uint32_t target_sender, target_epoch; std::uint64_t consumed; };
//   using FlowCodec = FixedBody<FlowBody, &FlowBody::target_sender, &FlowBody::target_epoch,
//                               &FlowBody::consumed>;
//   FlowCodec::kBytes                    // 16
//   FlowCodec::encode(out, body);        // out holds kBytes
//   FlowCodec::decode(body, len);        // std::nullopt unless len == kBytes
//
// The decoder treats the body as hostile: a null body or any length but kBytes yields
// std::nullopt, never a read past the end. Checks beyond the layout (a field that must not
// be 0, say) belong to the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "tmc/wire.hpp"

namespace tmc::detail {

namespace fixed_body {

template <class M>
struct member_of;
template <class T, class F>
struct member_of<F T::*> {
  using type = F;
};
template <auto Field>
using field_t = typename member_of<decltype(Field)>::type;

template <class F>
inline constexpr bool kSupported = std::is_same_v<F, std::uint8_t> || std::is_same_v<F, std::uint16_t> ||
                                   std::is_same_v<F, std::uint32_t> || std::is_same_v<F, std::uint64_t>;

template <class F>
inline void put(std::uint8_t* p, F v) noexcept {
  if constexpr (sizeof(F) == 1) {
    *p = v;
  } else if constexpr (sizeof(F) == 2) {
    wire::put_u16(p, v);
  } else if constexpr (sizeof(F) == 4) {
    wire::put_u32(p, v);
  } else {
    wire::put_u64(p, v);
  }
}

template <class F>
[[nodiscard]] inline F get(const std::uint8_t* p) noexcept {
  if constexpr (sizeof(F) == 1) {
    return *p;
  } else if constexpr (sizeof(F) == 2) {
    return wire::get_u16(p);
  } else if constexpr (sizeof(F) == 4) {
    return wire::get_u32(p);
  } else {
    return wire::get_u64(p);
  }
}

}  // namespace fixed_body

template <class T, auto... Fields>
struct FixedBody {
  static_assert(sizeof...(Fields) > 0, "a body has at least one field");
  static_assert((std::is_same_v<decltype(Fields), fixed_body::field_t<Fields> T::*> && ...),
                "every field is a data member of T");
  static_assert((fixed_body::kSupported<fixed_body::field_t<Fields>> && ...),
                "fields are std::uint8_t, std::uint16_t, std::uint32_t or std::uint64_t");

  /// Bytes on the wire: the fields' sizes added up.
  static constexpr std::size_t kBytes = (sizeof(fixed_body::field_t<Fields>) + ...);

  /// Write `v` into `out`, which holds kBytes.
  static void encode(std::uint8_t* out, const T& v) noexcept {
    std::size_t at = 0;
    ((fixed_body::put(out + at, v.*Fields), at += sizeof(fixed_body::field_t<Fields>)), ...);
  }

  /// Read a body of `len` bytes; std::nullopt when it is null or not kBytes long.
  [[nodiscard]] static std::optional<T> decode(const std::uint8_t* body, std::size_t len) noexcept {
    if (body == nullptr || len != kBytes) return std::nullopt;
    T v{};
    std::size_t at = 0;
    ((v.*Fields = fixed_body::get<fixed_body::field_t<Fields>>(body + at),
      at += sizeof(fixed_body::field_t<Fields>)),
     ...);
    return v;
  }
};

}  // namespace tmc::detail
