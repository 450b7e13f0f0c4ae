// Package stats holds the statistics of Monte Carlo time series used by the
// sampler and `nfschwinger analyze`: the Γ-method of Wolff for the error of
// the mean of an autocorrelated series with automatic windowing
// (GammaMethod), the bootstrap for functions of independent samples
// (Bootstrap), and moving averages for noisy training curves
// (MovingAverage).
//
// Inputs are never modified. Random numbers come from a *rand.Rand passed
// in by the caller, so results are reproducible for a fixed seed.
package stats
