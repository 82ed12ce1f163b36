# Run by ctest: installs the built tree into a scratch prefix, then configures, builds and runs
# examples/consumer against the installed package, first through find_package(plexus), then
# through pkg-config. Fails loudly at the first step that does not work.
set(prefix ${PLEXUS_BINARY_DIR}/consumer-test/prefix)
set(build ${PLEXUS_BINARY_DIR}/consumer-test/build)
file(REMOVE_RECURSE ${PLEXUS_BINARY_DIR}/consumer-test)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install ${PLEXUS_BINARY_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${PLEXUS_SOURCE_DIR}/examples/consumer -B ${build} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${build})
run(${build}/consumer)

# pkg-config: compile the same source with the flags plexus.pc gives.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig:${prefix}/lib/x86_64-linux-gnu/pkgconfig)
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs plexus OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config cannot find plexus.pc under ${prefix}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX_COMPILER} ${PLEXUS_SOURCE_DIR}/examples/consumer/main.cc ${flags} -o ${build}/consumer_pc)
run(${build}/consumer_pc)
