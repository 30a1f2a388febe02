# Helpers shared by every joblet target.

# Warnings and sanitizers apply to joblet's own code only: they are PRIVATE so
# nothing is pushed onto a consumer's build.
function(joblet_compile_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor)
  if(JOBLET_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(JOBLET_SANITIZE)
  # Sanitizers must cover every object of the process that joblet owns, tests included,
  # so they are set directory-wide rather than per target.
  add_compile_options(-fsanitize=${JOBLET_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${JOBLET_SANITIZE})
endif()

# joblet_module(NAME SOURCES... [DEPENDS targets...] [PRIVATE_DEPENDS targets...]
#               [INTERNAL_DEPENDS targets...]) declares the library of one folder: target
# joblet_<NAME>, alias joblet::<NAME>, installed public headers in <folder>/include.
#
# Headers that other modules' sources (and white-box tests) need but no public header does live
# in <folder>/internal/joblet/detail/: target joblet::<NAME>_internal (the library plus that
# folder, and INTERNAL_DEPENDS, e.g. spdlog for core's log header), never installed. Link it
# with PRIVATE_DEPENDS joblet::<other>_internal.
function(joblet_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;PRIVATE_DEPENDS;INTERNAL_DEPENDS" ${ARGN})
  add_library(joblet_${name} STATIC ${ARG_SOURCES})
  add_library(joblet::${name} ALIAS joblet_${name})
  set_target_properties(joblet_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME joblet_${name})
  target_include_directories(joblet_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  # Internal targets carry only include folders and build-time libraries: they exist in the build
  # tree alone, so a static library's private link to one must not reach the installed package.
  set(private_depends "")
  foreach(dependency IN LISTS ARG_PRIVATE_DEPENDS)
    if(dependency MATCHES "_internal$")
      list(APPEND private_depends $<BUILD_INTERFACE:${dependency}>)
    else()
      list(APPEND private_depends ${dependency})
    endif()
  endforeach()
  target_link_libraries(joblet_${name} PUBLIC ${ARG_DEPENDS} PRIVATE ${private_depends})
  target_compile_features(joblet_${name} PUBLIC cxx_std_20)
  joblet_compile_options(joblet_${name})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/internal)
    add_library(joblet_${name}_internal INTERFACE)
    add_library(joblet::${name}_internal ALIAS joblet_${name}_internal)
    target_include_directories(joblet_${name}_internal INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/internal)
    target_link_libraries(joblet_${name}_internal INTERFACE joblet_${name} ${ARG_INTERNAL_DEPENDS})
    target_include_directories(joblet_${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/internal)
    target_link_libraries(joblet_${name} PRIVATE ${ARG_INTERNAL_DEPENDS})
  endif()
  if(JOBLET_INSTALL)
    install(TARGETS joblet_${name} EXPORT joblet-targets
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    install(DIRECTORY include/joblet DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endfunction()
