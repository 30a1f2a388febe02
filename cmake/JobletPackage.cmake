# Installs the CMake package: find_package(joblet) gives joblet::joblet.
include(CMakePackageConfigHelpers)
set(JOBLET_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/joblet)
install(EXPORT joblet-targets NAMESPACE joblet:: DESTINATION ${JOBLET_CMAKE_DIR})
configure_package_config_file(cmake/joblet-config.cmake.in
  ${PROJECT_BINARY_DIR}/joblet-config.cmake INSTALL_DESTINATION ${JOBLET_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/joblet-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/joblet-config.cmake ${PROJECT_SOURCE_DIR}/cmake/joblet-xxhash.cmake
              ${PROJECT_BINARY_DIR}/joblet-config-version.cmake
        DESTINATION ${JOBLET_CMAKE_DIR})
