# cmake -DSWEEP=<ising_sweep> "-DARGS=<arguments>" -DCACHE=<directory> -P cached_rerun.cmake
# The sweep memoizes its tasks: a second run with the same cache prints the same table and
# takes every result from the cache.
file(REMOVE_RECURSE "${CACHE}")
foreach(run first second)
  execute_process(COMMAND "${SWEEP}" ${ARGS} --cache "${CACHE}"
                  OUTPUT_VARIABLE table_${run} ERROR_VARIABLE log_${run} RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "the ${run} run failed (${status}):\n${log_${run}}")
  endif()
endforeach()
file(REMOVE_RECURSE "${CACHE}")
if(NOT table_first STREQUAL table_second)
  message(FATAL_ERROR "the rerun printed a different table:\n${table_first}\n---\n${table_second}")
endif()
if(NOT log_first MATCHES "cache .*: 0 hits")
  message(FATAL_ERROR "the first run should compute everything:\n${log_first}")
endif()
if(NOT log_second MATCHES "([0-9]+) temperatures in .* cache .*: ([0-9]+) hits" OR
   NOT CMAKE_MATCH_1 STREQUAL CMAKE_MATCH_2)
  message(FATAL_ERROR "the rerun should take every result from the cache:\n${log_second}")
endif()
message("rerun: the same table, every result from the cache")
