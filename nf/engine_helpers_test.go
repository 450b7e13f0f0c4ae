package nf

import "testing"

// reflow returns a flow of f's architecture and tape mode on eng with a
// copy of f's parameters, closed at the end of the test; the error is
// NewFlowOn's.
func reflow[T Float](t testing.TB, f *Flow[T], eng Engine[T]) (*Flow[T], error) {
	t.Helper()
	g, err := NewFlowOn(f.Arch, eng)
	if err != nil {
		return nil, err
	}
	copy(g.Params.Data, f.Params.Data)
	g.SetRecompute(f.Recompute())
	t.Cleanup(g.Close)
	return g, nil
}

// mustReflow is reflow that fails the test on an error.
func mustReflow[T Float](t testing.TB, f *Flow[T], eng Engine[T]) *Flow[T] {
	t.Helper()
	g, err := reflow(t, f, eng)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// host returns the host engine of f (a test of the host's internals on
// another engine is a bug).
func host[T Float](f *Flow[T]) *hostEngine[T] { return f.eng.(*hostEngine[T]) }

// TestHostEngineBytes: the host engine's memory estimate is what its
// scratch holds after a pass of B configurations.
func TestHostEngineBytes(t *testing.T) {
	for _, B := range []int{1, 5} {
		f, err := NewFlow[float32](DefaultArch(8), CPU(1))
		if err != nil {
			t.Fatal(err)
		}
		n := B * 2 * 64
		f.Forward(make([]float32, n), make([]float32, n), make([]float64, B), B, nil)
		e := host(f)
		held := len(e.rec) + len(e.loops) + len(e.pbar) + len(e.lbar) + len(e.gbuf[0]) + len(e.gbuf[1]) + len(e.glinks)
		if got, want := f.Engine().Bytes(B), 4*held; got != want {
			t.Errorf("B = %d: Bytes = %d, the scratch holds %d", B, got, want)
		}
	}
}
