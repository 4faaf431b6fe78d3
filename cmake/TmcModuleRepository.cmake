# tmc_module_repository(<target> DIR <dir> INDEX <draft index.yaml> MODULES <library targets...>
#                       [EXPIRES <duration>])
#
# Builds a signed module repository in <dir> during the build: a signing key is generated
# once (<dir>-key/signing.key, with the matching trust file <dir>-key/trust.yaml), the
# modules' shared objects are copied into <dir>, the draft index is copied to
# <dir>/index.yaml, and `tmc modules sign` fills in every digest, the version and the
# expiry and writes index.yaml.sig. The draft index names each object by its file name.
function(tmc_module_repository target)
  cmake_parse_arguments(R "" "DIR;INDEX;EXPIRES" "MODULES" ${ARGN})
  if(NOT R_DIR OR NOT R_INDEX)
    message(FATAL_ERROR "tmc_module_repository(${target}): DIR and INDEX are required")
  endif()
  if(NOT R_EXPIRES)
    set(R_EXPIRES 365d)
  endif()
  set(keydir ${R_DIR}-key)
  set(key ${keydir}/signing.key)
  set(trust ${keydir}/trust.yaml)
  # The key is made once: the command names tmc_tool, which orders it after the tool
  # without making it re-run whenever the tool is relinked.
  add_custom_command(OUTPUT ${key} ${trust}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${keydir}
    COMMAND ${CMAKE_COMMAND} -E rm -f ${key} ${trust}
    COMMAND tmc_tool modules keygen --out ${key} --trust ${trust}
    COMMENT "Generating the signing key of ${R_DIR}"
    VERBATIM)
  set(copies)
  set(objects)
  foreach(m IN LISTS R_MODULES)
    list(APPEND copies COMMAND ${CMAKE_COMMAND} -E copy $<TARGET_FILE:${m}> ${R_DIR}/)
    list(APPEND objects $<TARGET_FILE:${m}>)
  endforeach()
  add_custom_command(OUTPUT ${R_DIR}/index.yaml.sig
    COMMAND ${CMAKE_COMMAND} -E make_directory ${R_DIR}
    ${copies}
    COMMAND ${CMAKE_COMMAND} -E copy ${R_INDEX} ${R_DIR}/index.yaml
    COMMAND tmc_tool modules sign ${R_DIR} --key ${key} --expires ${R_EXPIRES}
    DEPENDS ${R_INDEX} ${key} ${objects} ${R_MODULES}
    COMMENT "Signing the module repository ${R_DIR}"
    VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${R_DIR}/index.yaml.sig)
endfunction()
