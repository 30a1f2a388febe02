#include "hdf5_util.hpp"

#include <pthread.h>
#include <utility>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "joblet/error.hpp"

namespace joblet::detail::h5 {
namespace {

std::mutex& library_mutex() {
  static std::mutex mutex;
  return mutex;
}

void initialise() {
  // Taken before fork(), so that the child's HDF5 is never caught in the middle of another
  // thread's call. The child makes the lock anew rather than unlocking it: the thread that
  // locked it does not exist there.
  pthread_atfork([] { library_mutex().lock(); }, [] { library_mutex().unlock(); },
                 [] { new (&library_mutex()) std::mutex(); });
  H5open();
  // HDF5 prints its error stack to stderr by default; joblet turns errors into exceptions.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

herr_t collect_error(unsigned, const H5E_error2_t* error, void* data) {
  auto& messages = *static_cast<std::vector<std::string>*>(data);
  if (error->desc != nullptr && *error->desc != '\0') messages.emplace_back(error->desc);
  return 0;
}

}  // namespace

std::unique_lock<std::mutex> lock() {
  static std::once_flag once;
  std::call_once(once, initialise);
  return std::unique_lock(library_mutex());
}

std::string error_text() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &messages);
  H5Eclear2(H5E_DEFAULT);
  // The walk goes from the API call down to the cause: the cause says the most.
  std::reverse(messages.begin(), messages.end());
  messages.erase(std::unique(messages.begin(), messages.end()), messages.end());
  if (messages.size() > 3) messages.resize(3);
  std::string text;
  for (const auto& message : messages) text += (text.empty() ? "" : "; ") + message;
  return text.empty() ? "HDF5 gave no reason" : text;
}

void fail(const std::string& what) { throw StorageError(what + ": " + error_text()); }

Id make(hid_t id, herr_t (*close)(hid_t), const std::string& what) {
  if (id < 0) fail(what);
  return Id(id, close);
}

void check(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

Id file_access() {
  Id fapl = make(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "cannot create HDF5 file access properties");
  check(H5Pset_alignment(fapl.get(), 64, 64), "cannot set HDF5 alignment");
  check(H5Pset_file_locking(fapl.get(), false, true), "cannot turn HDF5 file locking off");
  return fapl;
}

Id file_type(DType dtype) {
  if (dtype == DType::boolean) {
    // As h5py writes bools: an enum of a one-byte integer.
    Id type = make(H5Tenum_create(H5T_STD_I8LE), H5Tclose, "cannot create the bool type");
    const std::int8_t no = 0, yes = 1;
    check(H5Tenum_insert(type.get(), "FALSE", &no), "cannot create the bool type");
    check(H5Tenum_insert(type.get(), "TRUE", &yes), "cannot create the bool type");
    return type;
  }
  if (dtype == DType::complex64 || dtype == DType::complex128) {
    // As h5py writes complex numbers: a compound of the real part "r" and the imaginary part "i".
    const bool single = dtype == DType::complex64;
    const std::size_t part = single ? 4 : 8;
    Id type = make(H5Tcreate(H5T_COMPOUND, 2 * part), H5Tclose, "cannot create the complex type");
    const hid_t real = single ? H5T_IEEE_F32LE : H5T_IEEE_F64LE;
    check(H5Tinsert(type.get(), "r", 0, real), "cannot create the complex type");
    check(H5Tinsert(type.get(), "i", part, real), "cannot create the complex type");
    return type;
  }
  // Little-endian standard types, as numpy and h5py write them. (HDF5's type ids are globals
  // set when the library opens, so the table is built at the call.)
  const std::pair<DType, hid_t> standard[] = {{DType::int8, H5T_STD_I8LE},      {DType::int16, H5T_STD_I16LE},
                                              {DType::int32, H5T_STD_I32LE},    {DType::int64, H5T_STD_I64LE},
                                              {DType::uint8, H5T_STD_U8LE},     {DType::uint16, H5T_STD_U16LE},
                                              {DType::uint32, H5T_STD_U32LE},   {DType::uint64, H5T_STD_U64LE},
                                              {DType::float32, H5T_IEEE_F32LE}, {DType::float64, H5T_IEEE_F64LE}};
  for (const auto& [kind, type] : standard) {
    if (kind == dtype) return make(H5Tcopy(type), H5Tclose, "cannot copy an HDF5 type");
  }
  throw StorageError("no HDF5 type for dtype " + std::to_string(static_cast<int>(dtype)));
}

namespace {
// h5py's complex numbers: exactly two members, "r" at offset 0 and "i" right after it, both the
// same little-endian IEEE float, and nothing else in the compound.
std::optional<DType> complex_dtype_from(hid_t type) {
  if (H5Tget_nmembers(type) != 2) return std::nullopt;
  const auto member_named = [type](unsigned index, const char* name) {
    char* found = H5Tget_member_name(type, index);
    const bool same = found != nullptr && std::strcmp(found, name) == 0;
    H5free_memory(found);
    return same;
  };
  if (!member_named(0, "r") || !member_named(1, "i")) return std::nullopt;
  Id real(H5Tget_member_type(type, 0), H5Tclose);
  Id imaginary(H5Tget_member_type(type, 1), H5Tclose);
  if (!real || !imaginary || H5Tequal(real.get(), imaginary.get()) <= 0) return std::nullopt;
  const std::size_t part = H5Tget_size(real.get());
  if (H5Tget_member_offset(type, 0) != 0 || H5Tget_member_offset(type, 1) != part || H5Tget_size(type) != 2 * part) {
    return std::nullopt;
  }
  if (H5Tequal(real.get(), H5T_IEEE_F64LE) > 0) return DType::complex128;
  if (H5Tequal(real.get(), H5T_IEEE_F32LE) > 0) return DType::complex64;
  return std::nullopt;
}
}  // namespace

std::optional<DType> dtype_from(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      if (H5Tget_order(type) != H5T_ORDER_LE) return std::nullopt;
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      // Padding bits or an offset would make the bytes mean something else.
      if (H5Tget_precision(type) != 8 * H5Tget_size(type) || H5Tget_offset(type) != 0) return std::nullopt;
      switch (H5Tget_size(type)) {
        case 1:
          return is_signed ? DType::int8 : DType::uint8;
        case 2:
          return is_signed ? DType::int16 : DType::uint16;
        case 4:
          return is_signed ? DType::int32 : DType::uint32;
        case 8:
          return is_signed ? DType::int64 : DType::uint64;
        default:
          return std::nullopt;
      }
    }
    case H5T_FLOAT:
      if (H5Tequal(type, H5T_IEEE_F64LE) > 0) return DType::float64;
      if (H5Tequal(type, H5T_IEEE_F32LE) > 0) return DType::float32;
      return std::nullopt;
    case H5T_ENUM: {
      // h5py's bool: an enum of a one-byte integer with exactly FALSE = 0 and TRUE = 1.
      Id base(H5Tget_super(type), H5Tclose);
      if (!base || H5Tget_class(base.get()) != H5T_INTEGER || H5Tget_size(base.get()) != 1 ||
          H5Tget_nmembers(type) != 2) {
        return std::nullopt;
      }
      std::int8_t no = -1, yes = -1;
      if (H5Tenum_valueof(type, "FALSE", &no) < 0 || H5Tenum_valueof(type, "TRUE", &yes) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return std::nullopt;
      }
      if (no == 0 && yes == 1) return DType::boolean;
      return std::nullopt;
    }
    case H5T_COMPOUND:
      return complex_dtype_from(type);
    default:
      return std::nullopt;
  }
}

std::string describe_type(hid_t type) {
  const std::string bits = std::to_string(8 * H5Tget_size(type)) + "-bit";
  const std::string order = H5Tget_order(type) == H5T_ORDER_BE ? " big-endian" : "";
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return "a " + bits + order + (H5Tget_sign(type) == H5T_SGN_2 ? " signed" : " unsigned") + " integer";
    case H5T_FLOAT:
      return "a " + bits + order + " float";
    case H5T_STRING:
      return "strings";
    case H5T_COMPOUND:
      return "a compound type (a table of records)";
    case H5T_ENUM:
      return "an enum";
    case H5T_ARRAY:
      return "an array type";
    case H5T_VLEN:
      return "variable-length sequences";
    case H5T_OPAQUE:
      return "opaque bytes";
    case H5T_REFERENCE:
      return "references";
    case H5T_BITFIELD:
      return "a bitfield";
    default:
      return "an unknown type";
  }
}

void write_string_attribute(hid_t object, const char* name, std::string_view value) {
  const std::string what = std::string("cannot write attribute ") + name;
  Id type = make(H5Tcopy(H5T_C_S1), H5Tclose, what);
  check(H5Tset_size(type.get(), value.size() + 1), what);
  check(H5Tset_strpad(type.get(), H5T_STR_NULLTERM), what);
  check(H5Tset_cset(type.get(), H5T_CSET_UTF8), what);
  Id space = make(H5Screate(H5S_SCALAR), H5Sclose, what);
  Id attribute = make(H5Acreate2(object, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, what);
  std::string text(value);
  check(H5Awrite(attribute.get(), type.get(), text.c_str()), what);
}

void write_uint_attribute(hid_t object, const char* name, std::uint32_t value) {
  const std::string what = std::string("cannot write attribute ") + name;
  Id space = make(H5Screate(H5S_SCALAR), H5Sclose, what);
  Id attribute = make(H5Acreate2(object, name, H5T_STD_U32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose, what);
  check(H5Awrite(attribute.get(), H5T_NATIVE_UINT32, &value), what);
}

namespace {

// A one-element attribute of `type_class` with its stored type, or nothing: a file written by
// someone else may hold any attribute under our names, which must read as "absent", not fail.
struct ScalarAttribute {
  Id attribute;
  Id type;
};

std::optional<ScalarAttribute> open_scalar_attribute(hid_t object, const char* name, H5T_class_t type_class) {
  if (H5Aexists(object, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  Id attribute(H5Aopen(object, name, H5P_DEFAULT), H5Aclose);
  if (!attribute) return std::nullopt;
  Id type(H5Aget_type(attribute.get()), H5Tclose);
  Id space(H5Aget_space(attribute.get()), H5Sclose);
  if (!type || !space || H5Tget_class(type.get()) != type_class || H5Sget_simple_extent_npoints(space.get()) != 1) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  return ScalarAttribute{std::move(attribute), std::move(type)};
}

}  // namespace

std::optional<std::string> read_string_attribute(hid_t object, const char* name, std::size_t max_size) {
  auto found = open_scalar_attribute(object, name, H5T_STRING);
  if (!found || H5Tis_variable_str(found->type.get()) != 0) return std::nullopt;
  const std::size_t size = H5Tget_size(found->type.get());
  if (size == 0 || size > max_size) return std::nullopt;
  std::string text(size, '\0');
  // Read as stored (same size, same padding): no conversion.
  if (H5Aread(found->attribute.get(), found->type.get(), text.data()) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  text.resize(std::min(text.find('\0'), text.size()));
  return text;
}

std::optional<std::uint64_t> read_uint_attribute(hid_t object, const char* name) {
  auto found = open_scalar_attribute(object, name, H5T_INTEGER);
  if (!found || H5Tget_sign(found->type.get()) != H5T_SGN_NONE) return std::nullopt;
  std::uint64_t value = 0;
  if (H5Aread(found->attribute.get(), H5T_NATIVE_UINT64, &value) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  return value;
}

}  // namespace joblet::detail::h5
