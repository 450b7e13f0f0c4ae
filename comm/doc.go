// Package comm is the communicator of a data-parallel nfschwinger run: the
// ranks of an MPI job (or the single process of a run without a launcher),
// with the few collective operations the training needs.
//
// # Implementations
//
// [Single] is the communicator of one process; it makes no MPI call at all.
// [Init] returns an MPI communicator over MPI_COMM_WORLD when the process
// was started by a launcher (mpirun, mpiexec, srun; see [Launched]) and
// [Single] otherwise, so the same binary runs with and without a launcher.
// The environment variable NFSCHWINGER_COMM overrides the detection:
// "single" never initialises MPI, "mpi" always does (without a launcher
// Open MPI then runs a singleton job of one rank).
//
// The MPI implementation is built on github.com/sbromberger/gompi (world
// communicator, rank, size, barrier, float broadcasts, abort). What gompi
// v0.2.0 lacks or gets wrong is a few lines of cgo in this package:
// MPI_Init_thread, in-place allreduce (MPI_IN_PLACE, no scratch copy of
// the gradient), the node-local communicator (MPI_Comm_split_type with
// MPI_COMM_TYPE_SHARED) and byte broadcasts (gompi's BcastBytes sends
// len(buf) 4-byte integers). Only this package imports MPI. Building with
// the tag nompi leaves MPI out entirely; Init then refuses to run under a
// launcher.
//
// # Collectives
//
// Every method documented as collective must be called by all ranks, in
// the same order, with buffers of the same length (and the same root). The
// buffers are modified in place; nothing is retained after the call.
// Reductions are deterministic for a fixed number of ranks and buffer
// length (Open MPI chooses its algorithm, and so the summation order, from
// those alone, never from timing), so a run is reproducible bit for bit;
// with another number of ranks sums agree only to rounding. Calls from several goroutines are serialised by a mutex
// (MPI is initialised with MPI_THREAD_SERIALIZED), but two goroutines
// issuing collectives concurrently would still pair them differently on
// different ranks: issue collectives from one goroutine.
//
// # Failures
//
// A rank that fails must not leave the others waiting in a collective.
// Two tools cover the two kinds of failure:
//
//   - Errors every rank can reach at the same point (configuration,
//     checkpoint reading, file writing on rank 0): call [Comm.AgreeError]
//     there. It is collective; every rank learns whether any rank failed
//     and gets one error naming the failing ranks with their messages, so
//     all ranks return normally and the program exits with the status its
//     command layer chooses (for example 2 for bad input), printed once on
//     rank 0.
//   - Anything else (an error deep in a training step on one rank, a
//     panic): run the rank's work under [Comm.Guard]. On more than one rank
//     a failure prints "rank R: message" to stderr and ends the whole job
//     with MPI_Abort; on one rank Guard returns the error (a panic becomes a
//     [*PanicError]) and the caller maps it to an exit status as usual.
//
// A process that dies outside Guard (a panic in another goroutine, a
// signal) also ends the job: mpirun kills the remaining ranks when one
// exits without MPI_Finalize; under Slurm use srun --kill-on-bad-exit=1
// (the sbatch templates should). Open MPI's own handlers for SIGSEGV,
// SIGBUS, SIGFPE and SIGILL are switched off before MPI_Init
// (OMPI_MCA_opal_signal is set to empty unless the user set it), so the Go
// runtime keeps them and a nil dereference stays a panic Guard can report;
// Open MPI 4.1 already leaves existing handlers alone, this guards other
// builds.
package comm
