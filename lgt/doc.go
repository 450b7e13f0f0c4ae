// Package lgt is the lattice gauge theory of the two-flavour Schwinger model:
// compact U(1) links on an L×L torus, plaquettes and 2x1 loops, the Wilson
// gauge action, the Wilson–Dirac operator with its log-determinant and
// fermion force, and the observables.
//
// Conventions (those of shared/vectors/README.md):
//   - Sites x = i·L + j, i along direction 0 and j along direction 1, with
//     periodic wrap-around; V = L·L.
//   - One configuration is 2V angles θ_μ(x) in [0, 2π), index μ·V + x; a
//     batch of B configurations is B·2V angles, configuration-major, the
//     layout of an HDF5 dataset of shape (B, 2, L, L).
//   - All functions leave their inputs unmodified and write results into
//     dst arguments supplied by the caller.
//
// lgt imports none of comm, io or app.
package lgt
