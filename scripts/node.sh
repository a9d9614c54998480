#!/bin/sh
# Runs node as the service, the CLI and the benchmarks run it: with glibc's malloc asked to
# back its large allocations with transparent huge pages (2 MB pages instead of 4 kB).
#
# Why: the first touch of fresh memory is slow on virtual machines (a page fault every 4 kB),
# and ONNX Runtime allocates and fills gigabytes of it at load: it repacks every W8A8 weight
# matrix for its integer kernels, which is most of the time creating the 1.7B decoder's session
# takes. With huge pages the cached 1.7B int8 decoder's session is created in about 3 s against
# about 4 s without (on an AMD EPYC Zen 5 VM, 2 vCPUs; src/engine/runtime/huge-pages.ts says
# more, and docs/benchmarks.md has the measurements), and the first full-length audio-encoder run after a
# load (fresh activation memory) is faster; later runs, which reuse ONNX Runtime's memory, and
# decoding are no faster or slower.
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
# exec: node takes this shell's place, so a signal sent to the process that was started (by npm,
# whose `start` script execs this one too, or by a container runtime) reaches node itself and
# its graceful shutdown; a shell left in between would die of SIGTERM and leave node running.
exec node "$@"
