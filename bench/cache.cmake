# The cache workloads (cache-hit, cache-miss, hash-1GiB, cache-entry) on joblet and the raw
# limits; joblib's side is joblib_cache_bench.py. Included from bench/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/cache.cmake)
add_executable(cache_bench ${CMAKE_CURRENT_LIST_DIR}/cache_bench.cpp)
target_link_libraries(cache_bench PRIVATE joblet::storage joblet_xxhash)
joblet_compile_options(cache_bench)
