package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"nfschwinger/comm"
	"nfschwinger/internal/threads"
	nfio "nfschwinger/io"
	"nfschwinger/lgt"
	"nfschwinger/nf"
	"nfschwinger/nf/gpu"
	"nfschwinger/sample"
)

// ExitContinue is the exit status of a run stopped by a signal after
// writing its checkpoint: not finished, to be continued (EX_TEMPFAIL of
// sysexits.h). Batch scripts requeue on it.
const ExitContinue = 75

// errStopped is returned by a training run that a signal stopped after its
// checkpoint was written.
var errStopped error = stoppedError{}

// stoppedError is the type of errStopped: exit status ExitContinue, reached
// by every rank together (comm.Agreed), so comm.Guard returns it.
type stoppedError struct{}

func (stoppedError) Error() string {
	return "stopped by signal; checkpoint written, run to be continued"
}

// ExitCode is ExitContinue.
func (stoppedError) ExitCode() int { return ExitContinue }

// Agreed is true: every rank stops after the same step.
func (stoppedError) Agreed() bool { return true }

// maxSkippedInARow stops a run whose gradients are non-finite this many
// steps in a row.
const maxSkippedInARow = 20

// trainOptions are the inputs of a training run.
type trainOptions struct {
	ConfigPath string
	Stdout     io.Writer
	Stderr     io.Writer
	Comm       comm.Comm
	// Stop, when it yields, asks the run to finish the current step,
	// write a checkpoint and return errStopped.
	Stop <-chan os.Signal
	// Faults are injected faults (tests; see FaultEnv).
	Faults []fault
}

// runTrainCmd is `nfschwinger PARAMS.toml`.
func runTrainCmd(path string, stdout, stderr io.Writer) error {
	cfg, err := nfio.Load(path)
	if err != nil {
		return &UsageError{Err: err}
	}
	c, err := comm.Init()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := cfg.CheckRanks(c.Size()); err != nil {
		return &UsageError{Err: err}
	}
	plan := threads.Configure(c.LocalSize())
	if c.Rank() == 0 {
		fmt.Fprintf(stdout, "nfschwinger: %d rank(s); %d threads per rank (%s)\n", c.Size(), plan.Procs, plan.Reason)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(stop)
	faults, err := parseFaults(os.Getenv(FaultEnv))
	if err != nil {
		return &UsageError{Err: err}
	}
	if cfg.HMC() { // the HMC baseline: no flow, one chain per rank
		return c.Guard(func() error { return runHMC(cfg, c, stdout, stop) })
	}
	opts := trainOptions{ConfigPath: path, Stdout: stdout, Stderr: stderr, Comm: c, Stop: stop, Faults: faults}
	// A stop by signal (errStopped) is agreed by every rank: Guard returns
	// it, and every rank exits with ExitContinue after MPI_Finalize.
	return c.Guard(func() error {
		if cfg.Model.Precision == "float64" {
			return runTrain[float64](context.Background(), cfg, opts)
		}
		return runTrain[float32](context.Background(), cfg, opts)
	})
}

// timedComm is the run's communicator with a clock: spent is the wall time
// this rank spent in collectives (transfer and waiting for the other
// ranks).
type timedComm struct {
	comm.Comm
	spent time.Duration
}

func newTimedComm(c comm.Comm) *timedComm { return &timedComm{Comm: c} }

func (c *timedComm) AllreduceSum(buf []float64) {
	defer c.since(time.Now())
	c.Comm.AllreduceSum(buf)
}

func (c *timedComm) AllreduceMax(buf []float64) {
	defer c.since(time.Now())
	c.Comm.AllreduceMax(buf)
}

func (c *timedComm) Bcast(buf []float64, root int) {
	defer c.since(time.Now())
	c.Comm.Bcast(buf, root)
}

func (c *timedComm) AllreduceSum32(buf []float32) {
	defer c.since(time.Now())
	c.Comm.AllreduceSum32(buf)
}

func (c *timedComm) Bcast32(buf []float32, root int) {
	defer c.since(time.Now())
	c.Comm.Bcast32(buf, root)
}

func (c *timedComm) since(t0 time.Time) { c.spent += time.Since(t0) }

// run is the state of one training run on one rank.
type run[T nf.Float] struct {
	cfg     nfio.Config
	opts    trainOptions
	c       comm.Comm
	tc      *timedComm // c, with its clock
	flow    *nf.Flow[T]
	adam    *nf.Adam
	trainer *nf.Trainer[T]
	stepper *nf.Stepper[T] // the whole step: gradient, allreduce, Adam, broadcast, agreement
	events  *events        // machine-readable events (EventsEnv), rank 0
	pool    *lgt.Pool      // action, force and observables of this rank's configurations
	state   nfio.TrainState
	hist    *nfio.History
	outDir  string
	unlock  func() // releases the run's lock on outDir (rank 0; nil elsewhere)
	rec     *recovery[T]
}

func runTrain[T nf.Float](ctx context.Context, cfg nfio.Config, o trainOptions) error {
	tc := newTimedComm(o.Comm)
	c := comm.Comm(tc)
	nLocal := cfg.Train.BatchSize / c.Size()
	micro := min(cfg.Train.MicroBatch, nLocal)
	flow, kernels, err := placeFlow[T](cfg, c, micro, o.Stdout)
	if err != nil {
		return err
	}
	defer flow.Close()
	flow.Init(nf.Stream(uint64(cfg.Train.Seed), nf.DomainInit, 0, 0))
	r := &run[T]{cfg: cfg, opts: o, c: c, tc: tc, flow: flow, outDir: cfg.IO.OutDir, events: newEvents(c.Rank()),
		state: nfio.TrainState{LRScale: 1}, rec: newRecovery[T](cfg.Train)}
	n := flow.Params.Len()
	r.adam = nf.NewAdam(n, cfg.Train.LearningRate, cfg.Train.AdamBetas[0], cfg.Train.AdamBetas[1], cfg.Train.AdamEps)
	err = r.restore()
	if r.unlock != nil {
		defer r.unlock()
	}
	if err != nil {
		return err
	}
	closeTarget, err := r.setupStep(kernels, micro)
	if err != nil {
		return err
	}
	defer closeTarget()
	if c.Rank() == 0 {
		defer func() {
			if r.hist != nil {
				r.hist.Close()
			}
		}()
	}
	if err := r.loop(ctx, nLocal); err != nil {
		return err
	}
	// NMCMC with the trained flow ([sample]); a stop signal ends it after
	// the current block, which is flushed, and the chain continues on
	// restart.
	sctx, cancel := stopContext(ctx, o.Stop)
	defer cancel()
	err = runSample(sctx, cfg, c, flow, r.pool, o.Stdout)
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		if c.Rank() == 0 {
			fmt.Fprintf(o.Stdout, "sampling stopped by signal; %s continues on restart\n", filepath.Join(cfg.IO.OutDir, sample.ChainFile))
		}
		return errStopped
	}
	return err
}

// placeFlow builds the run's flow where [compute] device puts it (on a
// device for micro-batches of micro, with a tape), agreed by every rank,
// and says where on rank 0. It returns the device's kernels, nil on the
// CPU.
func placeFlow[T nf.Float](cfg nfio.Config, c comm.Comm, micro int, stdout io.Writer) (*nf.Flow[T], *gpu.Kernels, error) {
	place, err := placeRank(cfg.Compute.Device, c.LocalRank())
	var flow *nf.Flow[T]
	var dev *deviceFlow
	if err == nil {
		dev, err = onDevice(place, micro, true)
	}
	if err == nil {
		flow, err = newFlow[T](cfg.Arch(), cfg.Model.ConvPrecision, cfg.Model.ConvAlgorithm, dev)
	}
	if err := c.AgreeError(err); err != nil {
		if flow != nil {
			flow.Close()
		}
		return nil, nil, err
	}
	if c.Rank() == 0 {
		fmt.Fprintf(stdout, "nfschwinger: %s\n", place)
	}
	var kernels *gpu.Kernels
	if dev != nil {
		kernels = dev.kernels
	}
	return flow, kernels, nil
}

// setupStep builds the rank's action pool and training target (on the
// device where the flow is: REINFORCE's log det, and the force for the
// other estimators), the Trainer and the Stepper with the run's clipping
// and fault hook. It returns what frees the target.
func (r *run[T]) setupStep(kernels *gpu.Kernels, micro int) (closeTarget func(), err error) {
	cfg, c := r.cfg, r.c
	r.pool = lgt.NewPool(cfg.Lattice(), 0)
	est, _ := nf.ParseEstimator(cfg.Train.Estimator) // validated by Load
	target, closeTarget, err := deviceTarget(kernels, r.flow, est, r.pool)
	if err := c.AgreeError(err); err != nil {
		return nil, err
	}
	if _, ok := target.(nf.ResidentTarget[T]); ok && c.Rank() == 0 {
		what := "log det (REINFORCE needs no force)"
		if est != nf.REINFORCE {
			what = "log det and force"
		}
		fmt.Fprintf(r.opts.Stdout, "nfschwinger: the action's %s on the device too, from the flow's device buffers\n", what)
	}
	r.trainer = nf.NewTrainer(r.flow, target, est, micro, uint64(cfg.Train.Seed))
	r.stepper = &nf.Stepper[T]{Trainer: r.trainer, Adam: r.adam,
		ClipValue: cfg.Train.GradClipValue, ClipNorm: cfg.Train.GradClip}
	if len(r.opts.Faults) > 0 {
		rank := c.Rank()
		r.stepper.Hook = func(step uint64, grad []T) error { return inject(r.opts.Faults, int64(step), rank, grad) }
	}
	return closeTarget, nil
}

// restore loads the checkpoint that restart names on rank 0 and broadcasts
// the parameters and the step; it opens or creates the history.
func (r *run[T]) restore() error {
	c, cfg := r.c, r.cfg
	path, err := checkpointToLoad(cfg)
	if c.Rank() == 0 && err == nil && path != "" {
		var st nfio.TrainState
		st, err = readCheckpointOrPrev(path, cfg.Arch(), r.flow.Params, r.opts.Stderr)
		if err == nil {
			r.state = st
			r.adam.Step, r.adam.M, r.adam.V = st.AdamStep, st.M, st.V
			fmt.Fprintf(r.opts.Stdout, "restarting from %s at step %d\n", path, st.Step)
			r.events.emit(Event{Event: "start", Step: st.Step, Checkpoint: path})
		}
	}
	if c.Rank() == 0 && err == nil && path == "" {
		if err = r.initFrom(); err == nil {
			r.events.emit(Event{Event: "start"})
		}
	}
	if err := c.AgreeError(err); err != nil {
		return err
	}
	step := [4]float64{float64(r.state.Step), float64(r.state.Skipped), r.state.LRScale, float64(r.state.Recoveries)}
	c.Bcast(step[:], 0)
	r.state.Step, r.state.Skipped, r.state.LRScale, r.state.Recoveries = int64(step[0]), int64(step[1]), step[2], int64(step[3])
	nf.BcastParams(c, r.flow.Params.Data)
	if c.Rank() == 0 {
		err = r.openOutputs()
	}
	return c.AgreeError(err)
}

// openOutputs makes out_dir, takes the run's lock on it and opens the
// history (rank 0): rebuilt from the checkpoint's rows on a restart, a
// format-1 checkpoint's old file continued (or kept aside when damaged),
// or a new one.
func (r *run[T]) openOutputs() error {
	if err := os.MkdirAll(r.outDir, 0o755); err != nil {
		return err
	}
	// history.h5 and chain.h5 are readable while written, so no file lock
	// of HDF5's keeps a second run out: this one does.
	var err error
	r.unlock, err = nfio.LockFile(nfio.LockPath(r.checkpointPath()))
	if errors.Is(err, nfio.ErrLocked) {
		return &UsageError{Err: fmt.Errorf("another run is writing %s: %w", r.outDir, err)}
	}
	if err != nil {
		return err
	}
	hp := filepath.Join(r.outDir, "history.h5")
	_, statErr := os.Stat(hp)
	switch {
	case r.state.Step > 0 && r.state.History != nil:
		// The checkpoint holds the rows: rebuild the file from them and
		// never parse the old one, which may be damaged.
		r.hist, err = nfio.RestoreHistory(hp, r.state.History)
	case r.state.Step > 0 && statErr == nil: // a format-1 checkpoint: no rows in it
		if perr := nfio.ProbeHistory(hp); errors.Is(perr, nfio.ErrInUse) {
			return perr // another run's history: never move it
		} else if perr != nil {
			fmt.Fprintf(r.opts.Stderr, "nfschwinger: %v; kept as %s, a new history starts at step %d\n",
				perr, nfio.PrevPath(hp), r.state.Step)
			r.hist, err = nfio.RestoreHistory(hp, nil)
			break
		}
		r.hist, err = nfio.OpenHistory(hp, r.state.Step)
		if err == nil {
			r.state.History, err = r.hist.Rows()
		}
	default:
		r.hist, err = nfio.CreateHistory(hp)
	}
	if err == nil && r.state.InitFrom != "" {
		err = r.hist.SetSource(r.state.InitFrom)
	}
	if err == nil {
		err = r.hist.SetPlannedSteps(int64(r.cfg.Train.Steps))
	}
	return err
}

// initFrom loads, for a fresh start, the model of train.init_from (any L,
// the same architecture otherwise) into the flow on rank 0 and records the
// source; the caller broadcasts the parameters. A missing, unreadable or
// mismatched file is a usage error (exit status 2).
func (r *run[T]) initFrom() error {
	src := r.cfg.Train.InitFrom
	if src == "" {
		return nil
	}
	if err := nfio.ReadTransfer(src, r.cfg.Arch(), r.flow.Params); err != nil {
		return &UsageError{Err: fmt.Errorf("train.init_from = %q: %w", src, err)}
	}
	r.state.InitFrom = src
	fmt.Fprintf(r.opts.Stdout, "starting from the model of %s (transfer to L = %d)\n", src, r.cfg.Lat.L)
	return nil
}

// stopContext returns a context that is cancelled when stop yields or ctx
// ends.
func stopContext(ctx context.Context, stop <-chan os.Signal) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, cancel
}

// readCheckpointOrPrev reads the checkpoint at path; when it is corrupt it
// falls back, with a warning, to the previous one kept beside it. A
// mismatched or unreadable checkpoint is a usage error (exit status 2).
func readCheckpointOrPrev[T nf.Float](path string, arch nf.Arch, ps *nf.ParamSet[T], warn io.Writer) (nfio.TrainState, error) {
	st, err := nfio.ReadCheckpoint(path, arch, ps)
	if err == nil || !errors.Is(err, nfio.ErrCheckpointCorrupt) {
		if err != nil {
			err = &UsageError{Err: err}
		}
		return st, err
	}
	prev := nfio.PrevPath(path)
	if _, statErr := os.Stat(prev); statErr != nil {
		return st, &UsageError{Err: fmt.Errorf("%w (and no %s to fall back to)", err, prev)}
	}
	st, perr := nfio.ReadCheckpoint(prev, arch, ps)
	if perr != nil {
		return st, &UsageError{Err: fmt.Errorf("%w; the previous checkpoint is not usable either: %w", err, perr)}
	}
	fmt.Fprintf(warn, "nfschwinger: warning: %v\nnfschwinger: warning: continuing from the previous checkpoint %s (step %d)\n", err, prev, st.Step)
	return st, nil
}

// checkpointToLoad returns the checkpoint [io] restart asks for, "" for a
// fresh start.
func checkpointToLoad(cfg nfio.Config) (string, error) {
	own := filepath.Join(cfg.IO.OutDir, "checkpoint.h5")
	_, statErr := os.Stat(own)
	exists := statErr == nil
	switch cfg.IO.Restart {
	case "auto":
		if exists {
			return own, nil
		}
		return "", nil
	case "never":
		if exists {
			return "", &UsageError{Err: fmt.Errorf("io.restart = \"never\" but %s exists: remove it or set restart = \"auto\"", own)}
		}
		return "", nil
	default:
		if _, err := os.Stat(cfg.IO.Restart); err != nil {
			return "", &UsageError{Err: fmt.Errorf("io.restart = %q: %w", cfg.IO.Restart, err)}
		}
		if exists {
			return own, nil // a run already continued: its own checkpoint is newer
		}
		return cfg.IO.Restart, nil
	}
}

// loop runs the training steps from the restored step to [train] steps.
func (r *run[T]) loop(ctx context.Context, nLocal int) error {
	c, cfg := r.c, r.cfg
	steps := int64(cfg.Train.Steps)
	first := uint64(c.Rank() * nLocal)
	N := cfg.Train.BatchSize
	prog := newProgress(r.opts.Stdout, c.Rank() == 0, steps, r.state.Step)
	if r.state.Step >= steps {
		prog.printf("run complete: %d of %d steps done (%s)\n", r.state.Step, steps, r.checkpointPath())
		r.events.emit(Event{Event: "done", Step: r.state.Step})
		return nil
	}
	skippedInARow := 0
	start := time.Now()
	startStep := r.state.Step
	r.snapshot(true)
	for r.state.Step < steps {
		step := r.state.Step
		t0 := time.Now()
		r.adam.LR = r.learningRate(step)
		res, err := r.stepper.Step(c, uint64(step), first, nLocal, N, func() bool { return r.stopRequested(step) })
		if err != nil {
			return err
		}
		recovered, rerr := r.account(res, step, t0, &skippedInARow)
		probe, measured, err := r.acceptanceProbe()
		if err != nil {
			return err
		}
		if c.Rank() == 0 {
			rate := float64(r.state.Step-startStep) / time.Since(start).Seconds()
			if err := r.logStep(prog, res, probe, measured || recovered, rate); err != nil {
				return err
			}
		}
		if rerr != nil {
			return rerr
		}
		if skippedInARow >= maxSkippedInARow {
			return fmt.Errorf("step %d: %d gradient steps in a row were non-finite; stopping with the last checkpoint intact", step, skippedInARow)
		}
		if err := r.checkpointOrStop(prog, res.Stop, steps); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	r.events.emit(Event{Event: "done", Step: steps})
	prog.printf("training done: %d steps, checkpoint %s; %s\n", steps, r.checkpointPath(),
		commSummary(time.Since(start), r.tc.spent, r.stepper.GradComm, steps-startStep, c.Size()))
	return nil
}

// account books the step just done: the fault injection's perturbation,
// the skipped count (and skippedInARow), the step and wall-time counters,
// the divergence guard (recovered: it rolled the run back; rerr: it ended
// it) and the snapshot for later rollbacks.
func (r *run[T]) account(res nf.StepResult, step int64, t0 time.Time, skippedInARow *int) (recovered bool, rerr error) {
	perturb(r.opts.Faults, step, r.flow.Params.Data)
	if res.NonFinite != nil {
		fmt.Fprintf(r.opts.Stderr, "nfschwinger: step %d skipped: %v\n", step, res.NonFinite)
	}
	if res.Skipped {
		r.state.Skipped++
		*skippedInARow++
	} else {
		*skippedInARow = 0
	}
	r.state.Step++
	r.state.WallTime += time.Since(t0).Seconds()
	recovered, rerr = r.checkDivergence(res)
	if recovered {
		*skippedInARow = 0
	}
	r.snapshot(false)
	return recovered, rerr
}

// checkpointOrStop writes the checkpoint when it is due (every
// checkpoint_every steps, at the last step, and when a stop was requested)
// and returns errStopped after a requested stop before the last step.
func (r *run[T]) checkpointOrStop(prog *progress, stop bool, steps int64) error {
	every := int64(r.cfg.Train.CheckpointEvery)
	if due := every > 0 && r.state.Step%every == 0; due || r.state.Step == steps || stop {
		if err := r.checkpoint(); err != nil {
			return err
		}
	}
	if stop && r.state.Step < steps {
		prog.printf("stopped at step %d of %d: checkpoint %s\n", r.state.Step, steps, r.checkpointPath())
		r.events.emit(Event{Event: "stopped", Step: r.state.Step})
		return errStopped
	}
	return nil
}

// acceptanceProbe measures the acceptance and the ESS of the flow after the
// step just done (figure 2, right, of the paper) when
// train.acceptance_every says so; measured reports whether it did, and the
// probe's values are NaN otherwise. Collective.
func (r *run[T]) acceptanceProbe() (p sample.Probe, measured bool, err error) {
	cfg := r.cfg
	if cfg.Train.AcceptanceEvery <= 0 || r.state.Step%int64(cfg.Train.AcceptanceEvery) != 0 {
		return sample.Probe{Acceptance: math.NaN(), ESS: math.NaN(), ESSErr: math.NaN()}, false, nil
	}
	p, err = sample.Acceptance(r.c, r.flow, r.pool, uint64(cfg.Train.Seed), r.state.Step,
		cfg.Train.AcceptanceSamples, r.trainer.Micro)
	if err != nil {
		return p, true, fmt.Errorf("step %d: acceptance probe: %w", r.state.Step, err)
	}
	return p, true, nil
}

// logStep writes the history row of the step just done (rank 0) when it is
// due — every log_every steps, the last step, and with force (acceptance
// probes, recoveries) — and prints the progress line, or the live status
// line otherwise. Rows depend only on the step, so a stopped and restarted
// run writes the same history as an uninterrupted one.
func (r *run[T]) logStep(prog *progress, res nf.StepResult, probe sample.Probe, force bool, rate float64) error {
	cfg, st := r.cfg, res.StepStats
	if r.state.Step%int64(cfg.Train.LogEvery) != 0 && r.state.Step != int64(cfg.Train.Steps) && !force {
		prog.tick(r.state.Step, st, rate)
		return nil
	}
	row := nfio.HistoryRow{Step: r.state.Step, Loss: st.Loss, ESS: st.ESS, LogqMean: st.LogqMean,
		LogpMean: st.LogpMean, GradNorm: res.GradNorm, LearningRate: r.adam.LR,
		Skipped: r.state.Skipped, WallTime: r.state.WallTime, Acceptance: probe.Acceptance,
		ProbeESS: probe.ESS, ProbeESSErr: probe.ESSErr, Recoveries: r.state.Recoveries}
	if st.ThreePass {
		row.ThreePass = 1
	}
	if err := r.hist.Append(row); err != nil {
		return err
	}
	r.state.History = append(r.state.History, row) // for the next checkpoint
	r.events.emit(Event{Event: "step", Step: r.state.Step})
	prog.line(r.state.Step, st, rate, probe)
	return nil
}

// commSummary describes the communication cost of rank 0 over n steps of
// this session: wall time per step, time in collectives per step and its
// share, and the share of the gradient allreduce alone.
func commSummary(wall, spent, grad time.Duration, n int64, ranks int) string {
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(max(n, 1)) }
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / max(wall.Seconds(), 1e-9) }
	return fmt.Sprintf("%d steps in %.3f s on %d rank(s): %.3f ms/step, communication %.3f ms/step (%.1f%%; gradient allreduce %.1f%%)",
		n, wall.Seconds(), ranks, ms(wall), ms(spent), pct(spent), pct(grad))
}

// stopRequested reports whether this rank was asked to stop after step: a
// signal has arrived (an injected one is waited for, so that the stop
// happens after this very step: signal delivery is asynchronous).
func (r *run[T]) stopRequested(step int64) bool {
	wait := time.Duration(0)
	if signalDue(r.opts.Faults, step, r.c.Rank()) {
		wait = 10 * time.Second
	}
	return stopRequested(r.opts.Stop, wait)
}

// stopRequested reports whether a stop signal has arrived, waiting for one
// up to wait.
func stopRequested(stop <-chan os.Signal, wait time.Duration) bool {
	if wait <= 0 {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	select {
	case <-stop:
		return true
	case <-time.After(wait):
		return false
	}
}

// checkpointPath is the run's checkpoint file.
func (r *run[T]) checkpointPath() string { return filepath.Join(r.outDir, "checkpoint.h5") }

// checkpoint writes the checkpoint on rank 0; every rank learns whether it
// worked.
func (r *run[T]) checkpoint() error {
	var err error
	if r.c.Rank() == 0 {
		r.state.AdamStep, r.state.M, r.state.V = r.adam.Step, r.adam.M, r.adam.V
		r.state.Config = r.cfg.Text
		path := r.checkpointPath()
		err = nfio.WriteCheckpoint(path, r.cfg.Arch(), r.flow.Params, r.state)
		if err != nil {
			err = fmt.Errorf("checkpoint of step %d not written (%s still holds the previous one): %w",
				r.state.Step, path, err)
		}
	}
	return r.c.AgreeError(err)
}

// progress prints training progress on rank 0: a line every log_every steps,
// and a live status line between them when stdout is a terminal.
type progress struct {
	w       io.Writer
	on, tty bool
	steps   int64
}

func newProgress(w io.Writer, on bool, steps, done int64) *progress {
	p := &progress{w: w, on: on, steps: steps}
	// mpirun hands rank 0 a pseudo-terminal even when its own output goes
	// to a batch log, so a launched run always prints plain lines.
	if l, err := comm.Launched(nil); err == nil && l.MPI {
		return p
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) printf(format string, args ...any) {
	if p.on {
		if p.tty {
			fmt.Fprint(p.w, "\r\033[K")
		}
		fmt.Fprintf(p.w, format, args...)
	}
}

func (p *progress) status(step int64, st nf.StepStats, rate float64) string {
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.steps-step) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("step %d/%d  loss %.4f  ESS %.4f  %.2f steps/s  ETA %s", step, p.steps, st.Loss, st.ESS, rate, eta)
}

// line prints the status of step, with the probe's acceptance rate and
// ESS when measured (not NaN).
func (p *progress) line(step int64, st nf.StepStats, rate float64, probe sample.Probe) {
	if math.IsNaN(probe.Acceptance) {
		p.printf("%s\n", p.status(step, st, rate))
		return
	}
	p.printf("%s  acceptance %.4f  probe ESS %.4f ± %.4f\n", p.status(step, st, rate), probe.Acceptance,
		probe.ESS, probe.ESSErr)
}

func (p *progress) tick(step int64, st nf.StepStats, rate float64) {
	if p.on && p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.status(step, st, rate))
	}
}
