# `cmake --install`: libdtrain, its headers (under include/dtrain, included as "comm/communicator.h" etc.), the
# commands dtrain, dtrain-shard, dtrain-inspect and dtrain-report, and a CMake package so that find_package(dtrain)
# gives the target dtrain::dtrain (docs/example/ is a project that uses it).

include(CMakePackageConfigHelpers)

install(TARGETS dtrain EXPORT dtrainTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS dtrain-bin dtrain-shard dtrain-inspect RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/runtime/app/dtrain_report.py DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME dtrain-report)
foreach(folder comm sampler io runtime jobs)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dtrain
          FILES_MATCHING PATTERN "*.h")
endforeach()

set(_package_dir ${CMAKE_INSTALL_LIBDIR}/cmake/dtrain)
install(EXPORT dtrainTargets NAMESPACE dtrain:: DESTINATION ${_package_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dtrainConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dtrainConfig.cmake INSTALL_DESTINATION ${_package_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dtrainConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dtrainConfig.cmake ${PROJECT_BINARY_DIR}/dtrainConfigVersion.cmake
        DESTINATION ${_package_dir})
