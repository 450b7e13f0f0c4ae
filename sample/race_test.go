//go:build race

package sample

// raceDetector is true under the race detector, which slows the numerics
// of a flow's training tenfold.
const raceDetector = true
