package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// resetPeakRSS resets the kernel's resident-set high-water mark of this
// process (VmHWM, by writing 5 to /proc/self/clear_refs, Linux ≥ 4.0) and
// reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns the peak resident memory in bytes: VmHWM of
// /proc/self/status when the mark was reset for this row, else the
// process's maxrss since its start (getrusage), with the method used.
func peakRSS(reset bool) (int64, string) {
	if reset {
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
					if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
						return v << 10, "VmHWM reset per row"
					}
				}
			}
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, "unavailable"
	}
	return ru.Maxrss << 10, "maxrss of the process" // Linux: KiB
}

// printTables prints the markdown tables of the step and action
// benchmarks.
func printTables(w io.Writer, o Options, rows []StepRow, actions []ActionRow) {
	const mib = 1 << 20
	fmt.Fprintf(w, "## Gradient step: batch %d, micro-batch %d, %d layers, float32 flow, one process on %d cores; median of %d steps after %d warm-up\n\n",
		o.Batch, o.Micro, o.Layers, runtime.GOMAXPROCS(0), o.Steps, o.Warmup)
	if l := loadAverage(); l >= 0 {
		fmt.Fprintf(w, "Load average (1 min) at the end: %.1f on %d CPUs.\n\n", l, runtime.NumCPU())
	}
	fmt.Fprintln(w, "| L | estimator | convolutions | step s | loss s | backward s | flow s | action s | peak RSS MiB | kept MiB | kept KiB/cfg | kept buffers | conv GFLOP/s | sgemm GFLOP/s | conv/sgemm | primitive GFLOP/s | conv/primitive |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	method := ""
	for _, r := range rows {
		bufs := "n/a"
		if r.KeptBuffers != nil {
			bufs = strconv.Itoa(*r.KeptBuffers)
		}
		prim, primRatio := "n/a", "n/a" // the oneDNN reference is the CPU's
		if r.PrimitiveGFLOPs > 0 {
			prim, primRatio = fmt.Sprintf("%.0f", r.PrimitiveGFLOPs), fmt.Sprintf("%.0f%%", 100*r.ConvGFLOPs/r.PrimitiveGFLOPs)
		}
		conv := strings.TrimSpace(r.ConvEngine + " " + r.ConvPrecision + " " + r.ConvAlgorithm)
		fmt.Fprintf(w, "| %d | %s | %s | %.4g | %.4g | %.4g | %.4g | %.4g | %.1f | %.1f | %.1f | %s | %.1f | %.1f | %.0f%% | %s | %s |\n",
			r.L, r.label(), conv, r.StepSeconds, r.LossSeconds, r.BackwardSeconds, r.FlowSeconds, r.ActionSeconds,
			float64(r.PeakRSSBytes)/mib, float64(r.KeptBytes)/mib, float64(r.KeptBytes)/float64(r.MicroBatch)/1024,
			bufs, r.ConvGFLOPs, r.SgemmGFLOPs, 100*r.ConvGFLOPs/r.SgemmGFLOPs, prim, primRatio)
		method = r.PeakRSSMethod
	}
	fmt.Fprintf(w, `
loss = step − backward: flow passes, action, prior sampling, reductions. flow: forward
and reverse passes; action: action and force (lgt.Pool). backward: the flows' backward
passes. peak RSS: %s. kept: the tape of one micro-batch (and REINFORCE's φ of the
batch) held for the backward pass; KiB/cfg per configuration of a micro-batch.
conv GFLOP/s: flops of the convolutions' matrix products in every flow and backward
pass (backward = 2× forward) / time of those passes, which also includes the spline,
plaquette, im2col and activation kernels (a lower bound on the convolutions' rate).
sgemm: the best of %d products of %d×%d float32 matrices through the same backend.
convolutions: dnnl (oneDNN primitives, NHWC activations, LeakyReLU fused; the last
convolution at every site, counted at the active sites only), openblas (im2col +
sgemm), with float32 or bf16 inputs, or cuda (the whole flow on the CUDA device:
im2col kernels and cuBLAS; the action stays on the CPU; sgemm is then still the
CPU's). primitive: oneDNN's 64→64 dilation-2 convolution
alone at this L and micro-batch, in its blocked layouts and the row's precision, the
best of %v of repetitions (the reference rate of the convolutions).
`, method, sgemmRepeats, o.SgemmN, o.SgemmN, primitiveMinTime)
	if len(actions) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Action and force per configuration, one core\n\n")
	fmt.Fprintln(w, "| L | even–odd s | dense s | dense / even–odd |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, a := range actions {
		fmt.Fprintf(w, "| %d | %.4g | %.4g | %.1f |\n", a.L, a.EvenOddSeconds, a.DenseSeconds, a.DenseSeconds/a.EvenOddSeconds)
	}
	fmt.Fprintln(w, "\neven–odd: Evaluator.Action with the force (LU of the Schur complement). dense:")
	fmt.Fprintln(w, "Evaluator.MeasureDense (LU and inverse of the whole D, observables included).")
}

// loadAverage returns the one-minute load average of the machine
// (/proc/loadavg), −1 when unknown. A value above the number of CPUs means
// the benchmark shared the cores with other work.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// label names the row's estimator, with the REINFORCE form when there is one.
func (r StepRow) label() string {
	if r.Form != "" {
		return r.Estimator + " " + r.Form
	}
	return r.Estimator
}
