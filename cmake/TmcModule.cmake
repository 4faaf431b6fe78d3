# tmc_add_module(<target> <sources>... [OUTPUT_NAME <name>])
#
# Builds a libTMC module: a shared object (no "lib" prefix) that exports only its entry point
# (tmc_module_entry, see include/tmc/module_abi.h) and links libtmc, written to
# ${CMAKE_BINARY_DIR}/modules/<name>.so. In libTMC's own tree it links the target `tmc`;
# elsewhere find_package(libTMC) provides this function and the module links libTMC::tmc.
function(tmc_add_module target)
  cmake_parse_arguments(ARG "" "OUTPUT_NAME" "" ${ARGN})
  add_library(${target} MODULE ${ARG_UNPARSED_ARGUMENTS})
  if(NOT ARG_OUTPUT_NAME)
    set(ARG_OUTPUT_NAME ${target})
  endif()
  set_target_properties(${target} PROPERTIES PREFIX "" OUTPUT_NAME ${ARG_OUTPUT_NAME}
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/modules
                        CXX_VISIBILITY_PRESET hidden C_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(TARGET tmc)
    target_link_libraries(${target} PRIVATE tmc)
  else()
    target_link_libraries(${target} PRIVATE libTMC::tmc)
  endif()
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                         $<$<COMPILE_LANGUAGE:CXX>:-Wshadow -Wnon-virtual-dtor -Wold-style-cast>)
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
endfunction()
