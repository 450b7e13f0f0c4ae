#!/bin/bash
# gpu-libs.sh BINARY OUTDIR: copies BINARY and every shared library it
# loads (ldd), the dynamic loader included, into OUTDIR and OUTDIR/lib,
# each under the name the loader asks for, so that the program runs on a
# machine without Debian's libraries as
#
#   OUTDIR/lib/ld-linux-x86-64.so.2 --library-path OUTDIR/lib:... OUTDIR/BINARY
#
# (make gpu-check: nfschwinger bench on the GPU machine). CUDA's own
# libraries are not among them: the program loads those at run time.
set -eu
bin=$1
out=$2
mkdir -p "$out/lib"
cp -L "$bin" "$out/"
ldd "$bin" | while read -r name arrow path _; do
	case $name in linux-vdso.so.*) continue ;; esac
	if [ "$arrow" != "=>" ]; then # the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
		path=$name
		name=$(basename "$name")
	fi
	cp -L "$path" "$out/lib/$name"
done
