#!/bin/bash
# The device check, for a GPU machine with a CUDA driver, NVRTC and cuBLAS
# (no Go, no Debian libraries needed): `make gpu-check` packs this script
# as run.sh beside the test binaries of internal/cuda and nf/gpu, the CPU's
# recorded results (reference.gob, logdet.gob), the benchmark flows
# (specs.gob), nfschwinger with its Debian libraries (bench.tar.xz) and the
# runner, gpucheck, which does the work (tests/cmd/gpucheck: a smoke stage
# of at most 2 minutes, then the full stage, every step under a time
# limit, 8 minutes in all). The report goes to OUTDIR/gpu-check.txt, the
# results as JSON lines to OUTDIR/results.jsonl.
#
#   bash gpu-check/run.sh OUTDIR
set -u
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/gpucheck" "${1:-.}"
