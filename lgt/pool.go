package lgt

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool evaluates batches of configurations with a fixed set of worker
// goroutines, one Evaluator each. A batch of B configurations is B·2V
// angles, configuration-major. Every configuration is computed by exactly
// the same code whatever worker takes it, so the results do not depend on
// the number of workers, bit for bit: during a Pool call OpenBLAS runs
// single-threaded (see the package documentation). A Pool serializes its own calls; it may be used
// from several goroutines.
type Pool struct {
	p   Params
	mu  sync.Mutex
	evs []*Evaluator
}

// NewPool returns a pool of workers Evaluators for the lattice p; workers
// ≤ 0 means runtime.GOMAXPROCS(0). It panics if p is invalid.
func NewPool(p Params, workers int) *Pool {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	pl := &Pool{p: p, evs: make([]*Evaluator, workers)}
	for w := range pl.evs {
		pl.evs[w] = NewEvaluator(p)
	}
	return pl
}

// Params returns the lattice parameters.
func (pl *Pool) Params() Params { return pl.p }

// Workers returns the number of workers.
func (pl *Pool) Workers() int { return len(pl.evs) }

// Action writes the total action of every configuration of links into
// action (length B) and, if force is not nil (length B·2V), dS/dθ. The
// error, if any, names the first failing configuration.
func (pl *Pool) Action(action, force, links []float64) error {
	B := len(action)
	pl.check("Action", B, force, links)
	return pl.run(B, func(ev *Evaluator, b int, lk, f []float64) error {
		var err error
		action[b], err = ev.Action(lk, f)
		return err
	}, force, links)
}

// Measure writes the observables of every configuration of links into obs
// (length B) and, if force is not nil (length B·2V), dS/dθ. The error, if
// any, names the first failing configuration.
func (pl *Pool) Measure(obs []Observables, force, links []float64) error {
	B := len(obs)
	pl.check("Measure", B, force, links)
	return pl.run(B, func(ev *Evaluator, b int, lk, f []float64) error {
		var err error
		obs[b], err = ev.Measure(lk, f)
		return err
	}, force, links)
}

// check panics on inconsistent slice lengths.
func (pl *Pool) check(fn string, B int, force, links []float64) {
	n := 2 * pl.p.V()
	if len(links) != B*n {
		panic(fmt.Sprintf("lgt: Pool.%s: links has length %d, want %d·%d", fn, len(links), B, n))
	}
	if force != nil && len(force) != B*n {
		panic(fmt.Sprintf("lgt: Pool.%s: force has length %d, want %d·%d", fn, len(force), B, n))
	}
}

// run calls job for every configuration b on some worker, with the links
// and force (nil or) slices of b, and returns the error of the lowest
// failing b.
func (pl *Pool) run(B int, job func(ev *Evaluator, b int, links, force []float64) error, force, links []float64) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	n := 2 * pl.p.V()
	errs := make([]error, B)
	one := func(ev *Evaluator, b int) {
		var f []float64
		if force != nil {
			f = force[b*n : (b+1)*n]
		}
		errs[b] = job(ev, b, links[b*n:(b+1)*n], f)
	}
	defer serialBLAS()()
	workers := min(len(pl.evs), B)
	if workers <= 1 {
		for b := 0; b < B; b++ {
			one(pl.evs[0], b)
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(ev *Evaluator) {
				defer wg.Done()
				for {
					b := int(next.Add(1)) - 1
					if b >= B {
						return
					}
					one(ev, b)
				}
			}(pl.evs[w])
		}
		wg.Wait()
	}
	for b, err := range errs {
		if err != nil {
			return fmt.Errorf("lgt: configuration %d of %d: %w", b, B, err)
		}
	}
	return nil
}
