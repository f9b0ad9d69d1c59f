#include "dtype.h"

namespace medinfer {

PixelType pixel_type_from_buffer_format(const std::string& format, std::size_t itemsize) {
  // Buffer formats may carry a byte-order prefix: native ('@', '=') and little-endian ('<', on the
  // x86-64/aarch64 hosts we build for) are accepted; big-endian data must be byte-swapped first.
  std::string f = format;
  if (!f.empty() && (f[0] == '@' || f[0] == '=' || f[0] == '<')) f = f.substr(1);
  if (!f.empty() && (f[0] == '>' || f[0] == '!'))
    throw std::invalid_argument("big-endian pixel buffer (format '" + format +
                                "'); convert it with arr.astype(arr.dtype.newbyteorder('='))");
  if (f.size() != 1) throw std::invalid_argument("unsupported pixel buffer format '" + format + "'");
  const char c = f[0];
  const bool is_signed = c == 'b' || c == 'h' || c == 'i' || c == 'l' || c == 'q';
  const bool is_unsigned = c == 'B' || c == 'H' || c == 'I' || c == 'L' || c == 'Q';
  if (c == 'f' && itemsize == 4) return PixelType::kFloat32;
  if (c == 'd' && itemsize == 8) return PixelType::kFloat64;
  if (is_signed || is_unsigned) {
    switch (itemsize) {
      case 1: return is_signed ? PixelType::kInt8 : PixelType::kUInt8;
      case 2: return is_signed ? PixelType::kInt16 : PixelType::kUInt16;
      case 4: return is_signed ? PixelType::kInt32 : PixelType::kUInt32;
      case 8:
        if (is_signed) return PixelType::kInt64;
        break;
      default: break;
    }
  }
  throw std::invalid_argument("unsupported pixel buffer format '" + format + "' (item size " +
                              std::to_string(itemsize) +
                              "); expected int8/16/32/64, uint8/16/32, float32 or float64");
}

PixelType pixel_type_from_name(const std::string& name) {
  for (PixelType t : {PixelType::kInt8, PixelType::kUInt8, PixelType::kInt16, PixelType::kUInt16,
                      PixelType::kInt32, PixelType::kUInt32, PixelType::kInt64, PixelType::kFloat32,
                      PixelType::kFloat64})
    if (name == pixel_type_name(t)) return t;
  throw std::invalid_argument("unknown pixel type name '" + name + "'");
}

const char* pixel_type_name(PixelType t) {
  switch (t) {
    case PixelType::kInt8: return "int8";
    case PixelType::kUInt8: return "uint8";
    case PixelType::kInt16: return "int16";
    case PixelType::kUInt16: return "uint16";
    case PixelType::kInt32: return "int32";
    case PixelType::kUInt32: return "uint32";
    case PixelType::kInt64: return "int64";
    case PixelType::kFloat32: return "float32";
    case PixelType::kFloat64: return "float64";
  }
  return "unknown";
}

}  // namespace medinfer
