package nf

import (
	"fmt"
	"testing"

	"nfschwinger/internal/h5"
)

// vectorsDir is where shared/vectors lies relative to the package directory.
const vectorsDir = "../../shared/vectors/"

// TestMasksAgainstVectors compares the generated masks of the 8 layers of
// flow_L8.h5 (one full period) with the reference masks.
func TestMasksAgainstVectors(t *testing.T) {
	f, err := h5.Open(vectorsDir + "flow_L8.h5")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	L64, err := h5.ReadScalarAttr[int64](f, "/", "L")
	if err != nil {
		t.Fatal(err)
	}
	L := int(L64)
	for k := 0; k < MaskPeriod; k++ {
		m := NewMasks(L, k)
		for _, c := range []struct {
			name string
			got  []bool
		}{
			{"link_mask", m.LinkMask},
			{"plaq_active", m.PlaqActive},
			{"plaq_frozen", m.PlaqFrozen},
			{"plaq_passive", m.PlaqPassive},
			{"loops_frozen", m.LoopsFrozen},
		} {
			want, _, err := h5.Read[float64](f, fmt.Sprintf("layers/%02d/%s", k, c.name))
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != len(c.got) {
				t.Fatalf("layer %d %s: len %d, want %d", k, c.name, len(c.got), len(want))
			}
			for i := range want {
				if (want[i] != 0) != c.got[i] {
					t.Fatalf("layer %d %s[%d] = %v, want %v", k, c.name, i, c.got[i], want[i])
				}
			}
		}
	}
}

// TestMasksStructure checks, for several L, that every link is updated once
// per period, that active/passive/frozen partition the plaquettes, and that
// no frozen plaquette or loop contains an updated link (so the conditioner
// input is the same before and after the layer).
func TestMasksStructure(t *testing.T) {
	for _, L := range []int{4, 8, 12, 16} {
		V := L * L
		count := make([]int, 2*V)
		for k := 0; k < MaskPeriod; k++ {
			m := NewMasks(L, k)
			if m.Mu != k/4 {
				t.Fatalf("L=%d layer %d: Mu = %d", L, k, m.Mu)
			}
			for x := range V {
				n := 0
				for _, b := range []bool{m.PlaqActive[x], m.PlaqPassive[x], m.PlaqFrozen[x]} {
					if b {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("L=%d layer %d plaquette %d in %d classes", L, k, x, n)
				}
			}
			for l, b := range m.LinkMask {
				if b {
					count[l]++
				}
			}
			if len(m.Active) != V/4 {
				t.Fatalf("L=%d layer %d: %d active, want %d", L, k, len(m.Active), V/4)
			}
			// Perturb the updated links: frozen plaquettes and loops must not move.
			links := make([]float64, 2*V)
			for l, b := range m.LinkMask {
				if b {
					links[l] = 1
				}
			}
			p := make([]float64, V)
			lp := make([]float64, 2*V)
			plaqAndLoops(p, lp, links, L)
			for x := range V {
				if m.PlaqFrozen[x] && p[x] != 0 {
					t.Fatalf("L=%d layer %d: frozen plaquette %d contains an updated link", L, k, x)
				}
				if m.PlaqActive[x] && p[x] == 0 {
					t.Fatalf("L=%d layer %d: active plaquette %d contains no updated link", L, k, x)
				}
			}
			for c := range 2 * V {
				if m.LoopsFrozen[c] && lp[c] != 0 {
					t.Fatalf("L=%d layer %d: frozen loop %d contains an updated link", L, k, c)
				}
			}
		}
		for l, c := range count {
			if c != 1 {
				t.Fatalf("L=%d: link %d updated %d times per period, want 1", L, l, c)
			}
		}
	}
}

// plaqAndLoops computes the (unwrapped) sums of links of every plaquette and
// 2x1 loop, to detect which links they contain.
func plaqAndLoops(p, lp, links []float64, L int) {
	V := L * L
	t0, t1 := links[:V], links[V:]
	s := func(i, j int) int { return ((i%L+L)%L)*L + (j%L+L)%L }
	for i := 0; i < L; i++ {
		for j := 0; j < L; j++ {
			x := i*L + j
			p[x] = t0[x] + t1[s(i+1, j)] + t0[s(i, j+1)] + t1[x]
			lp[x] = t0[x] + t0[s(i+1, j)] + t1[s(i+2, j)] + t0[s(i+1, j+1)] + t0[s(i, j+1)] + t1[x]
			lp[V+x] = t1[x] + t1[s(i, j+1)] + t0[s(i, j+2)] + t1[s(i+1, j+1)] + t1[s(i+1, j)] + t0[x]
		}
	}
}
