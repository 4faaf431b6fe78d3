#!/usr/bin/env bash
# build.sh - compile the peer harnesses that pc_tput.sh and pc_rtt.sh compare libTMC with.
#
#   bench/peers/build.sh OUTDIR [AERON_SRC AERON_BUILD]
#
# raw_bench (raw UDP multicast) is always built. With AERON_SRC (a checkout of
# real-logic/aeron) and AERON_BUILD (its CMake build tree holding lib/libaeron_driver.so)
# also aeron_bench and aeron_pingpong. Aeron is not packaged by Debian; to build it:
#   cmake -S AERON_SRC -B AERON_BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release \
#     -DBUILD_AERON_ARCHIVE_API=OFF -DAERON_TESTS=OFF -DAERON_UNIT_TESTS=OFF \
#     -DAERON_SYSTEM_TESTS=OFF -DAERON_BUILD_SAMPLES=OFF -DAERON_BUILD_DOCUMENTATION=OFF
#   cmake --build AERON_BUILD --target aeron_driver aeronmd
# (Debian 12's CMake 3.25 is older than Aeron asks for: lowering its cmake_minimum_required
# and cmake_policy to 3.25 works.) Then AERON_BIN=AERON_BUILD/binaries for the scripts.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR [AERON_SRC AERON_BUILD]}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
g++ -O2 -std=c++17 -o "$out/raw_bench" "$here/raw_bench.cpp" -lpthread
echo "built $out/raw_bench"
if [ $# -ge 3 ]; then
  src=$(cd "$2" && pwd)
  bld=$(cd "$3" && pwd)
  for p in aeron_bench aeron_pingpong; do
    gcc -O2 -o "$out/$p" "$here/$p.c" -I"$src/aeron-client/src/main/c" -I"$src/aeron-driver/src/main/c" \
      -L"$bld/lib" -laeron_driver -Wl,-rpath,"$bld/lib" -lm
    echo "built $out/$p"
  done
else
  echo "no Aeron given: the aeron rows of pc_tput.sh and pc_rtt.sh will be skipped"
fi
