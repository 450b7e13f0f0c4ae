//go:build !race

package sample

// raceDetector is true under the race detector (see race_test.go).
const raceDetector = false
