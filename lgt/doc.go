// Package lgt is the lattice gauge theory of the two-flavour Schwinger model:
// compact U(1) links on an L×L torus, plaquettes and 2x1 loops, the Wilson
// gauge action, the Wilson–Dirac operator with its log-determinant and
// fermion force, and the observables.
//
// Conventions (those of shared/vectors/README.md, which is binding):
//   - Sites x = i·L + j, i along direction 0 and j along direction 1, with
//     periodic wrap-around; V = L·L. L must be even (Params.Validate).
//   - One configuration is 2V angles θ_μ(x) in [0, 2π), index μ·V + x; a
//     batch of B configurations is B·2V angles, configuration-major, the
//     layout of an HDF5 dataset of shape (B, 2, L, L). Angles outside
//     [0, 2π) are accepted (everything is 2π-periodic); NaN or Inf are
//     reported as ErrNonFinite.
//   - Plaquette P(x) = θ₀(x) + θ₁(x+0̂) − θ₀(x+1̂) − θ₁(x); gauge action
//     S_G = −β Σ_x cos P(x); topological charge Σ_x wrap(P(x))/2π with
//     wrap into [−π, π).
//   - Dirac operator D = 1 − κH on 2V components, index 2·x + spin, with
//     the hop blocks H(x+μ̂, x) = b (1 + σ_μ) e^{−iθ_μ(x)} and
//     H(x, x+μ̂) = b (1 − σ_μ) e^{+iθ_μ(x)}, σ_0 = σ₁, σ_1 = σ₂, and b = −1
//     on the links of direction 0 that wrap around the lattice (fermions
//     antiperiodic in direction 0, periodic in direction 1), else b = 1.
//     D is σ₃-hermitian (σ₃ D σ₃ = D†), so det D is real.
//   - Fermion action S_F = −2 log|det D| (two degenerate flavours,
//     −log det D†D); total action S = S_G + S_F; the force is dS/dθ_μ(x),
//     same layout as the links.
//   - Condensate Re Tr D⁻¹ / V; SignDetD the sign of the real det D.
//   - All functions leave their inputs unmodified and write results into
//     dst (or force) arguments supplied by the caller. Slices of the wrong
//     length are programming errors and panic with "lgt: ..."; numerical
//     trouble (a singular D, non-finite input) is a returned error.
//
// Algorithms. log|det D| uses the even–odd reduction
// det D = det(1 − κ² H_oe H_eo), a factorization of order V instead of 2V (8×
// fewer flops); the force −2 Re Tr(D⁻¹ ∂D/∂θ) and the condensate need only the
// neighbour and diagonal 2×2 blocks of D⁻¹, which come from the inverse of
// the Schur complement and sparse hops (see Evaluator). The dense
// reference (Evaluator.LogDetDense, Evaluator.MeasureDense) factorizes the
// whole matrix, for tests and benchmarks. D is σ₃-hermitian, so A = σ₃S
// is hermitian: the Schur complement is factorized by Bunch–Kaufman
// (zhetrf, half the flops of an LU; det A is real, so is det D) and inverted
// by zhetri2. Measured against an LU (zgetrf) with zgetri, or with zgetrs
// against the identity, it is as fast at L ≤ 16 and 1.6× faster at L = 24
// (BenchmarkActionForce); the LU variants stay as tested alternatives. All
// of it is OpenBLAS, called through LAPACKE's column-major *_work
// functions, so that LAPACKE neither transposes nor allocates.
//
// Threads. A Pool evaluates one configuration per goroutine, each with its
// own Evaluator, so OpenBLAS must not start threads of its own inside those
// calls (oversubscription, and its serialization of concurrent threaded
// calls). During every Pool call lgt sets OpenBLAS to one thread per call
// (openblas_set_num_threads, process-wide) and restores the previous
// setting when the last concurrent Pool call returns; this also makes Pool
// results bit-for-bit independent of the number of workers. A lone
// Evaluator uses whatever OpenBLAS is set to (SetBLASThreads,
// OPENBLAS_NUM_THREADS). Callers that run other threaded OpenBLAS work
// concurrently with a Pool call get it single-threaded for that time.
//
// lgt imports none of comm, io or app.
package lgt
