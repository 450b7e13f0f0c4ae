// Package params builds params.toml texts for tests: one builder instead of
// literal TOML copied across test files. A Params is a set of dotted keys
// ("train.steps") with their values; TOML writes it with its sections in
// the order of the documentation and the keys sorted, so the same Params
// always gives the same text.
package params

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Params maps dotted keys, "section.key", to values (int, float64, string,
// bool, []int, []float64).
type Params map[string]any

// Tiny returns the tests' small run: L = 4, 2 coupling layers with hidden
// channels [8] and dilations [1, 1], batch 12 in micro-batches of 2 (12
// splits over 1, 2, 3, 4 and 6 ranks), seed 7, a history row and a
// checkpoint after every step, out_dir "run". Set "train.steps".
func Tiny() Params {
	return Params{
		"lattice.L":      4,
		"model.n_layers": 2, "model.hidden_channels": []int{8}, "model.dilation": []int{1, 1},
		"train.batch_size": 12, "train.micro_batch": 2, "train.seed": 7,
		"train.log_every": 1, "train.checkpoint_every": 1,
		"io.out_dir": "run",
	}
}

// With returns a copy of p with the keys of kv (pairs of key, value) set; a
// nil value deletes the key.
func (p Params) With(kv ...any) Params {
	if len(kv)%2 != 0 {
		panic("params: With needs key, value pairs")
	}
	q := make(Params, len(p)+len(kv)/2)
	for k, v := range p {
		q[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok || !strings.Contains(k, ".") {
			panic(fmt.Sprintf("params: key %v is not \"section.key\"", kv[i]))
		}
		if kv[i+1] == nil {
			delete(q, k)
		} else {
			q[k] = kv[i+1]
		}
	}
	return q
}

// sectionOrder is the order of the sections in the README.
var sectionOrder = []string{"lattice", "model", "train", "io", "sample", "slurm"}

// TOML returns the params.toml text of p.
func (p Params) TOML() string {
	sections := map[string]map[string]any{}
	for k, v := range p {
		sec, key, _ := strings.Cut(k, ".")
		if sections[sec] == nil {
			sections[sec] = map[string]any{}
		}
		sections[sec][key] = v
	}
	var b bytes.Buffer
	for _, sec := range orderedSections(sections) {
		fmt.Fprintf(&b, "[%s]\n", sec)
		if err := toml.NewEncoder(&b).Encode(sections[sec]); err != nil {
			panic(fmt.Sprintf("params: [%s]: %v", sec, err))
		}
	}
	return b.String()
}

// orderedSections lists the sections of s: the known ones in the README's
// order, then any others sorted.
func orderedSections(s map[string]map[string]any) []string {
	var out, rest []string
	for _, sec := range sectionOrder {
		if s[sec] != nil {
			out = append(out, sec)
		}
	}
	for sec := range s {
		if !slices.Contains(sectionOrder, sec) {
			rest = append(rest, sec)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}
