# nfschwinger build. `make run` and `make test` work on a fresh Debian 12
# machine: both install the missing system packages first (make deps).
SHELL := /bin/bash
GO ?= go

# Debian packages the project needs (build, test, and the Python readers).
DEB_PACKAGES := build-essential pkg-config libopenmpi-dev openmpi-bin \
	libhdf5-dev hdf5-tools libopenblas-dev liblapacke-dev libdnnl-dev \
	python3 python3-h5py python3-numpy shellcheck slurm-wlm munge clang-14

# cgo flags: MPI from the wrapper compiler, HDF5 from pkg-config (Debian's
# serial HDF5), BLAS/LAPACK from OpenBLAS. Evaluated lazily so that `make
# deps` can install the tools first.
HDF5_CFLAGS = $(shell pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
HDF5_LIBS   = $(shell pkg-config --libs-only-L hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial)
MPI_CFLAGS  = $(shell mpicc -showme:compile 2>/dev/null)
MPI_LIBS    = $(shell mpicc -showme:link 2>/dev/null)
CGO_ENV = CGO_ENABLED=1 CGO_CFLAGS="-O2 $(HDF5_CFLAGS) $(MPI_CFLAGS)" \
	CGO_LDFLAGS="$(HDF5_LIBS) -lopenblas -llapacke $(MPI_LIBS)"

# OpenMPI refuses to run as root unless told; CI runs as root.
MPI_ENV = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
	OMPI_MCA_rmaps_base_oversubscribe=1

TEST_TIMEOUT ?= 60m
PKG ?= ./...

.PHONY: all deps build run test vet bench study clipping env clean gpu-check

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	@command -v $(GO) >/dev/null || { echo "make deps: Go 1.26 is required (https://go.dev/dl)"; exit 1; }

build:
	$(CGO_ENV) $(GO) build -trimpath -o nfschwinger .

run: deps
	$(MAKE) build
	./nfschwinger params.toml

vet:
	$(CGO_ENV) $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Every test: unit tests beside the code, then the end-to-end tests in tests/
# (which build the binary and run it, also under mpirun).
# The race detector runs on the concurrent packages whose tests stay fast
# under it (the heavy numerics of nf and the end-to-end tests run without).
RACE_PKG ?= ./comm/ ./internal/... ./app/ ./sample/ ./lgt/

# Fuzzing in the test run is bounded: FUZZTIME_TEST per target (0 skips it),
# a count of executions, not a duration: with a duration Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure at
# the deadline (golang/go#75804, fixed in Go 1.27), as it did once here.
# 1000 executions take about 10 s for the HDF5 readers on 2 cores.
FUZZTIME_TEST ?= 1000x

test: deps
	$(MAKE) vet
	$(MAKE) build
	$(CGO_ENV) $(MPI_ENV) $(GO) test -timeout $(TEST_TIMEOUT) -count=1 $(PKG)
	$(CGO_ENV) $(GO) test -race -count=1 $(RACE_PKG)
	@if [ "$(FUZZTIME_TEST)" != 0 ]; then for f in FuzzParse FuzzReadCheckpoint FuzzReadHistory; do \
		echo "fuzzing $$f for $(FUZZTIME_TEST)"; \
		$(CGO_ENV) $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME_TEST) ./io/ || exit 1; \
	done; fi

# The estimator study (README: "The estimator study"): REINFORCE, r.t. and
# path gradient at L = 8 on three seeds each (configs/study/, about an hour
# on 2 cores), then the comparison table and the overlay plots
# study/compare_ess_step.png and study/compare_ess_time.png. Interrupted,
# it continues where it stopped (restart = "auto").
study: build
	@for f in configs/study/*.toml; do echo "== $$f"; ./nfschwinger $$f || exit $$?; done
	./nfschwinger analyze study/*/

# The clipping comparison (docs/studies.md): r.t. at L = 8 with
# and without clipping on seeds 1, 2, 3 (configs/clipping/, about 40 minutes
# on 2 cores), then the comparison table with the acceptance probes' ESS.
clipping: build
	@for f in configs/clipping/*.toml; do echo "== $$f"; ./nfschwinger $$f || exit $$?; done
	./nfschwinger analyze -no-plots clipping/*/

# The device check (docs/gpus.md): the test binaries of the
# CUDA boundary and of the device flow, built without cgo (purego loads
# CUDA at run time, so they need nothing but the GPU machine's driver,
# NVRTC and cuBLAS), and the script that runs them there:
#   make gpu-check; then on the GPU machine: bash gpu-check/run.sh OUTDIR
# (GPU_CHECK=DIR puts the folder elsewhere; the rehearsal test does).
GPU_CHECK ?= gpu-check
gpu-check: build
	rm -rf $(GPU_CHECK) && mkdir -p $(GPU_CHECK)
	CGO_ENABLED=0 $(GO) test -c -o $(GPU_CHECK)/cuda.test ./internal/cuda/
	CGO_ENABLED=0 $(GO) test -c -o $(GPU_CHECK)/gpu.test ./nf/gpu/
	CGO_ENABLED=0 $(GO) build -o $(GPU_CHECK)/gpucheck ./tests/cmd/gpucheck
	NFSCHWINGER_GPU_REFERENCE=$(abspath $(GPU_CHECK))/reference.gob $(CGO_ENV) $(GO) test -count=1 -run '^TestEngineParity$$' ./nf/
	NFSCHWINGER_GPU_LOGDET=$(abspath $(GPU_CHECK))/logdet.gob $(CGO_ENV) $(GO) test -count=1 -run '^TestLogDetMatchesCPU$$' ./nf/gpu/
	$(CGO_ENV) $(GO) run ./tests/cmd/gpuspecs $(GPU_CHECK)/specs.gob
	bash tests/gpu-libs.sh nfschwinger $(GPU_CHECK)/bench
	XZ_OPT="-T0 -3" tar -C $(GPU_CHECK) -cJf $(GPU_CHECK)/bench.tar.xz bench && rm -rf $(GPU_CHECK)/bench
	cp tests/gpu-check.sh $(GPU_CHECK)/run.sh
	@du -sh $(GPU_CHECK)

# The timing and memory tables of the paper (nfschwinger bench, oneDNN's
# float32 rows with Winograd and direct side by side; a few minutes on 2
# cores with the defaults; BENCH_L=8,12,16,20,24 for the full
# list, BENCH_FLAGS for more, e.g. -plot bench.png or -json), then the Go
# benchmarks of the kernels, then, where the paper's code is importable
# (tests/refbench.py), its step times beside nfschwinger's, in the same run.
bench: build
	./nfschwinger bench -L $${BENCH_L:-8,12,16} -estimators reinforce,rt,path -batch 64 -micro-batch 64 -layers 48 -steps 3 -conv-engine dnnl,openblas -conv-precision float32,bf16 -conv-algorithm auto,direct $${BENCH_FLAGS:-}
	$(CGO_ENV) $(GO) test -run '^$$' -bench . -benchtime 2x ./lgt/ ./nf/
	$(CGO_ENV) $(GO) test -run '^$$' -bench . -benchtime 300x ./internal/dnnl/
	@if /usr/bin/python3 -c 'import neumc, torch' 2>/dev/null; then /usr/bin/python3 tests/refbench.py -L $${BENCH_L:-8,16}; \
	else echo "make bench: the paper's code is not importable, so no side-by-side table (docs/performance.md says how to get it)"; fi

# Prints the build environment, for `eval $$(make -s env)` in a shell.
env:
	@echo "export CGO_ENABLED=1 CGO_CFLAGS='-O2 $(HDF5_CFLAGS) $(MPI_CFLAGS)' CGO_LDFLAGS='$(HDF5_LIBS) -lopenblas -llapacke $(MPI_LIBS)' $(MPI_ENV)"

clean:
	rm -f nfschwinger

# The fault-injection report (docs/reliability.md): runs
# every fault scenario of tests/faults_test.go and prints the table, then
# fuzzes the HDF5 readers on damaged files for FUZZTIME each.
FUZZTIME ?= 20s
.PHONY: faults
faults: build
	$(CGO_ENV) $(MPI_ENV) NFSCHWINGER_FAULT_REPORT=1 $(GO) test -count=1 -v -run '^TestFaultReport$$' ./tests/
	$(CGO_ENV) $(GO) test -run '^$$' -fuzz '^FuzzReadCheckpoint$$' -fuzztime $(FUZZTIME) ./io/
	$(CGO_ENV) $(GO) test -run '^$$' -fuzz '^FuzzReadHistory$$' -fuzztime $(FUZZTIME) ./io/
