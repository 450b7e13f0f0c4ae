package app

import (
	"errors"
	"fmt"
	"strings"

	"nfschwinger/nf"
)

// newFlow builds a flow of architecture a on the CPU backend, all cores. A
// float32 flow runs its conditioners through oneDNN (nf.Flow.UseDNNL) where
// that is faster (nf.PrefersDNNL: hidden layers of 16 channels and more)
// and always with bf16 convolution inputs (convPrecision "bf16"); a float64
// flow, and a narrow float32 one, through im2col and OpenBLAS. bf16 where
// oneDNN would emulate it (nf.NativeBF16) is a usage error naming
// model.conv_precision. A flow for a device (onDevice: attach moves it
// there) keeps the CPU's im2col path, unused: the device computes its
// convolutions, bf16 through cuBLAS.
func newFlow[T nf.Float](a nf.Arch, convPrecision string, onDevice bool) (*nf.Flow[T], error) {
	flow, err := nf.NewFlow[T](a, nf.CPU(0))
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	var zero T
	if _, ok := any(zero).(float32); !ok {
		if convPrecision == "bf16" {
			return nil, usagef("model.conv_precision = \"bf16\" needs model.precision = \"float32\"")
		}
		return flow, nil
	}
	if onDevice || !usesDNNL(a, "float32", convPrecision) {
		return flow, nil
	}
	if err := flow.UseDNNL(convPrecision == "bf16"); err != nil {
		if errors.Is(err, nf.ErrBF16Slow) {
			return nil, usagef("model.conv_precision = \"bf16\": %s; use \"float32\" on this machine", strings.TrimPrefix(err.Error(), "nf: "))
		}
		return nil, fmt.Errorf("oneDNN convolutions: %w", err)
	}
	return flow, nil
}

// usesDNNL reports whether newFlow puts a flow of architecture a, in
// precision and convPrecision, on oneDNN.
func usesDNNL(a nf.Arch, precision, convPrecision string) bool {
	return precision == "float32" && (convPrecision == "bf16" || nf.PrefersDNNL(a))
}
