// Pixel element types the native routines accept, and a dispatch helper over them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medinfer {

enum class PixelType { kInt8, kUInt8, kInt16, kUInt16, kInt32, kUInt32, kInt64, kFloat32, kFloat64 };

// Maps a buffer-protocol format character and item size to a PixelType. Throws std::invalid_argument
// with a message naming what was seen.
PixelType pixel_type_from_buffer_format(const std::string& format, std::size_t itemsize);
PixelType pixel_type_from_name(const std::string& name);  // "int16", "float32", ...
const char* pixel_type_name(PixelType t);

template <typename F>
decltype(auto) dispatch_pixel_type(PixelType t, F&& f) {
  switch (t) {
    case PixelType::kInt8: return f(std::int8_t{});
    case PixelType::kUInt8: return f(std::uint8_t{});
    case PixelType::kInt16: return f(std::int16_t{});
    case PixelType::kUInt16: return f(std::uint16_t{});
    case PixelType::kInt32: return f(std::int32_t{});
    case PixelType::kUInt32: return f(std::uint32_t{});
    case PixelType::kInt64: return f(std::int64_t{});
    case PixelType::kFloat32: return f(float{});
    case PixelType::kFloat64: return f(double{});
  }
  throw std::invalid_argument("unknown pixel type");
}

inline std::size_t pixel_type_size(PixelType t) {
  return dispatch_pixel_type(t, [](auto tag) { return sizeof(tag); });
}

}  // namespace medinfer
