#!/bin/sh
# One core's bf16 GEMM rate on each CPU in turn (`dit info --hw`), for the benchmark scripts to print before
# and after their runs: on a machine whose cores differ (a virtual machine's vCPUs, a hybrid CPU) the figures
# move with that state. Usage: bench/cores.sh [DIT_BINARY (build/dit)]
dit=${1:-build/dit}
[ -x "$dit" ] || make -s "$dit" >/dev/null 2>&1 || { echo "(no $dit to measure the cores with)"; exit 0; }
line=$("$dit" info --hw 2>/dev/null | grep -A1 '^one core each' | tr '\n' ' ' | sed 's/  */ /g')
echo "${line:-no bf16 path on this CPU}"
