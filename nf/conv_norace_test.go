//go:build !race

package nf

// convRace is true under the race detector (see conv_race_test.go).
const convRace = false
