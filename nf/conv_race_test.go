//go:build race

package nf

// convRace is true under the race detector, which empties sync.Pool at
// random and so makes allocation counts meaningless.
const convRace = true
