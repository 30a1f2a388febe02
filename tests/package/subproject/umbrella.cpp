// <joblet/joblet.hpp> in a build of joblet without its mpi backend: no <mpi.h>, no joblet::mpi;
// a call of cached tasks instantiates the elastic campaign's templates under -Werror too.
#include <joblet/joblet.hpp>

#include <ranges>
#include <string>

#if JOBLET_HAS_MPI
#error "JOBLET_MPI=OFF, yet joblet says it has MPI"
#endif

namespace {
int cube(int x) { return x * x * x; }
}  // namespace

int answer() { return joblet::Parallel().n_workers(); }

long cached_cubes(const std::string& cache_dir) {
  const joblet::Memory memory(cache_dir);
  const auto cached_cube = memory.cache("umbrella.cube", cube, {.version = "1"});
  long sum = 0;
  for (int value : joblet::Parallel()(std::views::iota(0, 10) |
                                      std::views::transform([&](int i) { return joblet::delayed(cached_cube, i); })))
    sum += value;
  return sum;
}
