# Helpers shared by every layer, so each layer's CMakeLists.txt states only what is particular to it.

# Warnings apply to plexus's own targets only, never to consumers (no CMAKE_CXX_FLAGS edits).
add_library(plexus_warnings INTERFACE)
target_compile_options(plexus_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                  -Wno-missing-field-initializers>
  # GCC 12 reports std::string concatenation at -O3 as overlapping memcpy (GCC bug 105329).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>
  $<$<BOOL:${PLEXUS_WERROR}>:-Werror>)
if(PLEXUS_THREAD_SAFETY_ANALYSIS)
  target_compile_options(plexus_warnings INTERFACE
    $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety -Wthread-safety-beta -Werror=thread-safety>)
endif()

set(PLEXUS_EXPORTED_TARGETS "" CACHE INTERNAL "")

# plexus_add_layer(<layer> SOURCES <src...> DEPS <targets...>)
# Creates plexus_<layer> with the alias plexus::<layer>; its public headers are every .h file
# under include/plexus/<layer>/ (including internal/), installed as a header file set.
function(plexus_add_layer layer)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  set(target plexus_${layer})
  add_library(${target} ${ARG_SOURCES})
  add_library(plexus::${layer} ALIAS ${target})
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/include/plexus/${layer}/*.h)
  target_sources(${target} PUBLIC FILE_SET HEADERS BASE_DIRS ${PROJECT_SOURCE_DIR}/include
                 FILES ${headers})
  # Spelled out: CMake 3.25 does not turn an imported header set's base directory into an
  # include directory for consumers of the installed package.
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                              $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE $<BUILD_INTERFACE:plexus_warnings>)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${layer} OUTPUT_NAME plexus_${layer}
                        POSITION_INDEPENDENT_CODE ON)
  set(PLEXUS_EXPORTED_TARGETS ${PLEXUS_EXPORTED_TARGETS} ${target} CACHE INTERNAL "")
endfunction()
