package gpu

import (
	"fmt"

	"nfschwinger/internal/cuda"
)

// Conditioner is one coupling layer's conditioner on the device: circular
// convolutions from Channels[0] to Channels[len−1] channels with
// LeakyReLU after all but the last, as nf's conditioner (nf/coupling.go):
// the last convolution at the layer's active sites only (Sites), its
// output — the raw spline parameters — compact, [C_out][B·nA].
// Activations are nf's channel-major [C][B·V] arrays of T in device
// memory. Not safe for concurrent use.
type Conditioner[T Float] struct {
	Channels []int
	convs    []*Conv[T]
	slope    T
	k        *Kernels
	gbuf     [2]cuda.DevicePtr // ping-pong gradients, maxC·N each
	gbytes   int
}

// NewConditioner returns the conditioner of the channels ch, kernel size
// kernel and dilations dil (one per convolution) with LeakyReLU slope
// slope (> 0) between the convolutions.
func NewConditioner[T Float](k *Kernels, ch []int, kernel int, dil []int, slope float64) *Conditioner[T] {
	if len(dil) != len(ch)-1 || slope <= 0 {
		panic(fmt.Sprintf("gpu: NewConditioner: %d channels, %d dilations, slope %v", len(ch), len(dil), slope))
	}
	c := &Conditioner[T]{Channels: append([]int(nil), ch...), slope: T(slope), k: k}
	for j := range dil {
		c.convs = append(c.convs, NewConv[T](k, ch[j], ch[j+1], kernel, dil[j]))
	}
	return c
}

// Close frees the device memory of the conditioner.
func (c *Conditioner[T]) Close() {
	for _, cv := range c.convs {
		cv.Close()
	}
	c.freeGrads()
}

// freeGrads frees the gradient buffers.
func (c *Conditioner[T]) freeGrads() {
	for i, p := range c.gbuf {
		if p != 0 {
			c.k.d.Free(p)
			c.gbuf[i] = 0
		}
	}
	c.gbytes = 0
}

func (c *Conditioner[T]) checkArgs(name string, acts, w, b []cuda.DevicePtr) {
	if len(acts) != len(c.Channels) || len(w) != len(c.convs) || len(b) != len(c.convs) {
		panic(fmt.Sprintf("gpu: Conditioner.%s: %d activations, %d weights, %d biases for %d convolutions", name, len(acts), len(w), len(b), len(c.convs)))
	}
}

// Forward writes acts[j+1] = LeakyReLU(conv_j(acts[j])) for every
// convolution j (no activation after the last, which runs at the sites),
// with weights w[j] and biases b[j], over B configurations of L×L.
func (c *Conditioner[T]) Forward(acts, w, b []cuda.DevicePtr, B, L int, sites *Sites) error {
	c.checkArgs("Forward", acts, w, b)
	N := B * L * L
	p := c.convs[0].prec()
	last := len(c.convs) - 1
	for j, cv := range c.convs {
		if j == last {
			return cv.ForwardSites(acts[j+1], acts[j], w[j], b[j], B, L, sites)
		}
		if err := cv.Forward(acts[j+1], acts[j], w[j], b[j], B, L); err != nil {
			return err
		}
		n := c.Channels[j+1] * N
		if err := cuda.Launch(c.k.leaky[p], grid(n), block, acts[j+1], c.slope, int64(n)); err != nil {
			return err
		}
	}
	return nil
}

// Backward propagates gout, the gradient of the raw spline parameters
// (compact, [C_out][B·nA], not modified), back through the convolutions
// recorded in acts: it ADDS the parameter gradients into gw[j], gb[j] and
// WRITES the gradient of acts[0] into gin (skipped when gin is 0).
func (c *Conditioner[T]) Backward(gin, gout cuda.DevicePtr, acts, w, gw, gb []cuda.DevicePtr, B, L int, sites *Sites) error {
	c.checkArgs("Backward", acts, w, gw)
	if len(gb) != len(c.convs) {
		panic("gpu: Conditioner.Backward: bias gradients")
	}
	N := B * L * L
	maxC := 0
	for _, ch := range c.Channels {
		maxC = max(maxC, ch)
	}
	if need := maxC * N * size[T](); need > c.gbytes {
		c.freeGrads()
		for i := range c.gbuf {
			p, err := c.k.d.Alloc(need)
			if err != nil {
				return fmt.Errorf("gpu: conditioner gradients of %d bytes: %w: %w", need, ErrOutOfMemory, err)
			}
			c.gbuf[i] = p
		}
		c.gbytes = need
	}
	p := c.convs[0].prec()
	cur := gout
	for j := len(c.convs) - 1; j >= 0; j-- {
		dst := c.gbuf[j%2]
		if j == 0 {
			dst = gin
		}
		var err error
		if j == len(c.convs)-1 {
			err = c.convs[j].BackwardSites(dst, cur, acts[j], w[j], gw[j], gb[j], B, L, sites)
		} else {
			err = c.convs[j].Backward(dst, cur, acts[j], w[j], gw[j], gb[j], B, L)
		}
		if err != nil {
			return err
		}
		if j == 0 {
			break
		}
		n := c.Channels[j] * N
		if err := cuda.Launch(c.k.leakyBwd[p], grid(n), block, dst, acts[j], c.slope, int64(n)); err != nil {
			return err
		}
		cur = dst
	}
	return nil
}
