package app

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"nfschwinger/nf"
)

// FaultEnv is the environment variable that injects faults into a training
// run, for the fault-tolerance tests. Its value is a comma-separated list of
// KIND@STEP[:RANK] (RANK defaults to 0): at the start of step STEP on rank
// RANK,
//
//	error   the step returns an error (the job ends, exit status 1)
//	panic   the step panics (caught by comm.Guard: the job ends)
//	nan     the rank's gradient is set to NaN (the step is skipped)
//	kill    the process sends itself SIGKILL (as a node failure would)
//	signal  the process sends itself SIGTERM (as Slurm does before the limit)
//	diverge after the step, every rank multiplies the parameters by
//	        divergeFactor (the same on all ranks, whatever RANK says): the
//	        flow's output explodes, as a diverging optimizer's does
//
// Never set it in production.
const FaultEnv = "NFSCHWINGER_FAULT"

// fault is one injected fault.
type fault struct {
	kind       string
	step, rank int
}

// faults parses FaultEnv; an unset variable gives none.
func parseFaults(v string) ([]fault, error) {
	if v == "" {
		return nil, nil
	}
	var fs []fault
	for _, item := range strings.Split(v, ",") {
		kind, rest, ok := strings.Cut(strings.TrimSpace(item), "@")
		if !ok {
			return nil, fmt.Errorf("%s: %q: want KIND@STEP[:RANK]", FaultEnv, item)
		}
		stepS, rankS, hasRank := strings.Cut(rest, ":")
		f := fault{kind: kind}
		var err error
		if f.step, err = strconv.Atoi(stepS); err != nil {
			return nil, fmt.Errorf("%s: %q: bad step: %w", FaultEnv, item, err)
		}
		if hasRank {
			if f.rank, err = strconv.Atoi(rankS); err != nil {
				return nil, fmt.Errorf("%s: %q: bad rank: %w", FaultEnv, item, err)
			}
		}
		switch kind {
		case "error", "panic", "nan", "kill", "signal", "diverge":
		default:
			return nil, fmt.Errorf("%s: %q: unknown kind %q", FaultEnv, item, kind)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// inject performs the faults due at step on rank; grad is the rank's
// gradient after the local backward pass.
func inject[T nf.Float](fs []fault, step int64, rank int, grad []T) error {
	for _, f := range fs {
		if int64(f.step) != step || f.rank != rank {
			continue
		}
		switch f.kind {
		case "error":
			return fmt.Errorf("injected failure (%s)", FaultEnv)
		case "panic":
			panic(fmt.Sprintf("injected panic (%s)", FaultEnv))
		case "nan":
			nf.Poison(grad)
		case "kill":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case "signal":
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}
	}
	return nil
}

// divergeFactor is what a "diverge" fault multiplies the parameters by.
const divergeFactor = 100

// perturb applies the "diverge" faults of step to params (every rank).
func perturb[T nf.Float](fs []fault, step int64, params []T) {
	for _, f := range fs {
		if f.kind == "diverge" && int64(f.step) == step {
			for i := range params {
				params[i] *= divergeFactor
			}
		}
	}
}

// signalDue reports whether a "signal" fault is injected at step on rank:
// the run then waits for the signal to arrive, so that the stop happens
// after this very step (signal delivery is asynchronous).
func signalDue(fs []fault, step int64, rank int) bool {
	for _, f := range fs {
		if f.kind == "signal" && int64(f.step) == step && f.rank == rank {
			return true
		}
	}
	return false
}
