package nf

// OneDNNAnyBF16 is OneDNN with bf16 also where oneDNN emulates it: the
// parity suite (package nf_test) checks bf16's numbers, not its speed.
func OneDNNAnyBF16[T Float](be Backend) Engine[T] {
	return oneDNN[T](be, DNNLOptions{BF16: true}, false)
}
