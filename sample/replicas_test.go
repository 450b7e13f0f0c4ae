package sample

import (
	"math"
	"testing"
)

// TestCombine: the length-weighted mean of independent chains, its error
// from the chains' errors, and χ²/dof about it.
func TestCombine(t *testing.T) {
	rep := func(steps int, mean, err float64) *Report {
		return &Report{Steps: steps, Observables: []ObservableReport{{Name: "x", Mean: Num(mean), Err: Num(err)}},
			ExpMinusDH: Estimate{1, 0.01}}
	}
	c := Combine([]*Report{rep(100, 1, 0.2), rep(300, 2, 0.1)})
	o := c.Observables[0]
	wantErr := math.Sqrt(100*100*0.04+300*300*0.01) / 400
	if c.Replicas != 2 || c.Steps != 400 || o.Mean != 1.75 || math.Abs(float64(o.Err)-wantErr) > 1e-15 {
		t.Errorf("combined %+v", c)
	}
	if want := (0.75*0.75/0.04 + 0.25*0.25/0.01) / 1; math.Abs(float64(o.ChiSqDof)-want) > 1e-12 {
		t.Errorf("χ²/dof = %v, want %v", o.ChiSqDof, want)
	}
	if one := Combine([]*Report{rep(10, 3, 0.5)}); one.Observables[0].Mean != 3 || one.Observables[0].Err != 0.5 ||
		!math.IsNaN(float64(one.Observables[0].ChiSqDof)) {
		t.Errorf("one replica: %+v", one.Observables[0])
	}
}
