package lgt

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// sink keeps benchmark results alive.
var sink float64

// BenchmarkActionForce measures action + force of one configuration: the
// even–odd path (Evaluator.Action with force; LU of the order-V Schur
// complement and its inverse through zgetri, or through zgetrs against the
// identity) against the dense path (LU and inverse of the full order-2V D,
// Evaluator.MeasureDense). Run with -benchtime 2x or so: L = 24 dense
// takes about a second per operation.
func BenchmarkActionForce(b *testing.B) {
	prev := BLASThreads()
	SetBLASThreads(1) // one configuration per core, as in a Pool
	defer SetBLASThreads(prev)
	for _, L := range []int{8, 16, 24} {
		p := Params{L: L, Beta: 2, Kappa: 0.276}
		links := randomLinks(rand.New(rand.NewPCG(1, uint64(L))), L)
		force := make([]float64, 2*p.V())
		b.Run(fmt.Sprintf("L=%d/evenodd", L), func(b *testing.B) {
			ev := NewEvaluator(p)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := ev.Action(links, force)
				if err != nil {
					b.Fatal(err)
				}
				sink += s
			}
		})
		b.Run(fmt.Sprintf("L=%d/evenodd-getri", L), func(b *testing.B) {
			ev := NewEvaluator(p)
			ev.inv = invGetri
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := ev.Action(links, force)
				if err != nil {
					b.Fatal(err)
				}
				sink += s
			}
		})
		b.Run(fmt.Sprintf("L=%d/evenodd-getrs", L), func(b *testing.B) {
			ev := NewEvaluator(p)
			ev.inv = invGetrs
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := ev.Action(links, force)
				if err != nil {
					b.Fatal(err)
				}
				sink += s
			}
		})
		b.Run(fmt.Sprintf("L=%d/evenodd-noforce", L), func(b *testing.B) {
			ev := NewEvaluator(p)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := ev.Action(links, nil)
				if err != nil {
					b.Fatal(err)
				}
				sink += s
			}
		})
		b.Run(fmt.Sprintf("L=%d/dense", L), func(b *testing.B) {
			ev := NewEvaluator(p)
			if _, err := ev.MeasureDense(links, force); err != nil { // allocate the dense workspace
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				o, err := ev.MeasureDense(links, force)
				if err != nil {
					b.Fatal(err)
				}
				sink += o.Action
			}
		})
	}
}

// BenchmarkPool measures a batch of 16 configurations at L = 16 through a
// Pool with one worker per core.
func BenchmarkPool(b *testing.B) {
	const B, L = 16, 16
	p := Params{L: L, Beta: 2, Kappa: 0.276}
	rng := rand.New(rand.NewPCG(2, 3))
	links := make([]float64, 0, B*2*p.V())
	for i := 0; i < B; i++ {
		links = append(links, randomLinks(rng, L)...)
	}
	action := make([]float64, B)
	force := make([]float64, B*2*p.V())
	pool := NewPool(p, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pool.Action(action, force, links); err != nil {
			b.Fatal(err)
		}
	}
	sink += action[0]
}
