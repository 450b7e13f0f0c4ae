package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	nfio "nfschwinger/io"
	"nfschwinger/sample"
)

// watchOptions are the flags of `nfschwinger watch`.
type watchOptions struct {
	Dir   string
	Every time.Duration // refresh interval
	Once  bool          // print one view and return
}

// cmdWatch is `nfschwinger watch [-every 5s] [-once] DIR`: a compact view
// of a running (or finished) job, refreshed until the training is done
// and the chain stops growing, or until interrupted (ctx).
func cmdWatch(ctx context.Context, args []string, stdout io.Writer) error {
	var o watchOptions
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.DurationVar(&o.Every, "every", 5*time.Second, "refresh interval")
	fs.BoolVar(&o.Once, "once", false, "print the view once and exit")
	if err := fs.Parse(args); err != nil {
		return usagef("watch: %v", err)
	}
	if fs.NArg() != 1 {
		return usagef("watch: want one run directory, got %d arguments", fs.NArg())
	}
	if o.Every <= 0 {
		return usagef("watch: -every %v: must be > 0", o.Every)
	}
	o.Dir = fs.Arg(0)
	if _, err := os.Stat(filepath.Join(o.Dir, "history.h5")); err != nil {
		return usagef("watch: %s has no history.h5 (yet?): %v", o.Dir, err)
	}
	return watch(ctx, o, stdout)
}

// watch prints the view every o.Every: on a terminal in place, elsewhere
// one line per refresh in which something changed.
func watch(ctx context.Context, o watchOptions, w io.Writer) error {
	tty := isTerminal(w)
	last := ""
	idle := 0
	for {
		v, err := readWatch(o.Dir)
		if err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		line := v.String()
		switch {
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case line != last:
			fmt.Fprintln(w, line)
		}
		if line == last {
			idle++
		} else {
			idle = 0
		}
		last = line
		// Done: training complete, and a chain (if any) that stopped growing.
		if o.Once || v.done() && idle >= 2 {
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		case <-time.After(o.Every):
		}
	}
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watchView is one refresh of `watch`.
type watchView struct {
	Row     nfio.HistoryRow // the last logged row
	Planned int64           // train.steps, 0 when unknown
	Rate    float64         // steps per second over the last logged rows, NaN when unknown
	// Probe is the last acceptance probe (NaN when none) and ProbeStep
	// its step.
	Probe     sample.Probe
	ProbeStep int64
	// ChainSteps and ChainAccepted are chain.h5's counts, −1 without it.
	ChainSteps, ChainAccepted int64
}

// rateRows is how many of the last history rows the speed is taken over.
const rateRows = 10

// readWatch reads the view of dir from history.h5 (replaced atomically by
// the run, so always complete) and chain.h5 (read as a SWMR reader).
func readWatch(dir string) (watchView, error) {
	hp := filepath.Join(dir, "history.h5")
	v := watchView{Rate: math.NaN(), ChainSteps: -1, ChainAccepted: -1,
		Probe: sample.Probe{Acceptance: math.NaN(), ESS: math.NaN(), ESSErr: math.NaN()}}
	if err := nfio.ProbeHistory(hp); err != nil {
		return v, err
	}
	rows, err := nfio.ReadHistory(hp)
	if err != nil {
		return v, err
	}
	if v.Planned, err = nfio.ReadPlannedSteps(hp); err != nil {
		return v, err
	}
	if n := len(rows); n > 0 {
		v.Row = rows[n-1]
		a := rows[max(n-1-rateRows, 0)]
		if dt := v.Row.WallTime - a.WallTime; dt > 0 {
			v.Rate = float64(v.Row.Step-a.Step) / dt
		}
	}
	for _, r := range rows {
		if !math.IsNaN(r.Acceptance) {
			v.Probe, v.ProbeStep = sample.Probe{Acceptance: r.Acceptance, ESS: r.ProbeESS, ESSErr: r.ProbeESSErr}, r.Step
		}
	}
	cp := filepath.Join(dir, sample.ChainFile)
	if _, err := os.Stat(cp); err == nil {
		if err := nfio.ProbeChain(cp); err != nil && !errors.Is(err, nfio.ErrInUse) {
			return v, err
		} else if err == nil {
			if v.ChainSteps, v.ChainAccepted, err = nfio.ReadChainCounts(cp); err != nil {
				return v, err
			}
		}
	}
	return v, nil
}

// done reports whether the training has reached its planned steps.
func (v watchView) done() bool { return v.Planned > 0 && v.Row.Step >= v.Planned }

// String is the one-line view.
func (v watchView) String() string {
	var b strings.Builder
	r := v.Row
	if v.Planned > 0 {
		fmt.Fprintf(&b, "step %d/%d (%.1f%%)", r.Step, v.Planned, 100*float64(r.Step)/float64(v.Planned))
	} else {
		fmt.Fprintf(&b, "step %d", r.Step)
	}
	fmt.Fprintf(&b, "  loss %.5g  ESS %.4f", r.Loss, r.ESS)
	if !math.IsNaN(v.Probe.Acceptance) {
		fmt.Fprintf(&b, "  probe (step %d): ESS %.4f ± %.4f, acceptance %.4f", v.ProbeStep, v.Probe.ESS, v.Probe.ESSErr, v.Probe.Acceptance)
	}
	fmt.Fprintf(&b, "  lr %.3g", r.LearningRate)
	switch {
	case r.Recoveries == 1:
		b.WriteString(" (1 recovery)")
	case r.Recoveries > 1:
		fmt.Fprintf(&b, " (%d recoveries)", r.Recoveries)
	}
	if !math.IsNaN(v.Rate) {
		fmt.Fprintf(&b, "  %.3g steps/s", v.Rate)
		if v.Planned > r.Step && v.Rate > 0 {
			eta := time.Duration(float64(v.Planned-r.Step) / v.Rate * float64(time.Second))
			fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
		}
	}
	if v.ChainSteps >= 0 {
		acc := math.NaN()
		if v.ChainSteps > 0 {
			acc = float64(v.ChainAccepted) / float64(v.ChainSteps)
		}
		fmt.Fprintf(&b, "  chain %d steps, acceptance %.4f", v.ChainSteps, acc)
	}
	return b.String()
}
