// The engine's large-result files (engine's result_files.hpp), made of storage's result folder:
// launch/ is where the two meet, so neither depends on the other.
#include <memory>
#include <optional>

#include "joblet/detail/result_files.hpp"
#include "joblet/detail/result_folder.hpp"

namespace joblet::detail {
namespace {

class FolderResultFiles final : public ResultFiles {
 public:
  explicit FolderResultFiles(const ResultFilesPlace& place)
      : folder_(place.shared_path.empty()
                    ? ResultFolder(place.max_nbytes, place.root)
                    : ResultFolder(place.max_nbytes,
                                   ResultFolder::SharedPath{place.shared_path, place.remove_when_done})),
        reader_(folder_, place.map_arrays) {}

  ArrayWriter& writer() const noexcept override { return writer_; }
  ArrayReader& reader() const noexcept override { return reader_; }
  void remove_now() noexcept override { folder_.remove_now(); }
  void remove_own_files() noexcept override { folder_.remove_own_files(); }
  const std::string& path() const noexcept override { return folder_.path(); }

 private:
  ResultFolder folder_;
  mutable ResultWriter writer_{folder_};
  mutable ResultReader reader_;
};

}  // namespace

void install_result_files() noexcept {
  set_result_files_factory([](const ResultFilesPlace& place) -> std::unique_ptr<ResultFiles> {
    return std::make_unique<FolderResultFiles>(place);
  });
}

}  // namespace joblet::detail
