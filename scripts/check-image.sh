#!/usr/bin/env bash
# Builds the Docker image and checks it end to end with the tiny golden checkpoint: the server
# becomes ready (GET /ready 200, the health check passes), runs as a non-root user with node as
# PID 1, transcribes a file through both APIs, the CLI runs in the image, and `docker stop`
# ends it gracefully (exit status 0). Needs a Docker daemon and ../shared (or QWEN3_ASR_SHARED);
# takes minutes (ffmpeg and the npm packages are installed), so it is not part of `npm test`.
#
#   NODE_IMAGE=<base>   build on another Node 20 Debian image (default: the Dockerfile's)
#   IMAGE=<tag>         the tag to build (default qwen3-asr:check)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(realpath "${QWEN3_ASR_SHARED:-../shared}")
image=${IMAGE:-qwen3-asr:check}
name=qwen3-asr-check-$$
port=${PORT:-18000}
fail() {
  echo "check-image: FAILED: $*" >&2
  docker logs "$name" 2>&1 | tail -20 >&2 || true
  exit 1
}
cleanup() {
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

docker build ${NODE_IMAGE:+--build-arg NODE_IMAGE="$NODE_IMAGE"} -t "$image" .
docker run -d --name "$name" -p "127.0.0.1:$port:8000" -v "$name:/data" \
  -v "$shared/golden/tiny-a/checkpoint:/models/tiny-a:ro" -e MODEL_NAME=/models/tiny-a -e QUANT=none "$image" >/dev/null

for _ in $(seq 1 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ] && break
  sleep 1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ] || fail "/ready is not 200 after 120 s"
[ "$(docker exec "$name" id -u)" != 0 ] || fail "the service runs as root"
[ "$(docker exec "$name" cat /proc/1/comm)" = node ] || fail "PID 1 is not node"
docker exec "$name" node scripts/healthcheck.mjs || fail "the health check fails on a ready server"
curl -sf -F file=@"$shared/audio/jfk.wav" "http://127.0.0.1:$port/transcribe" | grep -q '"text"' || fail "POST /transcribe"
curl -sf -F file=@"$shared/audio/jfk.wav" -F model=qwen3-asr -F response_format=srt "http://127.0.0.1:$port/v1/audio/transcriptions" |
  grep -q -- '-->' || fail "POST /v1/audio/transcriptions"
[ "$(docker exec "$name" bin/qwen3-asr --version)" = "$(node -p 'require("./package.json").version')" ] || fail "bin/qwen3-asr --version"
docker stop "$name" >/dev/null
[ "$(docker inspect --format '{{.State.ExitCode}}' "$name")" = 0 ] || fail "docker stop: exit status $(docker inspect --format '{{.State.ExitCode}}' "$name")"
docker logs "$name" 2>&1 | grep -q 'SIGTERM' || fail "no graceful shutdown on SIGTERM"
echo "check-image: $image passed"
