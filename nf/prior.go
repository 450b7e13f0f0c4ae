package nf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// Stream returns the random stream of one prior sample: a ChaCha8 generator
// keyed by (seed, step, index), where index is the sample's global index in
// the batch of that step (or a proposal index when sampling). The same key
// gives the same numbers whatever the micro-batch size or the number of
// ranks, so a run needs no generator state beyond the step counter. domain
// separates independent uses of one seed (training, sampling, ...).
func Stream(seed uint64, domain uint32, step, index uint64) *rand.Rand {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], step)
	binary.LittleEndian.PutUint64(key[16:], index)
	binary.LittleEndian.PutUint32(key[24:], domain)
	binary.LittleEndian.PutUint32(key[28:], 0x6e667363) // "nfsc"
	return rand.New(rand.NewChaCha8(key))
}

// Random-stream domains of Stream.
const (
	DomainTrain  uint32 = 1 // prior samples of training steps
	DomainSample uint32 = 2 // proposals of the NMCMC sampler
	DomainAccept uint32 = 3 // accept/reject uniforms of the sampler
	DomainProbe  uint32 = 4 // acceptance probes during training
	DomainInit   uint32 = 5 // network initialization
)

// SamplePrior fills z (len B·2V) with independent uniform angles in
// [0, 2π): configuration b is drawn from Stream(seed, domain, step,
// first+b), so the draw of a sample does not depend on the batch split.
func SamplePrior[T Float](z []T, B int, seed uint64, domain uint32, step, first uint64) {
	n := len(z) / B
	for b := 0; b < B; b++ {
		r := Stream(seed, domain, step, first+uint64(b))
		zb := z[b*n : (b+1)*n]
		for i := range zb {
			v := T(2 * math.Pi * r.Float64())
			if float64(v) >= 2*math.Pi { // float32 rounding up to 2π
				v = 0
			}
			zb[i] = v
		}
	}
}
