package nf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// streamKey is the ChaCha8 key of the stream (seed, domain, step, index).
func streamKey(seed uint64, domain uint32, step, index uint64) [32]byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], step)
	binary.LittleEndian.PutUint64(key[16:], index)
	binary.LittleEndian.PutUint32(key[24:], domain)
	binary.LittleEndian.PutUint32(key[28:], 0x6e667363) // "nfsc"
	return key
}

// Stream returns the random stream of one prior sample: a ChaCha8 generator
// keyed by (seed, step, index), where index is the sample's global index in
// the batch of that step (or a proposal index when sampling). The same key
// gives the same numbers whatever the micro-batch size or the number of
// ranks, so a run needs no generator state beyond the step counter. domain
// separates independent uses of one seed (training, sampling, ...).
func Stream(seed uint64, domain uint32, step, index uint64) *rand.Rand {
	return rand.New(rand.NewChaCha8(streamKey(seed, domain, step, index)))
}

// Streams hands out the streams of Stream without allocating: the one
// generator it owns is re-keyed on every call, so the *rand.Rand returned
// is valid until the next call. Not safe for concurrent use.
type Streams struct {
	src *rand.ChaCha8
	r   *rand.Rand
}

// NewStreams returns a Streams.
func NewStreams() *Streams {
	src := rand.NewChaCha8([32]byte{})
	return &Streams{src: src, r: rand.New(src)}
}

// Stream returns the stream of Stream(seed, domain, step, index).
func (s *Streams) Stream(seed uint64, domain uint32, step, index uint64) *rand.Rand {
	s.src.Seed(streamKey(seed, domain, step, index))
	return s.r
}

// Random-stream domains of Stream.
const (
	DomainTrain  uint32 = 1 // prior samples of training steps
	DomainSample uint32 = 2 // proposals of the NMCMC sampler
	DomainAccept uint32 = 3 // accept/reject uniforms of the sampler
	DomainProbe  uint32 = 4 // acceptance probes during training
	DomainInit   uint32 = 5 // network initialization
	DomainHMC    uint32 = 6 // momenta and accept uniforms of the HMC baseline (package sample)
)

// SamplePrior fills z (len B·2V) with independent uniform angles in
// [0, 2π): configuration b is drawn from Stream(seed, domain, step,
// first+b), so the draw of a sample does not depend on the batch split.
func SamplePrior[T Float](z []T, B int, seed uint64, domain uint32, step, first uint64) {
	samplePrior(NewStreams(), z, B, seed, domain, step, first)
}

// SamplePriorWith is SamplePrior drawing from s, without allocating.
func SamplePriorWith[T Float](s *Streams, z []T, B int, seed uint64, domain uint32, step, first uint64) {
	samplePrior(s, z, B, seed, domain, step, first)
}

func samplePrior[T Float](s *Streams, z []T, B int, seed uint64, domain uint32, step, first uint64) {
	n := len(z) / B
	for b := 0; b < B; b++ {
		r := s.Stream(seed, domain, step, first+uint64(b))
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
