// Package sample is the neural Markov chain Monte Carlo of the trained flow:
// the Metropolis independence chain with the flow as proposal (Run, over a
// Source of proposals such as FlowSource, continued bit for bit after a
// stop), the HMC baseline on the exact action (HMC, RunHMC: the same
// chain file, one process), the acceptance probes of training
// (Acceptance), and the chain
// statistics that the program stores in chain.h5 and analyze prints
// (Summarize: acceptance, rejection runs, Γ-method means and τ_int, neural
// importance sampling and free energies, Report).
//
// Every exported function that takes a comm.Comm is collective; files are
// written by rank 0 only. sample imports comm, io, lgt and nf; only app
// imports it.
package sample
