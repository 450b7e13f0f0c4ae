package nf

import "testing"

func TestNativeBF16(t *testing.T) {
	for impl, want := range map[string]bool{
		"jit_bf16:avx512_core_bf16": true, // AVX512-BF16 (Zen 4, Cooper Lake)
		"brg:avx512_core_amx":       true,
		"jit:avx512_core_amx_bf16":  true,
		"jit_bf16:avx512_core":      false, // emulated
		"brgconv:avx512_core":       false,
		"ref:any":                   false,
		"jit:avx2":                  false,
		"bf16_without_an_isa":       false,
	} {
		if got := NativeBF16(impl); got != want {
			t.Errorf("NativeBF16(%q) = %v, want %v", impl, got, want)
		}
	}
}
