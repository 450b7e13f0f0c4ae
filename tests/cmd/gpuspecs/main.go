// Command gpuspecs writes the device descriptions (nf/gpu.FlowSpec, gob)
// of the paper's flows at L = 8, 16 and 24 (48 layers, [64, 64]) for the
// device check's BenchmarkFlowStep, which cannot build them itself: the
// masks come from nf, and the device check's binaries build without cgo.
//
//	go run ./tests/cmd/gpuspecs OUT.gob
package main

import (
	"encoding/gob"
	"fmt"
	"os"

	"nfschwinger/nf"
	"nfschwinger/nf/device"
	"nfschwinger/nf/gpu"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gpuspecs OUT.gob")
		os.Exit(2)
	}
	var specs []gpu.FlowSpec
	for _, L := range []int{8, 16, 24} {
		a := nf.DefaultArch(L)
		if err := a.CheckFlow(); err != nil {
			fmt.Fprintln(os.Stderr, "gpuspecs:", err)
			os.Exit(1)
		}
		specs = append(specs, device.Spec(a, false))
	}
	out, err := os.Create(os.Args[1])
	if err == nil {
		err = gob.NewEncoder(out).Encode(specs)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpuspecs:", err)
		os.Exit(1)
	}
}
