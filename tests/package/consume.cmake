# Installs the build tree into a scratch prefix, then configures, builds and runs the consumer
# project against it with find_package(joblet). Run with cmake -P.
include(${CMAKE_CURRENT_LIST_DIR}/script_helpers.cmake)
require_arguments(BUILD_DIR SOURCE_DIR WORK_DIR)
file(REMOVE_RECURSE "${WORK_DIR}")
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
# CXX_COMPILER (optional): the consumer's compiler, when it is not the one joblet was built with.
set(compiler_option "")
if(CXX_COMPILER)
  set(compiler_option "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G Ninja "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix"
    ${compiler_option})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
message(STATUS "the installed joblet package builds and runs a consumer project")
