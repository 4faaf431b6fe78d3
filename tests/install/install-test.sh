#!/usr/bin/env bash
# Install libTMC from a build tree into a temporary prefix, then build programs out of tree
# against the installed copy twice — once with find_package(libTMC) and once with
# pkg-config — and run them; then build a module out of tree with tmc_add_module. Checks that the installed public headers need nothing beyond
# the C++ standard library.
#
# usage: install-test.sh <build-dir> <source-dir>
set -euo pipefail

build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tmc-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
CXX=${CXX:-c++}

fail() { echo "install-test: FAIL: $*" >&2; exit 1; }

echo "install-test: cmake --install $build_dir --prefix $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install failed"; }

# Find the installed pieces (libdir may be lib or lib/<multiarch>).
config=$(find "$prefix" -name libTMCConfig.cmake -print -quit)
pcfile=$(find "$prefix" -name libtmc.pc -print -quit)
lib=$(find "$prefix" -name 'libtmc.so' -print -quit)
[ -n "$config" ] || fail "no libTMCConfig.cmake under $prefix"
[ -n "$pcfile" ] || fail "no libtmc.pc under $prefix"
[ -n "$lib" ] || fail "no libtmc.so under $prefix"
[ -f "$prefix/include/tmc/status.hpp" ] || fail "headers not installed to $prefix/include/tmc"
[ -f "$(dirname "$config")/libTMCConfigVersion.cmake" ] || fail "no libTMCConfigVersion.cmake"
libdir=$(dirname "$lib")

# The public headers must not pull in the private dependencies.
if grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](uv\.h|yaml-cpp/|boost/)' "$prefix"/include/tmc/*; then
  fail "an installed public header includes libuv, yaml-cpp or Boost (listed above)"
fi

# 1. CMake package.
echo "install-test: find_package(libTMC) build of tests/install/consumer"
cmake -S "$source_dir/tests/install/consumer" -B "$work/cmake-consumer" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "configure with find_package(libTMC) failed"; }
cmake --build "$work/cmake-consumer" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build with find_package(libTMC) failed"; }
LD_LIBRARY_PATH="$libdir" "$work/cmake-consumer/tmc_install_consumer" || fail "consumer (CMake build) failed"

# 2. pkg-config.
echo "install-test: pkg-config libtmc build of the same consumer"
export PKG_CONFIG_PATH="$(dirname "$pcfile")"
pkg-config --exists libtmc || fail "pkg-config does not find libtmc in $PKG_CONFIG_PATH"
# shellcheck disable=SC2046
"$CXX" -std=c++20 "$source_dir/tests/install/consumer/main.cpp" $(pkg-config --cflags --libs libtmc) \
       -o "$work/pc-consumer" || fail "build with pkg-config failed"
LD_LIBRARY_PATH="$libdir" "$work/pc-consumer" || fail "consumer (pkg-config build) failed"

# 3. A real example, out of tree, against the installed package, run on loopback multicast
#    (one publisher, two subscriber processes) with the installed libtmc.so.
if [ -f "$source_dir/examples/pubsub/CMakeLists.txt" ]; then
  echo "install-test: find_package(libTMC) build of examples/pubsub"
  cmake -S "$source_dir/examples/pubsub" -B "$work/pubsub" -G Ninja \
        -DCMAKE_PREFIX_PATH="$prefix" >"$work/pubsub-cmake.log" 2>&1 || { cat "$work/pubsub-cmake.log"; fail "configure of examples/pubsub failed"; }
  cmake --build "$work/pubsub" >"$work/pubsub-build.log" 2>&1 || { cat "$work/pubsub-build.log"; fail "build of examples/pubsub failed"; }
  echo "install-test: running the out-of-tree pubsub (1 publisher -> 2 subscribers, loopback)"
  LD_LIBRARY_PATH="$libdir" "$source_dir/examples/pubsub/run-fanout.sh" "$work/pubsub" 2 47831 \
    >"$work/pubsub-run.log" 2>&1 || { cat "$work/pubsub-run.log"; fail "the out-of-tree pubsub example failed"; }
  grep -E 'of [0-9]+ quotes' "$work/pubsub-run.log" | sed 's/^/  /'
  # It must have used the installed library, not one from a build tree.
  LD_LIBRARY_PATH="$libdir" ldd "$work/pubsub/tmc-pubsub-subscriber" | grep 'libtmc' | grep -q "$libdir" ||
    fail "the out-of-tree pubsub did not load libtmc from $libdir"
fi

# 4. The retrofit launcher finds the installed shim (no environment pointing at the build).
shim=$(find "$prefix" -name 'libtmc-retrofit.so' -print -quit)
if [ -n "$shim" ] && [ -x "$prefix/bin/tmc" ]; then
  echo "install-test: installed 'tmc run' preloads the installed libtmc-retrofit.so"
  preload=$(env -u TMC_RETROFIT_SHIM "$prefix/bin/tmc" run --manifest "$source_dir/tests/retrofit/loopback-fanout.yaml" \
    -- /bin/sh -c 'echo "$LD_PRELOAD"') || fail "installed 'tmc run' failed"
  case "$preload" in
    "$(cd "$(dirname "$shim")" && pwd -P)/libtmc-retrofit.so"*) ;;
    *) fail "installed 'tmc run' preloaded '$preload', not the installed $shim" ;;
  esac
fi

# 5. A module built out of tree with find_package(libTMC) + tmc_add_module (docs/modules.md's
#    example module), then loaded by the installed `tmc plan`, which places its stage.
if [ -f "$(dirname "$config")/TmcModule.cmake" ]; then
  echo "install-test: find_package(libTMC) + tmc_add_module build of the guide's example module"
  cmake -S "$source_dir/tests/install/module" -B "$work/module" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
        -DTMC_MODULE_SOURCE="$source_dir/tests/modules/counting.cpp" >"$work/module-cmake.log" 2>&1 ||
    { cat "$work/module-cmake.log"; fail "configure of the out-of-tree module failed"; }
  cmake --build "$work/module" >"$work/module-build.log" 2>&1 ||
    { cat "$work/module-build.log"; fail "build of the out-of-tree module failed"; }
  so="$work/module/modules/tally.so"
  [ -f "$so" ] || fail "tmc_add_module did not write $so"
  if [ -x "$prefix/bin/tmc" ]; then
    printf 'id: install-module\nmodules: [tally]\nstages:\n  tally.count: {}\n' >"$work/module.yaml"
    LD_LIBRARY_PATH="$libdir" "$prefix/bin/tmc" plan "$work/module.yaml" --module "$so" >"$work/module-plan.log" 2>&1 ||
      { cat "$work/module-plan.log"; fail "the installed tmc could not load the out-of-tree module"; }
    grep -q 'tally.count' "$work/module-plan.log" || { cat "$work/module-plan.log"; fail "the plan has no tally.count"; }
  fi
else
  fail "TmcModule.cmake is not installed beside libTMCConfig.cmake"
fi

echo "install-test: OK"
