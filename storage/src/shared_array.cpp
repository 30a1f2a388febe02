#include "joblet/shared_array.hpp"

#include <mutex>

#include "array_file.hpp"

namespace joblet {

struct SharedArray::State {
  std::mutex mutex;
  std::optional<detail::DatasetInfo> info;                 // the dataset, once opened
  std::shared_ptr<const detail::FileMapping> mappings[2];  // read_only, copy_on_write
};

std::shared_ptr<SharedArray::State> SharedArray::make_state() { return std::make_shared<State>(); }

SharedArray::SharedArray(std::filesystem::path file, std::string dataset)
    : file_(std::move(file).string()), dataset_(std::move(dataset)), state_(make_state()) {
  if (file_.empty()) throw ConfigError("a SharedArray needs a file name");
  if (dataset_.empty()) throw ConfigError("a SharedArray needs a dataset name");
}

SharedArray SharedArray::write_block(const std::filesystem::path& file, const std::string& dataset, DType dtype,
                                     std::span<const std::size_t> shape, const void* data, std::size_t nbytes) {
  SharedArray handle(file, dataset);
  detail::ArrayFileWriter writer(file, {});
  writer.set_root_attribute("joblet_format", std::string_view("joblet.array"));
  writer.add_array(dataset, {dtype, shape, data, nbytes});
  writer.finish();
  handle.dtype_ = dtype;
  handle.shape_ = std::vector<std::size_t>(shape.begin(), shape.end());
  return handle;
}

SharedArray::State& SharedArray::state() const {
  if (!state_) {
    throw StorageError(
        "this SharedArray refers to nothing (default-constructed): make it with SharedArray(file, dataset) or "
        "SharedArray::write(file, array)");
  }
  return *state_;
}

namespace {
// The dataset as `reader` sees it, checked against what the handle and earlier opens saw.
const detail::DatasetInfo& describe(SharedArray::State& state, detail::ArrayFileReader& reader,
                                    const SharedArray& handle, const std::optional<DType>& dtype,
                                    const std::optional<std::vector<std::size_t>>& shape) {
  detail::DatasetInfo info = reader.dataset(handle.dataset());
  const bool changed = (dtype && *dtype != info.dtype) || (shape && *shape != info.shape) ||
                       (state.info && (state.info->dtype != info.dtype || state.info->shape != info.shape ||
                                       state.info->offset != info.offset));
  if (changed) {
    const DType expected_dtype = dtype.value_or(state.info ? state.info->dtype : info.dtype);
    const auto& expected_shape = shape ? *shape : state.info ? state.info->shape : info.shape;
    throw StorageError("dataset '" + handle.dataset() + "' of '" + handle.file() + "' holds " +
                       std::string(dtype_name(info.dtype)) + " " + detail::describe_shape(info.shape) +
                       " but this SharedArray refers to " + std::string(dtype_name(expected_dtype)) + " " +
                       detail::describe_shape(expected_shape) + ": the file was replaced since; make a new handle");
  }
  state.info = std::move(info);
  return *state.info;
}
}  // namespace

DType SharedArray::dtype() const {
  if (dtype_) return *dtype_;
  State& opened = state();
  std::lock_guard lock(opened.mutex);
  if (!opened.info) {
    detail::ArrayFileReader reader(file_);
    describe(opened, reader, *this, dtype_, shape_);
  }
  return opened.info->dtype;
}

const std::vector<std::size_t>& SharedArray::shape() const {
  if (shape_) return *shape_;
  State& opened = state();
  std::lock_guard lock(opened.mutex);
  if (!opened.info) {
    detail::ArrayFileReader reader(file_);
    describe(opened, reader, *this, dtype_, shape_);
  }
  return opened.info->shape;  // never changes once set: describe() refuses a different one
}

std::size_t SharedArray::size() const {
  std::size_t count = 1;
  for (std::size_t extent : shape()) count *= extent;
  return count;
}

detail::OpenedArray SharedArray::open(DType dtype, MmapMode mode) const {
  State& opened = state();
  std::lock_guard lock(opened.mutex);
  const bool copy_on_write = mode == MmapMode::copy_on_write;
  auto& mapping = opened.mappings[copy_on_write ? 1 : 0];
  if (mode != MmapMode::none && mapping && opened.info->dtype == dtype) {
    return {mapping, mapping->data() + *opened.info->offset, copy_on_write};
  }
  detail::ArrayFileReader reader(file_);
  const detail::DatasetInfo& info = describe(opened, reader, *this, dtype_, shape_);
  if (info.dtype != dtype) {
    throw StorageError("dataset '" + dataset_ + "' of '" + file_ + "' holds " + std::string(dtype_name(info.dtype)) +
                       " elements: get<T>() it with a T of that dtype, not " + std::string(dtype_name(dtype)));
  }
  detail::OpenedArray array = reader.open_array(dataset_, info, mode, /*verify=*/false);
  // A mapping is kept for the next get(); memory read is the caller's alone.
  if (auto mapped = std::dynamic_pointer_cast<const detail::FileMapping>(array.buffer)) mapping = std::move(mapped);
  return array;
}

}  // namespace joblet
