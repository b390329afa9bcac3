#!/usr/bin/env bash
# Builds the Stagehand Hyp image and runs its self-test on QEMU:
#   1. with an input blob (random payload) which the image echoes back over semihosting;
#   2. without virtualization=on, where the image must refuse to run (exit status 3).
# Usage: ./run.sh [extra qemu args...]   Exit status 0 when everything passed.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --target armv7a-none-eabi --bin selftest
elf="$PWD/target/armv7a-none-eabi/release/selftest"

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
    timeout 20 qemu-system-arm -M "$1" -cpu cortex-a15 -m 128M -nographic -monitor none -nic none \
        -semihosting-config enable=on,target=native -kernel "$elf" "${@:2}"
}

status=0
start=$(date +%s%N)
qemu virt,virtualization=on -device loader,file=blob.bin,addr=0x47000000,force-raw=on "$@" \
    || status=$?
end=$(date +%s%N)
echo "run.sh: self-test exit status $status, QEMU wall time $(( (end - start) / 1000000 )) ms"

if cmp -s payload.bin blob-echo.bin; then
    echo "run.sh: blob echo matches ($len bytes)"
else
    echo "run.sh: blob echo MISSING or DIFFERENT"
    status=1
fi

mode_status=0
qemu virt || mode_status=$?
if [ "$mode_status" -eq 3 ]; then
    echo "run.sh: without virtualization=on the image refuses to run (exit 3), as it should"
else
    echo "run.sh: without virtualization=on expected exit 3, got $mode_status"
    status=1
fi
exit "$status"
