// The dump file format (version 1), on top of array_file's HDF5 machinery:
//
//   /                       attributes joblet_format = "joblet.dump", joblet_format_version = 1,
//                           joblet_type (the C++ type, demangled), joblet_version (the library),
//                           joblet_binding (Memory's companion files only)
//   /value                  uint8[n]: the value's codec bytes; each array in it is a reference,
//                           the name of its dataset under /arrays
//   /arrays/<n>             one dataset per array, in encoding order; attribute joblet_dtype,
//                           and joblet_xxh3_128 (uncompressed arrays)
//   /<key>..., attributes   the names a std::map<std::string, V> gives its values: links to
//                           /arrays/<n>, groups, and attributes for numbers and strings
//                           (joblet/dump.hpp); nothing reads them back
//   after HDF5's bytes      the footer every joblet file has (array_file.hpp), required here
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "array_file.hpp"
#include "joblet/detail/dump_contents.hpp"
#include "joblet/detail/log.hpp"
#include "joblet/dump.hpp"

#ifndef JOBLET_VERSION_STRING
#define JOBLET_VERSION_STRING "unknown"
#endif

namespace joblet::detail {
namespace {

constexpr std::string_view kFormatName = "joblet.dump";
constexpr std::uint32_t kFormatVersion = 1;
constexpr const char* kEncodingDataset = "value";
constexpr std::string_view kArraysGroup = "arrays/";

// Dataset names under /arrays: what dump writes (decimal numbers), checked before use so that
// a damaged encoding cannot name anything else in the file.
bool valid_array_name(std::string_view name) {
  return !name.empty() && name.size() <= 20 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

struct DumpFile::Impl {
  Impl(const std::filesystem::path& path, LoadOptions load_options, FileUse use, const std::filesystem::path& opened_as)
      : reader(path, /*require_footer=*/true, use, opened_as), options(load_options) {}
  ArrayFileReader reader;
  LoadOptions options;
  std::string type_name;
  std::string encoding;
  bool warned_compressed = false;

  DatasetInfo checked_dataset(std::string_view reference, DType dtype, std::span<const std::size_t> shape) {
    if (!valid_array_name(reference)) {
      throw StorageError(quoted(reader.path()) + " is damaged: its value refers to an array named '" +
                         std::string(reference.substr(0, 40)) + "'");
    }
    const std::string name = std::string(kArraysGroup) + std::string(reference);
    DatasetInfo info = reader.dataset(name);
    if (info.dtype != dtype) {
      throw StorageError("dataset '" + name + "' of " + quoted(reader.path()) + " holds " +
                         std::string(dtype_name(info.dtype)) + " elements where " + type_name + " has " +
                         std::string(dtype_name(dtype)) + " ones (was the file written for another type?)");
    }
    if (!std::equal(info.shape.begin(), info.shape.end(), shape.begin(), shape.end())) {
      throw StorageError("dataset '" + name + "' of " + quoted(reader.path()) + " has shape " +
                         describe_shape(info.shape) + " where the value expects " + describe_shape(shape) +
                         ": the file is damaged or was changed after dump()");
    }
    return info;
  }
};

std::optional<std::string> DumpWriter::store(const ArrayBlock& block) {
  const std::string name = std::to_string(arrays_.size());
  arrays_.push_back({block.dtype, std::vector<std::size_t>(block.shape.begin(), block.shape.end()), block.data,
                     block.nbytes, current_scope()});
  return name;
}

namespace {
bool valid_key(std::string_view key) {
  return !key.empty() && key != "." && key != ".." && key.find('/') == std::string_view::npos &&
         key.find('\0') == std::string_view::npos;
}
}  // namespace

std::string DumpWriter::current_scope() const {
  std::string scope;
  for (const std::string& key : scope_) {
    if (key.empty()) return {};
    scope += (scope.empty() ? "" : "/") + key;
  }
  return scope;
}

void DumpWriter::enter_name(std::string_view key) {
  const bool reserved_here = scope_.empty() && (key == "value" || key == "arrays");
  scope_.emplace_back(valid_key(key) && !reserved_here ? key : std::string_view());
}

void DumpWriter::leave_name() {
  if (!scope_.empty()) scope_.pop_back();
}

void DumpWriter::name_value(std::string_view key, DType dtype, std::string_view bytes, bool text) {
  const std::string scope = current_scope();
  // Inside a key that names nothing, nothing is named.
  if (!valid_key(key) || (!scope_.empty() && scope.empty())) return;
  values_.push_back({scope, std::string(key), dtype, std::string(bytes), text});
}

void DumpWriter::name_number(std::string_view key, DType dtype, const void* value) {
  name_value(key, dtype, std::string_view(static_cast<const char*>(value), dtype_size(dtype)), false);
}

void DumpWriter::name_text(std::string_view key, std::string_view text) { name_value(key, DType{}, text, true); }

void DumpWriter::write_names(ArrayFileWriter& file) const {
  // A scope whose one array is all it holds is that array's name; otherwise it is a group, and
  // its own arrays are numbered in it.
  const auto holds_more = [this](const std::string& scope) {
    const std::string below = scope + "/";
    for (const Array& array : arrays_) {
      if (array.scope.starts_with(below)) return true;
    }
    for (const NamedValue& value : values_) {
      if (value.scope == scope || value.scope.starts_with(below)) return true;
    }
    return false;
  };
  std::map<std::string, std::vector<std::size_t>> by_scope;
  for (std::size_t i = 0; i < arrays_.size(); ++i) {
    if (!arrays_[i].scope.empty()) by_scope[arrays_[i].scope].push_back(i);
  }
  std::vector<std::string> unnamed;
  for (const auto& [scope, indices] : by_scope) {
    const bool alone = indices.size() == 1 && !holds_more(scope);
    for (std::size_t k = 0; k < indices.size(); ++k) {
      const std::string name = alone ? scope : scope + "/" + std::to_string(k);
      if (!file.add_name(name, indices[k])) unnamed.push_back(name);
    }
  }
  for (const NamedValue& value : values_) {
    const bool reserved = value.scope.empty() && value.key.starts_with("joblet_");
    const bool added =
        !reserved && (value.text ? file.add_attribute(value.scope, value.key, value.bytes)
                                 : file.add_attribute(value.scope, value.key, value.dtype, value.bytes.data()));
    if (!added) unnamed.push_back((value.scope.empty() ? "" : value.scope + "/") + value.key);
  }
  if (!unnamed.empty()) {
    log().info(
        "dump: {} name(s) of the value were left out of the file's names because they were taken (the value "
        "round-trips as it is): {}",
        unnamed.size(), unnamed.front());
  }
}

std::uint64_t DumpWriter::write(const std::filesystem::path& path, std::string_view encoding,
                                std::string_view type_name, const DumpOptions& options, std::string_view binding,
                                std::string (*describe_errno)(int error)) const {
  ArrayFileSettings settings;
  settings.compress = options.compress;
  settings.compressor = options.compressor == Compressor::szip ? FileCompressor::szip : FileCompressor::deflate;
  settings.shuffle = options.shuffle;
  settings.checksum = options.checksum;
  settings.fsync = options.fsync;
  if (describe_errno != nullptr) settings.describe_errno = describe_errno;
  ArrayFileWriter file(path, settings);
  file.set_root_attribute("joblet_format", kFormatName);
  file.set_root_attribute("joblet_format_version", kFormatVersion);
  file.set_root_attribute("joblet_type", type_name);
  file.set_root_attribute("joblet_version", JOBLET_VERSION_STRING);
  if (!binding.empty()) file.set_root_attribute("joblet_binding", binding);
  for (std::size_t i = 0; i < arrays_.size(); ++i) {
    const Array& array = arrays_[i];
    file.add_array(std::string(kArraysGroup) + std::to_string(i), {array.dtype, array.shape, array.data, array.nbytes});
  }
  file.add_bytes(kEncodingDataset, encoding,
                 "the value's codec bytes (joblet); its arrays are the datasets in /arrays, in order");
  write_names(file);
  return file.finish();
}

DumpFile::DumpFile(const std::filesystem::path& path, const LoadOptions& options, std::string_view type_name,
                   std::string_view binding, FileUse use, const std::filesystem::path& opened_as)
    : impl_(std::make_unique<Impl>(path, options, use, opened_as)) {
  Impl& file = *impl_;
  file.type_name = std::string(type_name);
  const bool for_user = use == FileUse::user_file;
  const auto format = file.reader.root_string("joblet_format");
  if (!format || *format != kFormatName) {
    throw StorageError(quoted(path) +
                       " is an HDF5 file but not one written by joblet::dump (no joblet_format attribute)" +
                       (for_user ? "; read its datasets with joblet::SharedArray(path, dataset)" : ""));
  }
  const auto version = file.reader.root_uint("joblet_format_version");
  if (!version) throw StorageError(quoted(path) + " is damaged: its joblet_format_version attribute is unreadable");
  if (*version > kFormatVersion) {
    throw StorageError(quoted(path) + " was written by a newer joblet (dump format version " +
                       std::to_string(*version) + "); this joblet reads version " + std::to_string(kFormatVersion) +
                       ": upgrade joblet to read it");
  }
  if (*version != kFormatVersion) {
    throw StorageError(quoted(path) + " has dump format version " + std::to_string(*version) +
                       ", which this joblet does not read (it reads version " + std::to_string(kFormatVersion) + ")");
  }
  const auto stored_type = file.reader.root_string("joblet_type", 65536);
  if (!stored_type) throw StorageError(quoted(path) + " is damaged: its joblet_type attribute is unreadable");
  if (!type_name.empty() && *stored_type != type_name) {
    throw StorageError(quoted(path) + " holds a " + *stored_type + ", not a " + std::string(type_name) +
                       (for_user ? ": load it as the type it was dumped as" : ""));
  }
  if (!binding.empty() && file.reader.root_string("joblet_binding").value_or("") != binding) {
    throw FileReplaced(quoted(path) + " belongs to another entry (it was replaced meanwhile)");
  }
  if (type_name.empty()) file.type_name = *stored_type;
  file.encoding = file.reader.read_bytes(kEncodingDataset, file.reader.file_size());
}

DumpFile::~DumpFile() = default;

DumpContents describe_dump(const std::filesystem::path& path) {
  DumpFile file(path, {}, {});
  ArrayFileReader& reader = file.impl().reader;
  DumpContents contents;
  contents.type = file.impl().type_name;
  contents.written_by = reader.root_string("joblet_version").value_or("unknown");
  contents.format_version = reader.root_uint("joblet_format_version").value_or(0);
  contents.file_size = reader.file_size();
  contents.encoding_bytes = file.encoding().size();
  for (std::vector<std::string>& names : reader.dataset_names()) {
    if (names.size() == 1 && names.front() == kEncodingDataset) continue;
    DumpContents::Dataset dataset;
    const DatasetInfo info = reader.dataset(names.front());
    dataset.dtype = dtype_name(info.dtype);
    dataset.shape = info.shape;
    dataset.nbytes = info.nbytes;
    dataset.compression = reader.compression_of(names.front());
    // /arrays/<n> first: the name load() reads, then the names of keys.
    std::stable_partition(names.begin(), names.end(),
                          [](const std::string& name) { return name.starts_with(kArraysGroup); });
    dataset.names = std::move(names);
    contents.datasets.push_back(std::move(dataset));
  }
  for (const std::string& group : reader.group_names()) {
    auto values = reader.attributes_of(group);
    if (!values.empty()) contents.attributes.push_back({group, std::move(values)});
  }
  return contents;
}

std::span<const std::byte> DumpFile::encoding() const noexcept {
  return std::as_bytes(std::span<const char>(impl_->encoding.data(), impl_->encoding.size()));
}

void DumpFile::fail_decode(const SerializationError& error) const {
  throw StorageError(quoted(impl_->reader.path()) + " does not hold a valid " + impl_->type_name + " (" +
                     error.message() + "): it is damaged, or was written by an incompatible program");
}

OpenedArray DumpReader::open(std::string_view reference, DType dtype, std::span<const std::size_t> shape,
                             std::size_t /*nbytes*/) {
  DumpFile::Impl& file = file_.impl();
  const DatasetInfo info = file.checked_dataset(reference, dtype, shape);
  const MmapMode mode = file.options.mmap_mode;
  if (mode != MmapMode::none && info.compressed && !file.warned_compressed) {
    file.warned_compressed = true;
    log().warn(
        "{} has compressed arrays, which cannot be memory-mapped; loading them into memory (dump it with "
        "compress = 0 to map it)",
        file.reader.path().string());
  }
  // checked_dataset() matched dtype and shape, so info.nbytes is the `nbytes` the value expects.
  return file.reader.open_array(std::string(kArraysGroup) + std::string(reference), info, mode, file.options.verify);
}

void DumpReader::read(std::string_view reference, DType dtype, std::span<const std::size_t> shape, std::size_t nbytes,
                      Destination destination) {
  DumpFile::Impl& file = file_.impl();
  const DatasetInfo info = file.checked_dataset(reference, dtype, shape);
  void* data = destination.allocate(destination.context, shape.empty() ? 1 : shape[0]);
  if (nbytes > 0) file.reader.read(std::string(kArraysGroup) + std::string(reference), info, data, file.options.verify);
}

}  // namespace joblet::detail
