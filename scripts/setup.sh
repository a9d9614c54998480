#!/usr/bin/env bash
# One-step set-up on a fresh machine: installs the npm dependencies (the CPU build of
# ONNX Runtime ships inside onnxruntime-node; its install script would download CUDA
# libraries, which CPU machines neither need nor can always reach, so it is skipped), and,
# where we may, ffmpeg, which widens the audio formats decoded natively and lets the tests
# cover the ffmpeg path. Without ffmpeg the embedded decoder handles every format.
#
#   QWEN3_ASR_NO_FFMPEG=1   skip the ffmpeg step
#   QWEN3_ASR_NO_CHROMIUM=1 skip Debian's chromium, which the web page's browser tests drive
#   npm run install:cuda     add the CUDA execution provider later (GPU machines)
set -euo pipefail
cd "$(dirname "$0")/.."

# npm 11 skips onnxruntime-node's install script by package.json's allowScripts; npm 10 knows
# no allowScripts and runs it, so the variable the script reads skips the download there.
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund

if [ -z "${QWEN3_ASR_NO_FFMPEG:-}" ] && ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ffmpeg with apt-get (set QWEN3_ASR_NO_FFMPEG=1 to skip)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; } ||
      echo "setup: warning: could not install ffmpeg; the embedded decoder will be used"
  else
    echo "setup: ffmpeg not found; the embedded decoder will be used (install ffmpeg for more formats)"
  fi
fi
# The web page's tests (src/server/page.test.ts) drive /usr/bin/chromium; without it they are skipped.
if [ -z "${QWEN3_ASR_NO_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium with apt-get for the browser tests (set QWEN3_ASR_NO_CHROMIUM=1 to skip)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
      echo "setup: warning: could not install chromium; the browser tests will be skipped"
  else
    echo "setup: chromium not found; the browser tests will be skipped (as root: apt-get install --no-install-recommends chromium)"
  fi
fi
echo "setup: done"
