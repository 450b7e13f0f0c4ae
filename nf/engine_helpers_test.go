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
