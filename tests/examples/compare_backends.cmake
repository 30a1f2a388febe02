# cmake -DSWEEP=<ising_sweep> "-DARGS=<arguments as a ;-list>" -P compare_backends.cmake
# Runs the sweep on the sequential, threads and processes backends and fails unless the three
# tables on stdout are identical. Progress goes to stderr, so it cannot interfere.
if(NOT SWEEP)
  message(FATAL_ERROR "pass -DSWEEP=<path to ising_sweep>")
endif()
set(sweep_args ${ARGS})  # a CMake list

function(run_sweep result_var)
  cmake_parse_arguments(RUN "" "" "LAUNCHER" ${ARGN})
  execute_process(COMMAND ${RUN_LAUNCHER} "${SWEEP}" ${sweep_args} ${RUN_UNPARSED_ARGUMENTS}
                  OUTPUT_VARIABLE table ERROR_VARIABLE progress RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "ising_sweep ${ARGN} failed with status ${status}:\n${progress}")
  endif()
  if(NOT table MATCHES "<\\|m\\|>")
    message(FATAL_ERROR "ising_sweep ${ARGN} printed no result table:\n${table}")
  endif()
  set(${result_var} "${table}" PARENT_SCOPE)
endfunction()

# Without the cache, so that every backend really computes.
run_sweep(reference --backend sequential --no-cache)
message("--backend sequential:\n${reference}")
foreach(backend threads processes)
  run_sweep(table --backend ${backend} --n-jobs 2 --no-cache)
  if(NOT table STREQUAL reference)
    message(FATAL_ERROR "--backend ${backend} --n-jobs 2 printed a different table:\n${table}")
  endif()
  message("--backend ${backend} --n-jobs 2: identical")
endforeach()

# Under mpirun (when given): every rank computes, rank 0 prints the same table.
if(MPIRUN)
  run_sweep(table --no-cache LAUNCHER ${MPIRUN})
  if(NOT table STREQUAL reference)
    message(FATAL_ERROR "under ${MPIRUN} the sweep printed a different table:\n${table}")
  endif()
  message("under ${MPIRUN}: identical")
endif()
