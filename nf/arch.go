package nf

import (
	"fmt"
	"slices"
	"strings"
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

// NumParams returns the number of trainable parameters (weights and
// biases of every convolution of every layer): the length of a flow's
// ParamSet, without building the flow.
func (a Arch) NumParams() int {
	ch := a.Channels()
	perLayer := 0
	for j := range len(ch) - 1 {
		perLayer += ch[j+1]*ch[j]*a.KernelSize*a.KernelSize + ch[j+1]
	}
	return a.NLayers * perLayer
}

// ArchError is a violated rule of an architecture. Field is the name of
// the attribute as in model files and params.toml ("L", "n_layers",
// "hidden_channels", …), Value its value, Rule what is allowed; callers map
// Field to their own names (the configuration to its keys).
type ArchError struct {
	Field string
	Value any
	Rule  string
}

// Error is "Field = Value: Rule".
func (e *ArchError) Error() string { return fmt.Sprintf("%s = %v: %s", e.Field, e.Value, e.Rule) }

// Maskings lists the implemented conditioner inputs (Arch.Masking).
var Maskings = []string{"2x1"}

// Validate reports the first violated rule of the architecture, as an
// *ArchError. These are the model rules of the whole program: the
// configuration checks its [model] section and lattice.L with them.
func (a Arch) Validate() error {
	bad := func(field string, v any, rule string, args ...any) error {
		return &ArchError{Field: field, Value: v, Rule: fmt.Sprintf(rule, args...)}
	}
	switch {
	case a.L < 4 || a.L%4 != 0:
		return bad("L", a.L, "must be a positive multiple of 4 (the masks have period 4)")
	case a.NLayers < 1:
		return bad("n_layers", a.NLayers, "must be ≥ 1")
	case a.NKnots < 2:
		return bad("n_knots", a.NKnots, "must be ≥ 2 (one bin or more)")
	case a.KernelSize < 1 || a.KernelSize%2 == 0:
		return bad("kernel_size", a.KernelSize, "must be odd and ≥ 1")
	case !slices.Contains(Maskings, a.Masking):
		return bad("masking", a.Masking, "allowed: %q", strings.Join(Maskings, `", "`))
	case len(a.Dilation) != len(a.Hidden)+1:
		return bad("dilation", a.Dilation, "needs one entry per convolution, len(hidden_channels) + 1 = %d", len(a.Hidden)+1)
	case a.LeakyReLUSlope < 0:
		return bad("leaky_relu_slope", a.LeakyReLUSlope, "must be ≥ 0")
	}
	for _, h := range a.Hidden {
		if h < 1 {
			return bad("hidden_channels", a.Hidden, "every entry must be ≥ 1")
		}
	}
	for _, d := range a.Dilation {
		if d < 1 {
			return bad("dilation", a.Dilation, "every entry must be ≥ 1")
		}
		if pad := d * (a.KernelSize - 1) / 2; pad >= a.L {
			return bad("dilation", a.Dilation, "padding %d (dilation × (kernel_size − 1)/2) must be < L = %d", pad, a.L)
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
