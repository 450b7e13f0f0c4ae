// Package app is the command layer of nfschwinger: it parses the command
// line and params.toml, runs the subcommands (train, measure, check,
// analyze, bench, slurm) and prints; it is the only place where errors
// become exit codes. The work lives below it: the training step in
// nf.Stepper, proposals and log q in nf.Density, the chain and its
// statistics in package sample, every file format in io, the physics in
// lgt, the ranks in comm. Training here keeps what is the run's own:
// restore, history, progress, checkpoints, the events file (EventsEnv).
//
// Exit status: 0 success, 1 runtime failure, 2 usage or input error (bad
// configuration, bad input file), before anything is written; 75 stopped
// by a signal, to be continued. Every error carries its status through an
// ExitCode method (comm.ExitCode), the same code comm.Guard aborts an MPI
// job with.
package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"nfschwinger/comm"
)

// Exit statuses of the program.
const (
	ExitOK      = 0 // finished
	ExitFailure = 1 // the run failed at run time
	ExitUsage   = 2 // bad command line, configuration or input; nothing written
)

// UsageError marks an error caused by the user's input (command line,
// configuration, input files); Main maps it to ExitUsage.
type UsageError struct{ Err error }

// Error returns the message of the underlying error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is the exit status of a usage error, also when an MPI job is
// aborted because of it (comm.ExitCode).
func (e *UsageError) ExitCode() int { return ExitUsage }

// usagef returns a UsageError with a formatted message.
func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

const usageText = `usage:
  nfschwinger PARAMS.toml                 train (and sample) as PARAMS.toml says; or the HMC baseline
  nfschwinger check PARAMS.toml           validate PARAMS.toml, print parameters and memory per rank
  nfschwinger slurm PARAMS.toml           print the Slurm batch script of the run ([slurm] section)
  nfschwinger measure [flags] IN.h5 OUT.h5
                                          action, force and observables of configurations
  nfschwinger analyze [-json] DIR         tables and plots from DIR/history.h5 and DIR/chain.h5
  nfschwinger analyze [-json] DIR1 DIR2 … compare the training of several runs (table, overlay plots)
  nfschwinger watch [-every 5s] [-once] DIR  follow a running job: step, loss, ESS, probes, speed, ETA
  nfschwinger bench [flags]               time training steps and the action; markdown tables or -json
run 'nfschwinger COMMAND -h' for the flags of a command.
`

// Main runs the program with the given arguments (without the program name)
// and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return ExitOK
	}
	// One failure path: every error carries its exit status the same way
	// (an ExitCode method; comm.Guard aborts MPI jobs with the same code).
	code := comm.ExitCode(err)
	if code != ExitContinue {
		fmt.Fprintf(stderr, "nfschwinger: %v\n", err)
	}
	return code
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return usagef("no command or parameter file given")
	}
	switch cmd := args[0]; {
	case cmd == "-h" || cmd == "-help" || cmd == "--help" || cmd == "help":
		fmt.Fprint(stdout, usageText)
		return nil
	case cmd == "measure":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cmdMeasure(ctx, args[1:], stdout, stderr)
	case cmd == "analyze":
		return cmdAnalyze(args[1:], stdout)
	case cmd == "watch":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return cmdWatch(ctx, args[1:], stdout)
	case cmd == "check":
		return cmdCheck(args[1:], stdout)
	case cmd == "bench":
		return cmdBench(args[1:], stdout, stderr)
	case cmd == "slurm":
		return runSlurmCmd(args[1:], stdout, stderr)
	case strings.HasSuffix(cmd, ".toml"):
		if len(args) > 1 {
			return usagef("unexpected arguments after %s: %q", cmd, args[1:])
		}
		return runTrainCmd(cmd, stdout, stderr)
	default:
		fmt.Fprint(stderr, usageText)
		return usagef("unknown command %q", cmd)
	}
}
