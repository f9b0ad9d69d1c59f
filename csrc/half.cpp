#include "half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MEDINFER_X86 1
#endif

namespace medinfer {

#ifdef MEDINFER_X86
namespace {

__attribute__((target("avx,f16c"))) std::size_t f16c_convert(const float* src, std::uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  return i;
}

}  // namespace

bool has_f16c() {
  static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return yes;
}
#else
bool has_f16c() { return false; }
#endif

void floats_to_halves(const float* src, std::uint16_t* dst, std::size_t n) {
  std::size_t i = 0;
#ifdef MEDINFER_X86
  if (has_f16c()) i = f16c_convert(src, dst, n);
#endif
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

}  // namespace medinfer
