#!/bin/bash
# The device check, for a GPU machine with a CUDA driver,
# NVRTC and cuBLAS (no Go, no Debian libraries needed): runs the test
# binaries that `make gpu-check` put beside this script against device 0
# (NFSCHWINGER_CUDA_TEST=gpu: the real device only, its absence fails),
# including the device flow against the CPU flow's recorded results
# (reference.gob) and the device's log det against lgt's (logdet.gob),
# then the device convolution's benchmark against
# cuBLAS's own Sgemm at the paper's sizes and the device's part of a
# training step (specs.gob), then `nfschwinger bench` on the device with
# the Debian libraries packed beside it (bench.tar.xz), and writes the
# report to OUTDIR/gpu-check.txt.
#
#   bash gpu-check/run.sh OUTDIR
set -u
out=${1:-.}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
NFSCHWINGER_CUDA_CACHE=$(mktemp -d)
# The CPU flow's results for the parity cases, and the flows of the
# benchmark (make gpu-check wrote them on a machine with the CPU flow).
NFSCHWINGER_GPU_REFERENCE=$here/reference.gob
NFSCHWINGER_GPU_SPECS=$here/specs.gob
NFSCHWINGER_GPU_LOGDET=$here/logdet.gob
export NFSCHWINGER_CUDA_TEST=gpu NFSCHWINGER_CUDA_CACHE NFSCHWINGER_GPU_REFERENCE NFSCHWINGER_GPU_SPECS NFSCHWINGER_GPU_LOGDET
{
	rc=0
	echo "# nfschwinger gpu-check, $(date -u '+%Y-%m-%d %H:%M UTC')"
	nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || true
	for t in cuda gpu; do
		echo "## $t.test"
		"$here/$t.test" -test.v -test.count=1 -test.timeout 4m || rc=1
	done
	# The benchmarks run even when a test failed (one lent machine, one
	# run: their numbers are worth having), but not without a device.
	if [ -e /dev/nvidiactl ]; then
		echo "## benchmark: the convolution against cuBLAS's Sgemm, float32"
		"$here/gpu.test" -test.run '^$' -test.bench Conv -test.benchtime 20x || rc=1
		echo "## benchmark: the device's part of a REINFORCE step (three-pass), 48 layers [64, 64]"
		"$here/gpu.test" -test.run '^$' -test.bench FlowStep -test.benchtime 5x || rc=1
		echo "## benchmark: REINFORCE's log det on the device (Schur complement, batched LU)"
		"$here/gpu.test" -test.run '^$' -test.bench LogDet -test.benchtime 3x || rc=1
		# nfschwinger bench itself, with the Debian libraries make gpu-check
		# packed (bench.tar.xz), through their own loader.
		bench=$(mktemp -d)
		if tar -C "$bench" -xJf "$here/bench.tar.xz"; then
			b=$bench/bench
			for batch in 512 1536; do
				echo "## nfschwinger bench, REINFORCE, batch = micro-batch = $batch, the flow on the device"
				"$b/lib/ld-linux-x86-64.so.2" --library-path "$b/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" "$b/nfschwinger" bench \
					-L 8,16,24 -estimators reinforce -batch "$batch" -micro-batch "$batch" -layers 48 -steps 2 -warmup 1 \
					-conv-engine cuda -conv-precision float32,bf16 -action=false || rc=1
			done
		else
			echo "gpu-check: cannot unpack bench.tar.xz"
			rc=1
		fi
		rm -rf "$bench"
	fi
	echo "gpu-check: exit status $rc"
	exit "$rc"
} 2>&1 | tee "$out/gpu-check.txt"
exit "${PIPESTATUS[0]}"
