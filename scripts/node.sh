#!/bin/sh
# Runs node as the service, the CLI and the benchmarks run it: with glibc's malloc asked to
# back its large allocations with transparent huge pages (2 MB pages instead of 4 kB).
#
# Why: the first touch of fresh memory is slow on the VMs this project is measured on (600 MB
# took 1.75 s, a page fault every 4 kB), and ONNX Runtime allocates and fills gigabytes of it at
# load: it repacks every W8A8 weight matrix for its integer kernels, 5-6 s of the 1.7B decoder
# session's 6-7.6 s of creation. With huge pages (src/engine/runtime/huge-pages.ts has the figures)
# cached 1.7B int8 loads took 6.4-7.4 s against 10.5-12.6 s, and the first full-length run of
# the audio encoder after a load (fresh activation memory) ran 19-38% faster; later runs, which
# reuse ONNX Runtime's memory, and decoding were no faster or slower.
#
# The setting is glibc's `glibc.malloc.hugetlb=1` tunable (glibc 2.35 and later): malloc then
# madvises its memory for huge pages, which Linux grants where transparent huge pages are
# `always` or `madvise` (/sys/kernel/mm/transparent_hugepage/enabled). It must be in the
# environment when the process starts, hence this script. It is added to GLIBC_TUNABLES unless
# that already names glibc.malloc.hugetlb (GLIBC_TUNABLES=glibc.malloc.hugetlb=0 turns it off);
# other C libraries (musl) and other systems ignore it.
case ":${GLIBC_TUNABLES-}:" in
  *:glibc.malloc.hugetlb=*) ;;
  *)
    GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1"
    export GLIBC_TUNABLES
    ;;
esac
exec node "$@"
