#!/usr/bin/env bash
# Golden outputs of the official math for full-size random checkpoints, so the conformance tests
# can check the engine at the real models' widths (0.6B: query width 2048 against hidden 1024,
# 14 encoder heads of 64; 1.7B: hidden 2048; the aligner's 5,000-class head):
#
#   npm run golden:full-size -- --size 0.6b|1.7b|aligner [--cases en_3s,long_40s] [--out DIR]
#   QWEN3_ASR_GOLDEN_EXTRA=.bench/golden-full npm test
#
# The checkpoint is the one `npm run make-checkpoint` writes into .bench/qwen3-asr-<size> (made
# here when missing; the bench uses the same folders). The reference scripts beside
# ../shared/golden/README.md (the official math in PyTorch, one thread) then run the chosen
# audio cases: about a minute per ASR case of en_3s on 0.6B, six per long_40s case; every
# case in the ASR goldens comes in three prompt variants. Test data only: the engine never runs
# Python. Needs a python3 with torch and numpy (Debian: apt-get install python3-torch
# python3-numpy) and, for the en_3s_mp3 case, sox.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
shared=${QWEN3_ASR_SHARED:-$repo/../shared}
golden=$(cd "$shared/golden" && pwd)

size=''
cases=''
out=''
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=${2:-}; shift 2 ;;
    --cases) cases=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    *) echo "full-size-goldens: unknown argument $1 (usage: --size 0.6b|1.7b|aligner [--cases a,b] [--out DIR])" >&2; exit 2 ;;
  esac
done
case "$size" in
  0.6b | 1.7b) name=qwen3-asr-$size; kind=asr; cases=${cases:-en_3s} ;;
  aligner) name=qwen3-forced-aligner; kind=aligner; cases=${cases:-en_3s,zh_8s,jfk} ;;
  *) echo "full-size-goldens: --size must be 0.6b, 1.7b or aligner" >&2; exit 2 ;;
esac
checkpoint=$repo/.bench/qwen3-asr-$size
out=${out:-$repo/.bench/golden-full}/$name

source "$here/reference-python.sh"

if [ ! -f "$checkpoint/config.json" ]; then
  (cd "$repo" && npm run --silent make-checkpoint -- --size "$size" --out "$checkpoint")
fi

rm -rf "$out"
mkdir -p "$out"
ln -s "$checkpoint" "$out/checkpoint"
cp -r "$golden/tiny-a/audio" "$out/audio"
chmod -R u+w "$out/audio"

# The reference scripts' golden writers, restricted to the chosen audio cases.
cd "$out"
"$python" - "$golden" "$kind" "$cases" "$shared/audio" <<'PY'
import importlib.util, sys
golden, kind, cases, shared_audio = sys.argv[1:5]
keep = cases.split(",")
sys.path.insert(0, golden)
def load(name, file):
    spec = importlib.util.spec_from_file_location(name, golden + "/" + file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
if kind == "asr":
    ref = load("qwen3_asr_reference", "qwen3_asr_reference.py")
    known = [c[0] for c in ref.AUDIO_CASES]
    ref.AUDIO_CASES = [c for c in ref.AUDIO_CASES if c[0] in keep]
    if len(ref.AUDIO_CASES) != len(keep):
        sys.exit("unknown case in %s; known: %s" % (cases, ", ".join(known)))
    ref.run_golden("checkpoint", "audio", ".")
else:
    ref = load("qwen3_aligner_reference", "qwen3_aligner_reference.py")
    known = [c[0] for c in ref.ALIGN_CASES]
    ref.ALIGN_CASES = [c for c in ref.ALIGN_CASES if c[0] in keep]
    if len(ref.ALIGN_CASES) != len(keep):
        sys.exit("unknown case in %s; known: %s" % (cases, ", ".join(known)))
    ref.write_golden("checkpoint", ".", ["audio", golden + "/aligner-a/audio", shared_audio], None, None,
                     golden + "/aligner-a/assets/korean_dict_jieba.dict")
PY
echo "full-size golden set in $out: run QWEN3_ASR_GOLDEN_EXTRA=$(dirname "$out") npm test"
