#pragma once
/// @file
/// Element types of arrays (NDArray, SharedArray, the datasets of dump files), named as numpy
/// names them so that a file's "float64" means the same thing to C++, h5py and numpy.
///
/// @code
///   static_assert(joblet::dtype_of<double> == joblet::DType::float64);
///   joblet::dtype_name(joblet::DType::int32)  // "int32"
/// @endcode
///
/// An Element is bool, char, a standard signed or unsigned integer type, float, double or
/// std::complex of float or double: the types whose bytes mean the same in every process on the
/// machines joblet targets (64-bit, little-endian). C++ types of the same size and signedness
/// share a dtype (long and long long are both int64), so an array written as one can be read as
/// the other.

#include <complex>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace joblet {

/// The element type of an array, one per numpy dtype joblet stores. The numbers are part of the
/// encoding (an encoded array's header holds one), so they never change; 0 is no type.
enum class DType : std::uint8_t {
  boolean = 1,  ///< bool, one byte; numpy's bool
  int8,         ///< signed 8-bit integer (signed char; char where it is signed)
  int16,        ///< signed 16-bit integer (short)
  int32,        ///< signed 32-bit integer (int)
  int64,        ///< signed 64-bit integer (long, long long)
  uint8,        ///< unsigned 8-bit integer (unsigned char; char where it is unsigned)
  uint16,       ///< unsigned 16-bit integer (unsigned short)
  uint32,       ///< unsigned 32-bit integer (unsigned int)
  uint64,       ///< unsigned 64-bit integer (unsigned long, unsigned long long)
  float32,      ///< float
  float64,      ///< double
  complex64,    ///< std::complex<float>: numpy's complex64, h5py's compound {r, i} of float32
  complex128,   ///< std::complex<double>: numpy's complex128, h5py's compound {r, i} of float64
};

namespace detail {
template <class T>
constexpr DType dtype_for() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    return DType::boolean;
  } else if constexpr (std::is_same_v<U, char> || std::is_same_v<U, signed char> || std::is_same_v<U, short> ||
                       std::is_same_v<U, int> || std::is_same_v<U, long> || std::is_same_v<U, long long> ||
                       std::is_same_v<U, unsigned char> || std::is_same_v<U, unsigned short> ||
                       std::is_same_v<U, unsigned int> || std::is_same_v<U, unsigned long> ||
                       std::is_same_v<U, unsigned long long>) {
    constexpr bool is_signed = std::is_signed_v<U>;
    if constexpr (sizeof(U) == 1) return is_signed ? DType::int8 : DType::uint8;
    if constexpr (sizeof(U) == 2) return is_signed ? DType::int16 : DType::uint16;
    if constexpr (sizeof(U) == 4) return is_signed ? DType::int32 : DType::uint32;
    if constexpr (sizeof(U) == 8) return is_signed ? DType::int64 : DType::uint64;
    return DType{0};
  } else if constexpr (std::is_same_v<U, float> && sizeof(float) == 4) {
    return DType::float32;
  } else if constexpr (std::is_same_v<U, double> && sizeof(double) == 8) {
    return DType::float64;
  } else if constexpr (std::is_same_v<U, std::complex<float>> && sizeof(float) == 4) {
    return DType::complex64;
  } else if constexpr (std::is_same_v<U, std::complex<double>> && sizeof(double) == 8) {
    return DType::complex128;
  } else {
    return DType{0};
  }
}
}  // namespace detail

/// The element types arrays hold.
template <class T>
concept Element = !std::is_const_v<T> && !std::is_volatile_v<T> && detail::dtype_for<T>() != DType{0};

/// The DType of the element type T, at compile time: `dtype_of<long>` is DType::int64.
template <Element T>
inline constexpr DType dtype_of = detail::dtype_for<T>();

/// numpy's name of the dtype ("float64"); "unknown" for a value outside the enumeration.
std::string_view dtype_name(DType dtype) noexcept;
/// Bytes per element; 0 for a value outside the enumeration.
std::size_t dtype_size(DType dtype) noexcept;

}  // namespace joblet
