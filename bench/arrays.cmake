# The array workloads (dump-1GiB, dump-1GiB-compressed, load-1GiB, load-mmap-1GiB, their peak
# memory, write-1GiB/read-1GiB raw limits, results-8x100MB) on joblet; joblib's, numpy's and
# h5py's side is joblib_array_bench.py. Included from bench/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/arrays.cmake)
add_executable(array_bench ${CMAKE_CURRENT_LIST_DIR}/array_bench.cpp)
target_link_libraries(array_bench PRIVATE joblet::engine joblet::storage)
joblet_compile_options(array_bench)
# GCC 12 at -O3 reports bogus -Wstringop-overflow inside the standard headers (see CMakeLists.txt).
target_compile_options(array_bench PRIVATE -Wno-stringop-overflow -Wno-restrict)
