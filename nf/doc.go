// Package nf is the normalizing flow: the gauge-equivariant coupling layers
// with circular rational-quadratic splines of the paper's Appendix A, their
// convolutional conditioners, hand-written backward passes, the gradient
// estimators and the Adam optimizer.
//
// Where things live:
//   - Flow, Tape, coupling layers, Conv2D, splines: the flow and its passes,
//     on a Backend (CPU: OpenBLAS GEMMs split over Go workers).
//   - Arch: the architecture and the model rules (Validate, ArchError).
//   - Density: draw proposals from the keyed prior streams and evaluate
//     log q of given links — for sampling, acceptance probes and measure.
//   - Trainer: one rank's share of a step's gradient (REINFORCE three- or
//     four-pass, r.t., path); Stepper: the whole data-parallel step
//     (gradient, allreduce, clipping, Adam on rank 0, broadcast, agreement
//     on skip and stop) over the Ranks interface, which comm.Comm
//     satisfies; Single for one process.
//   - Metropolis, RejectionRuns, ESS: the independence sampler's pieces.
//
// Conventions:
//   - Links of a micro-batch of B configurations are B·2V angles in [0, 2π),
//     configuration-major, index b·2V + μ·V + x with x = i·L + j (the layout
//     of package lgt and of HDF5 datasets of shape (B, 2, L, L)).
//   - Activations of the conditioner are channel-major with the batch
//     inside: a [C][B·V] array, index c·B·V + b·V + x, so a convolution over
//     a micro-batch is one GEMM. On the oneDNN engine (OneDNN) the
//     hidden activations between the convolutions are NHWC instead,
//     [B·V][C], index (b·V + x)·C + c; the conditioner input and the raw
//     spline parameters keep their layouts.
//   - T is float32 (default) or float64; log J and everything summed over the
//     lattice is accumulated in float64.
//   - Backward passes add into gradient buffers; callers zero them.
//
// nf imports lgt for the lattice geometry and never imports comm, io or app.
package nf
