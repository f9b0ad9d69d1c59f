#!/usr/bin/env bash
# Builds and runs the native runtime tests (csrc/tests/test_runtime.cpp), once per requested mode:
#   plain    -O2 with assertions
#   thread   ThreadSanitizer (data races, lock-order problems)
#   address  AddressSanitizer + UndefinedBehaviorSanitizer (use after free, overflows, UB)
# Usage: csrc/tests/run.sh [plain] [thread] [address]   (default: all three). Needs CMake and a C++17 compiler.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${MEDINFER_NATIVE_TEST_BUILD:-$here/../../build/native-tests}"
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(plain thread address)
for mode in "${modes[@]}"; do
  case "$mode" in
    plain) flags="-O2" ;;
    thread) flags="-O1 -g -fsanitize=thread" ;;
    address) flags="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" ;;
    *) echo "unknown mode '$mode' (plain, thread, address)" >&2; exit 2 ;;
  esac
  echo "== $mode: $flags"
  cmake -S "$here" -B "$build/$mode" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="$flags" > /dev/null
  cmake --build "$build/$mode" -j "$(nproc)" > /dev/null
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
    "$build/$mode/test_runtime"
done
