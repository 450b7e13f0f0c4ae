package app

import (
	"errors"
	"fmt"
	"strings"

	"nfschwinger/nf"
	"nfschwinger/nf/device"
	"nfschwinger/nf/gpu"
)

// deviceFlow says that newFlow builds the flow on a device: the kernels
// compiled for it, its name for messages, the largest micro-batch and
// whether the flow keeps a tape (training).
type deviceFlow struct {
	kernels  *gpu.Kernels
	name     string
	maxB     int
	withTape bool
}

// newFlow builds a flow of architecture a on the engine the run asks for,
// once. On a device (dev non-nil) the whole flow runs there
// (nf.OnDevice), bf16 products through cuBLAS with convPrecision "bf16";
// device memory exhausted is a UsageError naming train.micro_batch and
// the estimate. On the CPU, all cores: a float32 flow runs its
// conditioners through oneDNN (nf.OneDNN, Winograd where it fits unless
// convAlgorithm is "direct") where that is faster (nf.PrefersDNNL:
// hidden layers of 16 channels and more) and always with bf16
// convolution inputs; a float64 flow, and a narrow float32 one,
// through im2col and OpenBLAS (nf.OpenBLAS). bf16 where oneDNN would
// emulate it (nf.NativeBF16) is a usage error naming model.conv_precision.
func newFlow[T nf.Float](a nf.Arch, convPrecision, convAlgorithm string, dev *deviceFlow) (*nf.Flow[T], error) {
	if err := a.CheckFlow(); err != nil {
		return nil, &UsageError{Err: err}
	}
	var zero T
	_, single := any(zero).(float32)
	if !single && convPrecision == "bf16" {
		return nil, usagef("model.conv_precision = \"bf16\" needs model.precision = \"float32\"")
	}
	bf16 := convPrecision == "bf16"
	switch {
	case dev != nil:
		flow, err := device.NewFlow[T](dev.kernels, a, dev.maxB, bf16, dev.withTape)
		if errors.Is(err, gpu.ErrOutOfMemory) {
			return nil, usagef("train.micro_batch = %d: the flow needs about %s of device memory on %s (%v); use a smaller micro_batch",
				dev.maxB, bytesString(int64(device.Bytes[T](a, dev.maxB, bf16, dev.withTape))), dev.name, err)
		}
		return flow, err
	case single && usesDNNL(a, "float32", convPrecision):
		flow, err := nf.NewFlowOn(a, nf.OneDNN[T](nf.CPU(0), nf.DNNLOptionsFor(convPrecision, convAlgorithm)))
		if errors.Is(err, nf.ErrBF16Slow) {
			return nil, usagef("model.conv_precision = \"bf16\": %s; use \"float32\" on this machine (bf16 here: %s)",
				strings.TrimPrefix(err.Error(), "nf: "), bf16Rates(a.L))
		}
		if err != nil {
			return nil, fmt.Errorf("oneDNN convolutions: %w", err)
		}
		return flow, nil
	}
	flow, err := nf.NewFlow[T](a, nf.CPU(0))
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return flow, nil
}

// usesDNNL reports whether newFlow puts a flow of architecture a, in
// precision and convPrecision, on oneDNN.
func usesDNNL(a nf.Arch, precision, convPrecision string) bool {
	return precision == "float32" && (convPrecision == "bf16" || nf.PrefersDNNL(a))
}
