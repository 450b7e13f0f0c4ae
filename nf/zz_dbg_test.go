package nf

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestZZDbg(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 41))
	_, r64 := extremeRaw32(rng, 1, 60, "random-signs")
	for {
		_, r64 = extremeRaw32(rng, 8, 60, "random-signs")
		sp := loadSite(r64, 8)
		graw := make([]float64, 25)
		for _, x := range []float64{3.1415927410125732, 6.283185482025146} {
			g, _, _ := sp.forward(x)
			xb, _ := sp.inverse(g)
			gu := sp.backwardInverse(xb, 0.75, -1.25, graw, 1, 0)
			if gu != gu {
				k := searchBin(sp.x[:], 8, xb)
				b := sp.bin(k)
				_, ld := b.eval(xb)
				fmt.Printf("x %v g %v xb %v k %d bin %+v logd %v dlogdx %v\n", x, g, xb, k, b, ld, b.dlogdx(xb))
				return
			}
		}
	}
}
