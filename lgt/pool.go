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

	// The call in progress, read by the workers (set under mu): no
	// closures or per-call slices, so that a call does not allocate.
	kind         jobKind
	action       []float64
	obs          []Observables
	force, links []float64
	errs         []error
	next         atomic.Int64
	wg           sync.WaitGroup
	start        []chan int // one per worker goroutine, started at the first parallel call
}

// jobKind is what a Pool call computes per configuration.
type jobKind int

const (
	jobAction jobKind = iota
	jobMeasure
)

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
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.kind, pl.action = jobAction, action
	return pl.run(B, force, links)
}

// Measure writes the observables of every configuration of links into obs
// (length B) and, if force is not nil (length B·2V), dS/dθ. The error, if
// any, names the first failing configuration.
func (pl *Pool) Measure(obs []Observables, force, links []float64) error {
	B := len(obs)
	pl.check("Measure", B, force, links)
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.kind, pl.obs = jobMeasure, obs
	return pl.run(B, force, links)
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

// one computes configuration b of the call in progress on ev.
func (pl *Pool) one(ev *Evaluator, b int) {
	n := 2 * pl.p.V()
	var f []float64
	if pl.force != nil {
		f = pl.force[b*n : (b+1)*n]
	}
	lk := pl.links[b*n : (b+1)*n]
	var err error
	switch pl.kind {
	case jobAction:
		pl.action[b], err = ev.Action(lk, f)
	case jobMeasure:
		pl.obs[b], err = ev.Measure(lk, f)
	}
	pl.errs[b] = err
}

// worker is the goroutine of evaluator ev: for each call it receives the
// batch size B and takes configurations of the call in progress until none
// is left. It ends when Close closes its channel.
func (pl *Pool) worker(ev *Evaluator, start <-chan int) {
	for B := range start {
		for {
			b := int(pl.next.Add(1)) - 1
			if b >= B {
				break
			}
			pl.one(ev, b)
		}
		pl.wg.Done()
	}
}

// Close ends the pool's worker goroutines. The pool must not be used
// afterwards. A pool that is simply dropped keeps its idle goroutines.
func (pl *Pool) Close() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, c := range pl.start {
		close(c)
	}
	pl.start = nil
}

// run computes every configuration of the call set up in pl (mu held) on
// some worker and returns the error of the lowest failing one.
func (pl *Pool) run(B int, force, links []float64) error {
	pl.force, pl.links = force, links
	if cap(pl.errs) < B {
		pl.errs = make([]error, B)
	}
	pl.errs = pl.errs[:B]
	clear(pl.errs)
	defer serialBLAS()()
	workers := min(len(pl.evs), B)
	if workers <= 1 {
		for b := 0; b < B; b++ {
			pl.one(pl.evs[0], b)
		}
	} else {
		if pl.start == nil {
			// Long-lived workers: starting goroutines per call allocates.
			pl.start = make([]chan int, len(pl.evs))
			for w := range pl.start {
				pl.start[w] = make(chan int)
				go pl.worker(pl.evs[w], pl.start[w])
			}
		}
		pl.next.Store(0)
		pl.wg.Add(workers)
		for w := 0; w < workers; w++ {
			pl.start[w] <- B
		}
		pl.wg.Wait()
	}
	pl.action, pl.obs, pl.force, pl.links = nil, nil, nil, nil
	for b, err := range pl.errs {
		if err != nil {
			return fmt.Errorf("lgt: configuration %d of %d: %w", b, B, err)
		}
	}
	return nil
}
