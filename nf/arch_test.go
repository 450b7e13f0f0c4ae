package nf

import (
	"errors"
	"testing"
)

// TestArchValidate: the paper's architecture is valid, and each broken rule
// gives an *ArchError naming its field (the configuration maps it to its
// key).
func TestArchValidate(t *testing.T) {
	if err := DefaultArch(8).Validate(); err != nil {
		t.Fatalf("the paper's architecture: %v", err)
	}
	for _, c := range []struct {
		field string
		edit  func(*Arch)
	}{
		{"L", func(a *Arch) { a.L = 6 }},
		{"L", func(a *Arch) { a.L = 0 }},
		{"n_layers", func(a *Arch) { a.NLayers = 0 }},
		{"n_knots", func(a *Arch) { a.NKnots = 1 }},
		{"kernel_size", func(a *Arch) { a.KernelSize = 4 }},
		{"masking", func(a *Arch) { a.Masking = "plaq" }},
		{"dilation", func(a *Arch) { a.Dilation = []int{1, 2} }},
		{"dilation", func(a *Arch) { a.Dilation = []int{1, 0, 3} }},
		{"dilation", func(a *Arch) { a.L, a.Dilation = 4, []int{1, 2, 4} }}, // padding 4 ≥ L
		{"hidden_channels", func(a *Arch) { a.Hidden = []int{64, 0} }},
		{"leaky_relu_slope", func(a *Arch) { a.LeakyReLUSlope = -1 }},
	} {
		a := DefaultArch(8)
		c.edit(&a)
		var ae *ArchError
		if err := a.Validate(); !errors.As(err, &ae) || ae.Field != c.field {
			t.Errorf("%+v: error %v, want an ArchError of field %s", a, err, c.field)
		}
	}
}

// TestNumParams: Arch.NumParams is the length of the flow's ParamSet, and
// the paper's model has 48 × (6·64·9+64 + 64·64·9+64 + 64·25·9+25).
func TestNumParams(t *testing.T) {
	a := DefaultArch(8)
	a.NLayers = 3
	f, err := NewFlow[float32](a, CPU(1))
	if err != nil {
		t.Fatal(err)
	}
	if a.NumParams() != f.Params.Len() {
		t.Errorf("NumParams %d, ParamSet %d", a.NumParams(), f.Params.Len())
	}
	if got, want := DefaultArch(16).NumParams(), 48*(3520+36928+14425); got != want {
		t.Errorf("paper's model: %d parameters, want %d", got, want)
	}
}
