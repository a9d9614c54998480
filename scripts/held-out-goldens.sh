#!/usr/bin/env bash
# Golden sets for the reference scripts' held-out configurations (tiny-b, aligner-b) and one
# shape of our own (tiny-c, below), so the conformance tests can run on shapes the engine was
# not developed against:
#
#   npm run golden:held-out [-- OUT]            # default OUT: .bench/golden-extra
#   QWEN3_ASR_GOLDEN_EXTRA=.bench/golden-extra npm test
#
# tiny-b: untied head, 3+3 layers, 8 query / 2 kv heads of width 8, query width 64 != hidden 48,
# rope_theta 5e6. aligner-b: audio d_model 40 != text hidden 48, 5 audio heads, same text shapes.
# The checkpoints and goldens come from ../shared/golden/qwen3_*_reference.py (the official
# math re-implemented in PyTorch); tiny-a and aligner-a regenerate byte for byte with them.
# This is test data generation only: the engine itself never runs Python. Needs a python3 with
# torch and numpy (Debian: apt-get install python3-torch python3-numpy) and sox for the MP3 case.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
shared=${QWEN3_ASR_SHARED:-$repo/../shared}
golden=$(cd "$shared/golden" && pwd)
out=${1:-$repo/.bench/golden-extra}

source "$here/reference-python.sh"
command -v sox >/dev/null || { echo "held-out-goldens: sox is needed for the MP3 case (apt-get install sox)" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/tiny-b" "$out/aligner-b" "$out/tiny-c"

asr="$python $golden/qwen3_asr_reference.py"
aligner="$python $golden/qwen3_aligner_reference.py"

$asr make-checkpoint --name tiny-b --tokenizer-dir "$golden/tiny-a/checkpoint" --out "$out/tiny-b/checkpoint"
cp -r "$golden/tiny-a/audio" "$out/tiny-b/audio"
chmod -R u+w "$out/tiny-b/audio"
$asr golden --snapshot "$out/tiny-b/checkpoint" --audio "$out/tiny-b/audio" --out "$out/tiny-b"

$aligner make-checkpoint --name aligner-b --tokenizer-dir "$golden/aligner-a/checkpoint" --out "$out/aligner-b/checkpoint"
cp -r "$golden/aligner-a/audio" "$out/aligner-b/audio"
chmod -R u+w "$out/aligner-b/audio"
$aligner golden --snapshot "$out/aligner-b/checkpoint" \
  --audio "$out/tiny-b/audio" --audio "$out/aligner-b/audio" --audio "$shared/audio" \
  --asr-golden "$out/tiny-b" --asr-case de_7s__context \
  --korean-dict "$golden/aligner-a/assets/korean_dict_jieba.dict" --out "$out/aligner-b"

# tiny-c: shapes of our own choosing, no released model's: every query head with its own kv
# head (5 of width 12), query width 60 and audio width 36 against hidden 40, 1+1 layers,
# rope_theta 1e4, encoder windows of 4 s (n_window_infer 400). Random weights from
# make-checkpoint --config, goldens from the reference.
mkdir -p "$out/tiny-c"
node -e '
  const fs = require("fs");
  const cfg = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const t = cfg.thinker_config.text_config, a = cfg.thinker_config.audio_config;
  Object.assign(t, { hidden_size: 40, num_hidden_layers: 1, num_attention_heads: 5, num_key_value_heads: 5, head_dim: 12, intermediate_size: 72, rope_theta: 10000 });
  t.rope_scaling.mrope_section = [2, 2, 2];
  Object.assign(a, { d_model: 36, encoder_layers: 1, num_hidden_layers: 1, encoder_attention_heads: 3, encoder_ffn_dim: 56, downsample_hidden_size: 8, output_dim: 40, n_window_infer: 400 });
  fs.writeFileSync(process.argv[2], JSON.stringify(cfg, null, 2) + "\n");
' "$golden/tiny-a/checkpoint/config.json" "$out/tiny-c/config.json"
(cd "$repo" && npm run --silent make-checkpoint -- --config "$out/tiny-c/config.json" --out "$out/tiny-c/checkpoint" --seed 7 >/dev/null)
rm "$out/tiny-c/config.json"
cp -r "$golden/tiny-a/audio" "$out/tiny-c/audio"
chmod -R u+w "$out/tiny-c/audio"
$asr golden --snapshot "$out/tiny-c/checkpoint" --audio "$out/tiny-c/audio" --out "$out/tiny-c"

echo "held-out golden sets in $out: run QWEN3_ASR_GOLDEN_EXTRA=$out npm test"
