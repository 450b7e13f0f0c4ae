package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"nfschwinger/internal/cuda"
	"nfschwinger/internal/dnnl"
	nfio "nfschwinger/io"
	"nfschwinger/nf"
	"nfschwinger/nf/device"
)

const checkUsage = `usage: nfschwinger check [flags] PARAMS.toml

Validates PARAMS.toml exactly as a run would (exit status 2 with a message
naming the key if it is not valid) and prints what one rank will need: the
number of parameters and an estimate of the memory for one micro-batch.

flags:
`

// checkOptions are the settings of `nfschwinger check`.
type checkOptions struct {
	Params  string // params.toml
	Workers int    // lattice workers per rank (determinant workspaces), ≤ 0: all cores
}

// cmdCheck parses the command line of `nfschwinger check` and runs it.
func cmdCheck(args []string, stdout io.Writer) error {
	var opts checkOptions
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.IntVar(&opts.Workers, "workers", 0, "lattice workers per rank (default: all cores of this machine)")
	pos, err := parseFlags(fs, args, checkUsage, stdout)
	if err != nil || pos == nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("check: need one PARAMS.toml, got %d arguments (see nfschwinger check -h)", len(pos))
	}
	opts.Params = pos[0]
	return runCheck(opts, stdout)
}

// runCheck validates the parameter file and prints the report to w.
func runCheck(opts checkOptions, w io.Writer) error {
	c, err := nfio.Load(opts.Params)
	if err != nil {
		return &UsageError{Err: err}
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if c.HMC() {
		printCheckHMC(w, opts.Params, c)
		return nil
	}
	onDevice, devLine, err := checkDevice(c)
	if err != nil {
		return err
	}
	engine := "on the CUDA device: im2col kernels and cuBLAS products (bf16: cublasGemmEx, float32 accumulation)"
	rates := ""
	if !onDevice {
		if engine, err = convEngine(c); err != nil {
			return err
		}
		if c.Model.Precision == "float32" {
			rates = bf16Rates(c.Lat.L)
		}
	}
	printCheck(w, opts.Params, c, opts.Workers, engine, rates)
	if devLine != "" {
		fmt.Fprintln(w, devLine)
	}
	return nil
}

// checkDevice says whether a run of c here would put its flow on a CUDA
// device ([compute] device, as placeRank decides, without opening one)
// and, unless device = "cpu", the device memory a rank needs. device =
// "cuda" where no device is visible is the run's usage error.
func checkDevice(c nfio.Config) (onDevice bool, line string, err error) {
	mode := c.Compute.Device
	if mode == "cpu" {
		return false, "", nil
	}
	n, verr := cuda.Visible()
	onDevice = verr == nil
	if !onDevice && mode == "cuda" {
		return false, "", usagef("compute.device = \"cuda\": %v", verr)
	}
	here := fmt.Sprintf("%d visible here", n)
	if !onDevice {
		here = "none here: the CPU"
	}
	var bytes int
	bf16 := c.Model.ConvPrecision == "bf16"
	if c.Model.Precision == "float64" {
		bytes, err = deviceBytes[float64](c.Arch(), c.Train.MicroBatch, bf16)
	} else {
		bytes, err = deviceBytes[float32](c.Arch(), c.Train.MicroBatch, bf16)
	}
	if err != nil {
		return false, "", err
	}
	what := "parameters, store-everything tape, scratch; the action's Schur complements, 16 V^2 bytes a configuration"
	withForce := c.Train.Estimator != string(nf.REINFORCE)
	if withForce {
		what += ", and their inverses for the force"
	}
	bytes += device.ActionBytes(c.Lat.L, c.Train.MicroBatch, withForce)
	return onDevice, fmt.Sprintf("device      CUDA (compute.device = %q; %s): a rank needs %s of device memory for micro-batches of %d (%s)",
		mode, here, bytesString(int64(bytes)), c.Train.MicroBatch, what), nil
}

// deviceBytes is the device memory of a flow of architecture a in T for
// micro-batches of maxB, with a tape (device.Bytes).
func deviceBytes[T nf.Float](a nf.Arch, maxB int, bf16 bool) (int, error) {
	if err := a.CheckFlow(); err != nil {
		return 0, &UsageError{Err: err}
	}
	return device.Bytes[T](a, maxB, bf16, true), nil
}

// rateMinTime is how long bf16Rates times the convolutions.
const rateMinTime = 100 * time.Millisecond

// bf16Rates measures oneDNN's 64 → 64 dilation-2 forward convolution on
// this CPU at L, 16 configurations, in bf16 and in float32 by turns
// (dnnl.ReferenceRates, the best of rateMinTime of repetitions, on the
// threads a one-process flow gets: GOMAXPROCS) and says how they compare:
// what choosing model.conv_precision = "bf16" would buy here.
func bf16Rates(L int) string {
	const batch = 16
	f32, b16, err := dnnl.ReferenceRates(L, batch, runtime.GOMAXPROCS(0), rateMinTime)
	if errors.Is(err, dnnl.ErrUnimplemented) {
		return "none: oneDNN has no bf16 convolution for this CPU"
	} else if err != nil {
		return fmt.Sprintf("not measured (%v)", err)
	}
	return fmt.Sprintf("%.0f GFLOP/s against %.0f in float32, %.2fx (oneDNN's 64->64 dilation-2 forward convolution, L = %d, %d configurations, measured now, best of %v)",
		b16, f32, b16/f32, L, batch, rateMinTime)
}

// convEngine builds the configuration's flow for one configuration, as a
// run would, and describes how its convolutions run on this machine: a
// float32 flow's oneDNN primitives (their implementations say which
// kernels this CPU gets), a float64 flow's im2col and OpenBLAS. bf16 that
// this CPU cannot run fast is the run's usage error.
func convEngine(c nfio.Config) (string, error) {
	if c.Model.Precision == "float64" {
		return "im2col + OpenBLAS dgemm (float64 flow)", nil
	}
	flow, err := newFlow[float32](c.Arch(), c.Model.ConvPrecision, c.Model.ConvAlgorithm, nil)
	if err != nil {
		return "", err
	}
	if flow.DNNL() == "" {
		return fmt.Sprintf("im2col + OpenBLAS sgemm (hidden layers under %d channels: faster there than oneDNN)", nf.DNNLMinChannels), nil
	}
	alg := ""
	if flow.DNNLAlgorithm() == "winograd" {
		alg = ", Winograd for the hidden convolutions that fit (model.conv_algorithm = \"auto\"; bf16 runs direct)"
	}
	return fmt.Sprintf("oneDNN, %s inputs, float32 accumulation%s (kernels here: %s)", flow.DNNL(), alg, flow.DNNLImpl()), nil
}

// printCheckHMC writes the report of a valid HMC baseline configuration:
// no flow; one process; the memory is one Schur complement (16 V² bytes)
// and a few link-sized vectors.
func printCheckHMC(w io.Writer, path string, c nfio.Config) {
	s, L := c.Sample, c.Lat.L
	V := int64(L * L)
	fmt.Fprintf(w, "%s: valid\n", path)
	fmt.Fprintf(w, "lattice     L = %d (V = %d), beta = %g, kappa = %g\n", L, V, c.Lat.Beta, c.Lat.Kappa)
	fmt.Fprintf(w, "sampling    HMC baseline (no flow, no training): %d trajectories of length %g in %d leapfrog steps of %g, seed %d, start %q\n",
		s.NSamples, s.TrajectoryLength, s.MDSteps, s.TrajectoryLength/float64(s.MDSteps), s.Seed, s.Start)
	fmt.Fprintf(w, "ranks       1 (one chain on one process)\n")
	fmt.Fprintf(w, "memory      %s (Schur complement 16 V^2 and six 2V vectors of float64)\n", bytesString(16*V*V+6*2*V*8))
}

// memEstimate is the memory one rank needs for one micro-batch, in bytes,
// with B = micro_batch, V = L², s = sizeof(T) of the network's precision,
// n_layers coupling layers, channels C_0 = 6, C_1, …, C_out through the
// conditioner, K the kernel size and W lattice workers:
//
//	Links       = 3 · B · 2V · 8                 links in and out, force/work (float64)
//	Activations = n_layers · B · s · nf.Arch.TapeElemsPerConfigLayer   kept for the backward pass
//	              (per layer: links 2V, last hidden activation, spline parameters at the V/4 active sites)
//	Convolutions, im2col and OpenBLAS (float64, narrow float32):
//	            = B · V · K² · max_j C_j · s      unfolded input of the widest convolution
//	Convolutions, oneDNN (float32 from 16 hidden channels, bf16; usesDNNL):
//	            = B · Σ_{j<last} P_j · C_j · (s_in + 4) + B · V/4 · K² · C_last · 4
//	              padded input (s_in = 4, or 2 for bf16) and padded input gradient (float32)
//	              of every convolution but the last, P_j = (L + Dil_j·(K−1))², and the
//	              last one's im2col columns at the V/4 active sites (scratchpads and
//	              reordered weights are small), and for a convolution that runs
//	              Winograd (nf.WinogradConv) B · (2V + P_j) · C_{j+1} · 4 more: its
//	              output and output gradient unpadded and padded; and with any
//	              Winograd convolution, the process's one scratchpad that every
//	              primitive shares, 8 MiB + W · 768 KiB (winogradScratch)
//	Determinant = W · 16 · V²                     Schur complement (order V, complex128) per worker
//	Parameters  = P · (2s + 16)                   weights and gradient in T, Adam moments in float64
//
// It is an estimate of the large arrays only (within tens of per cent);
// the Go runtime, MPI and HDF5 buffers come on top.
type memEstimate struct {
	Links, Activations, Convolutions, Determinant, Parameters int64
}

// Total returns the sum of all parts.
func (m memEstimate) Total() int64 {
	return m.Links + m.Activations + m.Convolutions + m.Determinant + m.Parameters
}

// winogradScratch is the scratchpad that a Winograd convolution run by
// threads OpenMP threads asks for, in memEstimate (the process has one,
// as large as the largest ask: dnnl.ScratchBytes): 8 MiB + 768 KiB a thread, which
// bounds what oneDNN asked for on a Zen 4 EPYC at L = 8 and 16, batch
// 64 (Winograd's bytes over direct's, less the buffers: 9–12 MiB with 1
// and 2 threads, 17–31 with 8–32, 48–57 with 64; oneDNN sizes it by
// cache and thread count).
func winogradScratch(threads int) int64 { return 8<<20 + int64(threads)*768<<10 }

// estimateMemory evaluates the formulas of memEstimate.
func estimateMemory(c nfio.Config, workers int) memEstimate {
	a := c.Arch()
	b, v := int64(c.Train.MicroBatch), int64(a.L*a.L)
	s := int64(4)
	if c.Model.Precision == "float64" {
		s = 8
	}
	maxC := int64(0)
	for _, ch := range a.Channels() {
		maxC = max(maxC, int64(ch))
	}
	k2 := int64(a.KernelSize * a.KernelSize)
	conv := b * v * k2 * maxC * s
	if usesDNNL(a, c.Model.Precision, c.Model.ConvPrecision) {
		sIn := int64(4)
		if c.Model.ConvPrecision == "bf16" {
			sIn = 2
		}
		ch := a.Channels()
		last := len(a.Dilation) - 1
		conv = b * (v / 4) * k2 * int64(ch[last]) * 4 // the last convolution's columns at the active sites
		o := nf.DNNLOptionsFor(c.Model.ConvPrecision, c.Model.ConvAlgorithm)
		scratch := int64(0)
		for j, d := range a.Dilation[:last] {
			side := int64(a.L + d*(a.KernelSize-1))
			conv += b * side * side * int64(ch[j]) * (sIn + 4)
			if nf.WinogradConv(a, o, j) {
				conv += b * (2*v + side*side) * int64(ch[j+1]) * 4
				scratch = winogradScratch(workers)
			}
		}
		conv += scratch
	}
	return memEstimate{
		Links:        3 * b * 2 * v * 8,
		Activations:  int64(a.NLayers) * b * s * int64(a.TapeElemsPerConfigLayer(nf.DefaultRecompute)),
		Convolutions: conv,
		Determinant:  int64(workers) * 16 * v * v,
		Parameters:   int64(a.NumParams()) * (2*s + 16),
	}
}

// bytesString formats a byte count with a binary unit.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	x, i := float64(n), -1
	for x >= unit && i < 4 {
		x /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", x, "KMGTP"[i])
}

// printCheck writes the report of a valid configuration.
func printCheck(w io.Writer, path string, c nfio.Config, workers int, engine, rates string) {
	a := c.Arch()
	ch := make([]string, 0, len(a.Channels()))
	for _, v := range a.Channels() {
		ch = append(ch, fmt.Sprint(v))
	}
	p := a.NumParams()
	m := estimateMemory(c, workers)
	var ranks []string
	for n := 1; n <= min(c.Train.BatchSize, 1024); n++ {
		if c.CheckRanks(n) == nil {
			ranks = append(ranks, fmt.Sprint(n))
		}
	}
	fmt.Fprintf(w, "%s: valid\n", path)
	fmt.Fprintf(w, "lattice     L = %d (V = %d), beta = %g, kappa = %g\n", a.L, a.L*a.L, c.Lat.Beta, c.Lat.Kappa)
	fmt.Fprintf(w, "model       %d layers, channels %s, kernel %d, dilation %v, %d knots, %s\n",
		a.NLayers, strings.Join(ch, " -> "), a.KernelSize, a.Dilation, a.NKnots, c.Model.Precision)
	fmt.Fprintf(w, "parameters  %d\n", p)
	fmt.Fprintf(w, "convolutions %s\n", engine)
	if rates != "" {
		fmt.Fprintf(w, "bf16 here   %s\n", rates)
	}
	fmt.Fprintf(w, "training    %s, %d steps, batch %d in micro-batches of %d per rank; rank counts that divide it: %s\n",
		c.Train.Estimator, c.Train.Steps, c.Train.BatchSize, c.Train.MicroBatch, strings.Join(ranks, ", "))
	fmt.Fprintf(w, "memory per rank for one micro-batch of %d (estimate, %d lattice workers):\n", c.Train.MicroBatch, workers)
	type row struct {
		name, formula string
		n             int64
	}
	conv := row{"im2col", "B V K^2 max(C) s", m.Convolutions}
	if usesDNNL(a, c.Model.Precision, c.Model.ConvPrecision) {
		conv = row{"convolutions", "B Sum_j<last (L+Dil_j(K-1))^2 C_j (s_in+4) + B V/4 K^2 C_last 4 (oneDNN), + B (2V+P_j) C_j+1 4 per Winograd convolution + 8 MiB + W 768 KiB", m.Convolutions}
	}
	rows := []row{
		{"links", "3 B 2V 8", m.Links},
		{"activations", "n_layers B s tape(layer)", m.Activations},
		conv,
		{"determinant", "workers 16 V^2", m.Determinant},
		{"parameters", "P (2s + 16)", m.Parameters},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-12s %10s   %s\n", r.name, bytesString(r.n), r.formula)
	}
	fmt.Fprintf(w, "  %-12s %10s\n", "total", bytesString(m.Total()))
}
