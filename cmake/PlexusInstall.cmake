# Install rules: headers, libraries, a CMake package (find_package(plexus)) and a pkg-config file.
include(CMakePackageConfigHelpers)

set(PLEXUS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/plexus)
install(TARGETS ${PLEXUS_EXPORTED_TARGETS} EXPORT plexusTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT plexusTargets NAMESPACE plexus:: DESTINATION ${PLEXUS_CMAKE_DIR})

# plexus::ops links packages of its own; the package config finds them for consumers.
if(TARGET plexus_ops)
  set(PLEXUS_HAS_OPS ON)
else()
  set(PLEXUS_HAS_OPS OFF)
endif()
# plexus::cluster links libnats privately (a static library's consumers still link it) and
# nlohmann-json publicly; the package config finds both when the layer was built.
if(TARGET plexus_cluster)
  set(PLEXUS_HAS_CLUSTER ON)
else()
  set(PLEXUS_HAS_CLUSTER OFF)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/plexusConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/plexusConfig.cmake
                              INSTALL_DESTINATION ${PLEXUS_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/plexusConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/plexusConfig.cmake ${PROJECT_BINARY_DIR}/plexusConfigVersion.cmake
        DESTINATION ${PLEXUS_CMAKE_DIR})

# pkg-config lists the layers from the most dependent down, so static linking resolves.
set(PLEXUS_PC_LIBS "")
foreach(target IN LISTS PLEXUS_EXPORTED_TARGETS)
  string(PREPEND PLEXUS_PC_LIBS "-l${target} ")
endforeach()
if(PLEXUS_HAS_OPS)
  string(APPEND PLEXUS_PC_LIBS "-lprometheus-cpp-core -lcpp-httplib ")
endif()
if(PLEXUS_HAS_CLUSTER)
  string(APPEND PLEXUS_PC_LIBS "-lnats ")
endif()
# The prefix is computed from the .pc file's own location, so an installed tree can be moved
# (and `cmake --install --prefix` elsewhere than the configured prefix works).
file(RELATIVE_PATH PLEXUS_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" PLEXUS_PC_TO_PREFIX "${PLEXUS_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/plexus.pc.in ${PROJECT_BINARY_DIR}/plexus.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/plexus.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
