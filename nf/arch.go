package nf

import (
	"fmt"
)

// Float is the element type of the network: float32 or float64.
type Float interface {
	~float32 | ~float64
}

// Arch is the architecture of a flow: everything needed to build it, stored
// as attributes of /model in model files (same names, snake case).
type Arch struct {
	L              int     // lattice extent, divisible by 4
	NLayers        int     // number of coupling layers (the paper: 48)
	NKnots         int     // spline knots, bins = NKnots − 1 (the paper: 9)
	Hidden         []int   // hidden channels of the conditioner (the paper: 64, 64)
	KernelSize     int     // convolution kernel size, odd (3)
	Dilation       []int   // dilation of each convolution, len(Hidden)+1 (1, 2, 3)
	Masking        string  // conditioner input: "2x1" (plaquettes and 2x1 loops)
	LeakyReLUSlope float64 // negative slope of LeakyReLU between convolutions (0.01)
}

// DefaultArch returns the paper's architecture for an L×L lattice.
func DefaultArch(L int) Arch {
	return Arch{L: L, NLayers: 48, NKnots: 9, Hidden: []int{64, 64}, KernelSize: 3,
		Dilation: []int{1, 2, 3}, Masking: "2x1", LeakyReLUSlope: 0.01}
}

// InChannels is the number of conditioner input channels: cos and sin of the
// frozen plaquettes and of both 2x1-loop channels.
const InChannels = 6

// OutChannels returns the number of conditioner outputs per site: bin widths,
// bin heights, knot derivatives (NKnots − 1 each) and the shift t.
func (a Arch) OutChannels() int { return 3*(a.NKnots-1) + 1 }

// Channels returns the channel counts through the conditioner:
// InChannels, Hidden..., OutChannels.
func (a Arch) Channels() []int {
	c := []int{InChannels}
	c = append(c, a.Hidden...)
	return append(c, a.OutChannels())
}

// Validate reports the first inconsistency of the architecture.
func (a Arch) Validate() error {
	switch {
	case a.L < 4 || a.L%4 != 0:
		return fmt.Errorf("lattice size L = %d: must be a positive multiple of 4", a.L)
	case a.NLayers < 1:
		return fmt.Errorf("n_layers = %d: must be at least 1", a.NLayers)
	case a.NKnots < 2:
		return fmt.Errorf("n_knots = %d: must be at least 2", a.NKnots)
	case a.KernelSize < 1 || a.KernelSize%2 == 0:
		return fmt.Errorf("kernel_size = %d: must be odd and positive", a.KernelSize)
	case len(a.Dilation) != len(a.Hidden)+1:
		return fmt.Errorf("dilation has %d entries: need one per convolution, %d", len(a.Dilation), len(a.Hidden)+1)
	case a.Masking != "2x1":
		return fmt.Errorf("masking = %q: only \"2x1\" is implemented", a.Masking)
	case a.LeakyReLUSlope < 0:
		return fmt.Errorf("leaky_relu_slope = %v: must be non-negative", a.LeakyReLUSlope)
	}
	for i, h := range a.Hidden {
		if h < 1 {
			return fmt.Errorf("hidden_channels[%d] = %d: must be positive", i, h)
		}
	}
	for i, d := range a.Dilation {
		if d < 1 {
			return fmt.Errorf("dilation[%d] = %d: must be positive", i, d)
		}
		if d*(a.KernelSize-1)/2 >= a.L {
			return fmt.Errorf("dilation[%d] = %d: padding %d does not fit the lattice L = %d", i, d, d*(a.KernelSize-1)/2, a.L)
		}
	}
	return nil
}

// TapeElemsPerConfigLayer returns the number of elements (of the network's
// precision) that a Tape keeps per configuration and coupling layer: with
// recompute (the default, see Flow.SetRecompute) the layer's links (2V),
// the last hidden activation and the raw spline parameters and argument at
// the active sites; without, the conditioner input, every convolution's
// output and the spline argument (V each per channel).
func (a Arch) TapeElemsPerConfigLayer(recompute bool) int {
	return a.tapeElems(recompute, len(NewMasks(a.L, 0).Active))
}

// tapeElems is TapeElemsPerConfigLayer for nA active sites per layer,
// without allocating.
func (a Arch) tapeElems(recompute bool, nA int) int {
	V := a.L * a.L
	if recompute {
		hidden := 0
		if n := len(a.Hidden); n > 0 {
			hidden = a.Hidden[n-1]
		}
		return (2+hidden)*V + (a.OutChannels()+1)*nA
	}
	c := 1 + InChannels + a.OutChannels()
	for _, n := range a.Hidden {
		c += n
	}
	return c * V
}
