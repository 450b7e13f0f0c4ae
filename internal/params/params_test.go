package params

import (
	"testing"

	nfio "nfschwinger/io"
)

// TestTinyParses: the text of Tiny (and of a copy with changes) is a valid
// params.toml that reads back the values set, and With leaves its receiver
// alone.
func TestTinyParses(t *testing.T) {
	base := Tiny().With("train.steps", 3)
	p := base.With("model.precision", "float64", "sample.n_samples", 40, "train.micro_batch", nil)
	c, err := nfio.Parse(p.TOML())
	if err != nil {
		t.Fatalf("%v\n%s", err, p.TOML())
	}
	if c.Lat.L != 4 || c.Model.NLayers != 2 || c.Model.Precision != "float64" || c.Train.Steps != 3 ||
		c.Train.MicroBatch != 12 || c.Sample.NSamples != 40 || c.IO.OutDir != "run" {
		t.Errorf("parsed %+v from\n%s", c, p.TOML())
	}
	if _, ok := base["model.precision"]; ok || base["train.micro_batch"] != 2 {
		t.Error("With changed its receiver")
	}
	if p.TOML() != p.TOML() {
		t.Error("TOML is not deterministic")
	}
}
