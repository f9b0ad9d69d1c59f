// float32 -> IEEE 754 binary16 with round-to-nearest-even, as numpy's astype(np.float16) does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace medinfer {

// Portable conversion of one value (the build targets baseline x86-64/aarch64, where F16C is not guaranteed).
inline std::uint16_t float_to_half(float value) {
  std::uint32_t f;
  std::memcpy(&f, &value, sizeof f);
  const std::uint32_t sign = (f >> 16) & 0x8000u;
  const std::uint32_t exp = (f >> 23) & 0xffu;
  std::uint32_t mant = f & 0x7fffffu;
  if (exp == 0xffu) {  // inf stays inf; NaN stays a quiet NaN with its top payload bits
    if (mant == 0) return static_cast<std::uint16_t>(sign | 0x7c00u);
    return static_cast<std::uint16_t>(sign | 0x7e00u | (mant >> 13));
  }
  const int e = static_cast<int>(exp) - 127 + 15;  // rebias
  if (e >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow: inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit into place, rounding to even.
    if (e < -10) return static_cast<std::uint16_t>(sign);  // below half the smallest subnormal
    mant |= 0x800000u;
    const unsigned shift = static_cast<unsigned>(14 - e);
    std::uint32_t half_mant = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
    return static_cast<std::uint16_t>(sign | half_mant);
  }
  std::uint32_t h = (static_cast<std::uint32_t>(e) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  // A carry out of the mantissa correctly bumps the exponent, up to inf.
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

}  // namespace medinfer

namespace medinfer {

// n values; uses the CPU's F16C instructions (the same rounding, 8 values at a time) where present.
void floats_to_halves(const float* src, std::uint16_t* dst, std::size_t n);

// Whether floats_to_halves takes the F16C path on this CPU.
bool has_f16c();

}  // namespace medinfer
