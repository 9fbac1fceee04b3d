#!/usr/bin/env bash
# Builds the workspace for x86_64-pc-windows-gnu and runs its whole test suite under Wine.
# Works on a fresh Debian machine: installs what it needs (Debian's Rust with std sources, the
# MinGW linker, Wine). Prints how many tests ran.
#
# Usage: scripts/test-windows.sh [SELECTION...] [-- HARNESS-ARGS...]
#   With no arguments, builds everything and runs the whole workspace suite (what CI does).
#   Otherwise SELECTION replaces `--workspace` for `cargo test` and HARNESS-ARGS go to the test
#   harness, for example:
#     scripts/test-windows.sh --test windows_pipes
#     scripts/test-windows.sh -p rpc-transport --lib -- pipe_mode
#   `run` first runs a program under Wine instead of the tests, for example the measurement of
#   200 connections:
#     scripts/test-windows.sh run --release --example connection_load -- 200
set -euo pipefail
mode=test
if [ "${1:-}" = "run" ]; then
    mode=run
    shift
fi
selection=()
harness=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        harness=("$@")
        break
    fi
    selection+=("$1")
    shift
done
full=1
[ "$mode" = run ] && full=0
[ ${#selection[@]} -gt 0 ] || [ ${#harness[@]} -gt 0 ] && full=0
[ ${#selection[@]} -gt 0 ] || selection=(--workspace)
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
started=$(date +%s)

# Debian's Rust (bookworm-security has 1.96) builds std for Windows from its own sources.
min_rust=89
rust_minor() { /usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2 | cut -d. -f2; }
need=()
if [ ! -x /usr/bin/rustc ] || [ "$(rust_minor)" -lt "$min_rust" ] \
    || [ ! -d "/usr/src/rustc-$(/usr/bin/rustc --version | cut -d' ' -f2)/library" ]; then
    need+=(rustc-web cargo-web rust-web-src)
fi
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64-posix)
command -v wine >/dev/null || need+=(wine64 wine)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    # One transaction, so that rustc and its std sources are the same version.
    if ! DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
        rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix wine64 wine >/dev/null; then
        echo "installing failed. rustc-web, cargo-web and rust-web-src come from Debian's security" >&2
        echo "archive: add 'deb http://deb.debian.org/debian-security bookworm-security main' to" >&2
        echo "/etc/apt/sources.list (or a file in /etc/apt/sources.list.d/) and run this again." >&2
        exit 1
    fi
fi
# Check what we got, installed now or before: a std source tree of the same version, and a
# compiler new enough for the workspace.
version=$(/usr/bin/rustc --version | cut -d' ' -f2)
[ -f "/usr/src/rustc-$version/library/Cargo.lock" ] || {
    echo "rust-web-src does not match rustc $version: install rustc-web, cargo-web and" >&2
    echo "rust-web-src again in one apt-get transaction so that their versions agree." >&2
    exit 1
}
if [ "$(rust_minor)" -lt "$min_rust" ]; then
    echo "Debian's rustc is $version; the workspace needs 1.$min_rust or later. Add Debian's" >&2
    echo "security archive (bookworm-security, which has rustc-web 1.96) to the apt sources," >&2
    echo "run 'apt-get update', and run this again." >&2
    exit 1
fi

work="${WINDOWS_WORK_DIR:-$root/target/windows}"
mkdir -p "$work/shim"
if [ ! -f "$work/shim/bcryptprimitives.dll" ] || [ scripts/windows/processprng.c -nt "$work/shim/bcryptprimitives.dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$work/shim/bcryptprimitives.dll" scripts/windows/processprng.c -lbcrypt
fi

export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$work/target"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$root/scripts/windows/run-under-wine.sh"
export WINEPREFIX="$work/prefix" WINEARCH=win64 WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree=;mshtml=;winemenubuilder.exe=d"
export WINEPATH="Z:${work//\//\\}\\shim"
unset DISPLAY WAYLAND_DISPLAY
trap 'wineserver --kill >/dev/null 2>&1 || true' EXIT

cargo=(/usr/bin/cargo)
flags=(--ignore-rust-version -Zbuild-std=std,panic_unwind --target x86_64-pc-windows-gnu)
if [ "$full" = 1 ]; then
    echo "== building the workspace for Windows (rustc $version)"
    "${cargo[@]}" build --workspace --tests --examples "${flags[@]}"
fi
if [ ! -d "$WINEPREFIX" ]; then
    # A new prefix: let its first boot finish (the service manager refuses services until it
    # has) before any test runs.
    wineboot --init >/dev/null 2>&1 || true
    wineserver --wait >/dev/null 2>&1 || true
fi
# Programs that Wine's service manager starts do not get WINEPATH: the stand-in DLL also sits
# beside the examples, where the loader looks first.
for profile in debug release; do
    mkdir -p "$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/$profile/examples"
    cp -f "$work/shim/bcryptprimitives.dll" "$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/$profile/examples/"
done

if [ "$mode" = run ]; then
    "${cargo[@]}" run "${selection[@]}" "${flags[@]}" -- "${harness[@]}"
    exit
fi

echo "== running the tests under $(wine --version)"
log="$work/test.log"
set +e
# --no-fail-fast: every test binary runs, so the count below is the whole suite's.
"${cargo[@]}" test --no-fail-fast "${selection[@]}" "${flags[@]}" -- --test-threads=4 \
    "${harness[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$full" = 1 ]; then
    # Show what Wine cannot confirm, and the settings as read back from a live pipe.
    "${cargo[@]}" test -q -p rpc-transport --lib "${flags[@]}" -- --nocapture squat read_back \
        2>/dev/null | grep -E "NOT CONFIRMED|read back" | sed 's/^\.*//' || true
fi
# Test binaries built for the host (the proc-macro crate's unit tests) run natively, not under
# Wine: count them apart. A result line reads "test result: ok. P passed; F failed; ...".
read -r passed failed host < <(awk '
    /^ *Running /   { host = ($0 !~ /\.exe\)$/) }
    /^ *Doc-tests / { host = 0 }
    /^test result:/ { if (host) h += $4; else p += $4; f += $6 }
    END { print p + 0, f + 0, h + 0 }' "$log")
echo "== windows tests under wine: $passed passed, $failed failed" \
    "(and $host host-side tests run natively), in $(( $(date +%s) - started )) s"
exit "$status"
