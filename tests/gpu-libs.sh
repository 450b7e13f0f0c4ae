#!/bin/bash
# gpu-libs.sh BINARY OUTDIR: copies BINARY and every shared library it
# loads (ldd), the dynamic loader included, into OUTDIR and OUTDIR/lib,
# each under the name the loader asks for, so that the program runs on a
# machine without Debian's libraries as
#
#   OUTDIR/lib/ld-linux-x86-64.so.2 --library-path OUTDIR/lib:... OUTDIR/BINARY
#
# (make gpu-check: nfschwinger bench on the GPU machine). CUDA's own
# libraries are not among them: the program loads those at run time, and
# they need libdl, libpthread, librt and libutil, which the binary itself
# does not link: every library of the C library's own package (glibc) is
# copied too, so that the loader never mixes this glibc with the host's
# (a host copy of another glibc version fails at load, GLIBC_PRIVATE).
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
# The rest of glibc, from the folder of the libc.so.6 that ldd found.
libc=$(ldd "$bin" | awk '$1 == "libc.so.6" { print $3 }')
glibc=$(dirname "$libc")
for name in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libutil.so.1 libresolv.so.2 libanl.so.1 libmvec.so.1; do
	if [ -e "$glibc/$name" ]; then cp -L "$glibc/$name" "$out/lib/$name"; fi
done
