#!/usr/bin/env bash
# Builds the Stagehand AArch64 EL2 image and runs its self-test on QEMU:
#   1. at EL2 (virtualization=on) with an input blob (random payload) that the image echoes
#      back over semihosting; the self-test's exit status must be 0;
#   2. without virtualization=on (QEMU starts at EL1), where the image must refuse to run
#      (exit status 3: this also shows that semihosting exit codes reach the shell).
# Usage: ./run.sh [extra qemu args...]   Exit status 0 when everything passed.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release -j1 --target aarch64-unknown-none --bin selftest
elf="$PWD/target/aarch64-unknown-none/release/selftest"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"   # semihosting file paths are relative to QEMU's working directory

# Blob: u32 little-endian payload length, then the payload.
head -c 4093 /dev/urandom > payload.bin
len=$(wc -c < payload.bin)
printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((len & 255)) $((len >> 8 & 255)) \
    $((len >> 16 & 255)) $((len >> 24 & 255)))" > blob.bin
cat payload.bin >> blob.bin

qemu() {
    timeout 30 qemu-system-aarch64 -M "$1" -cpu cortex-a57 -m 256M -nographic -monitor none \
        -nic none -semihosting-config enable=on,target=native -kernel "$elf" "${@:2}"
}

# Peak RSS of the QEMU process (the largest VmHWM in the tree under $1), from /proc.
watch_rss() {
    local root=$1 peak=0 kb pids p
    while kill -0 "$root" 2>/dev/null; do
        pids=$root
        for p in $(pgrep -P "$root" || true); do pids="$pids $p $(pgrep -P "$p" || true)"; done
        for p in $pids; do
            kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
            if [ -n "$kb" ] && [ "$kb" -gt "$peak" ]; then peak=$kb; fi
        done
        sleep 0.005
    done
    echo "$peak"
}

status=0
start=$(date +%s%N)
qemu virt,virtualization=on -device loader,file=blob.bin,addr=0x47000000,force-raw=on "$@" &
qpid=$!
peak=$(watch_rss "$qpid")
wait "$qpid" || status=$?
end=$(date +%s%N)
echo "run.sh: self-test exit status $status, QEMU wall time $(( (end - start) / 1000000 )) ms," \
    "peak RSS about $(( peak / 1024 )) MiB"

if cmp -s payload.bin blob-echo.bin; then
    echo "run.sh: blob echo matches ($len bytes)"
else
    echo "run.sh: blob echo MISSING or DIFFERENT"
    status=1
fi

mode_status=0
start=$(date +%s%N)
qemu virt || mode_status=$?
end=$(date +%s%N)
if [ "$mode_status" -eq 3 ]; then
    echo "run.sh: without virtualization=on the image refuses to run (exit 3), as it should" \
        "($(( (end - start) / 1000000 )) ms)"
else
    echo "run.sh: without virtualization=on expected exit 3, got $mode_status"
    status=1
fi
exit "$status"
