#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time; fails if any target finds a crash (a panic,
# a failed assertion, a timeout or an out-of-memory input), whose input is left in tests/fuzz/artifacts/.
#
#   bash tests/fuzz/run.sh                      # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=600 bash tests/fuzz/run.sh     # a long run by hand
#   bash tests/fuzz/run.sh envelope token       # some targets
#   FUZZ_BUILD=release FUZZ_SECONDS=3600 bash tests/fuzz/run.sh   # optimised: many times the inputs per second
#
# FUZZ_BUILD is `dev` (the default, what a bounded run wants: unoptimised but for the signature
# arithmetic, built in 10 minutes on two cores) or `release` (optimised, with 16 codegen units: it
# builds much longer — 25 minutes with cargo-fuzz's default of one unit — and tries 10 to 60 times the
# inputs per second, which pays off in a long run).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). It uses the nightly toolchain when one is
# installed, else the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes `-Z` flags); FUZZ_SANITIZER
# (default `address` on nightly, `none` on stable) is cargo-fuzz's `--sanitizer`. New inputs the fuzzer
# finds go to tests/fuzz/target/corpus/<target> (kept between runs, not in git); the seeds in
# tests/fuzz/corpus/<target> are read, never written.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-20}
build=${FUZZ_BUILD:-dev}
case "$build" in
  dev) build_flags=(--dev); profile_dir=debug ;;
  release) build_flags=(--release --codegen-units 16); profile_dir=release ;;
  *) echo "fuzz: FUZZ_BUILD must be dev or release, not $build" >&2; exit 2 ;;
esac
fuzz_dir=tests/fuzz

if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=${FUZZ_SANITIZER:-address}
  echo "fuzz: nightly toolchain ($(cargo +nightly --version))"
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
  sanitizer=${FUZZ_SANITIZER:-none}
  echo "fuzz: stable toolchain with RUSTC_BOOTSTRAP=1 ($(cargo --version))"
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list --fuzz-dir "$fuzz_dir")
fi

start=$(date +%s)
mkdir -p "$fuzz_dir/target"
build_log="$fuzz_dir/target/fuzz-build.log"
if ! cargo "${toolchain[@]}" fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "${build_flags[@]}" >"$build_log" 2>&1; then
  tail -n 60 "$build_log"
  echo "fuzz: the build failed ($build_log)" >&2
  exit 1
fi
build_seconds=$(( $(date +%s) - start ))
binaries="$fuzz_dir/target/$(rustc -vV | sed -n 's/^host: //p')/$profile_dir"
echo "fuzz: $build build in ${build_seconds} s"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="$fuzz_dir/target/corpus/$target"
  mkdir -p "$corpus" "$fuzz_dir/artifacts/$target"
  log="$fuzz_dir/target/fuzz-$target.log"
  echo "== fuzz $target (${seconds} s)"
  # The binary cargo-fuzz built, run as `cargo fuzz run` would (without its build check per target).
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb bounds memory. The scratch corpus comes
  # first, so that new inputs are written there and the seeds stay as they are.
  if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0} "$binaries/$target" \
      -artifact_prefix="$fuzz_dir/artifacts/$target/" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "$corpus" "$fuzz_dir/corpus/$target" >"$log" 2>&1; then
    outcome=ok
  else
    outcome=FAILED
    failed+=("$target")
    tail -n 60 "$log"
  fi
  # libFuzzer's last status line (`#runs DONE cov: … ft: … corp: …`) and its execution count.
  status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  summary+=("$(printf '%-12s %-6s runs=%-10s %s' "$target" "$outcome" "${runs:-?}" "$status")")
done

echo
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, $build build ${build_seconds} s, total $(( $(date +%s) - start )) s"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}; the inputs are in $fuzz_dir/artifacts/<target>/" >&2
  echo "reproduce: cargo fuzz run --fuzz-dir $fuzz_dir ${build_flags[*]} <target> $fuzz_dir/artifacts/<target>/<file>" >&2
  exit 1
fi
