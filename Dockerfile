# The qwen3-asr service: Node 20 on Debian slim, the CPU build of ONNX Runtime, ffmpeg.
#
#   docker build -t qwen3-asr .
#   docker run -p 8000:8000 -v qwen3-asr-cache:/data qwen3-asr
#
# compose.yaml runs it with its volumes and settings. Every setting is an environment
# variable (README "Configuration"); the CLI runs in the same image:
#   docker run --rm -v "$PWD:/work" qwen3-asr bin/qwen3-asr transcribe /work/talk.mp3
ARG NODE_IMAGE=node:20-bookworm-slim

# Dependencies, installed as `npm run setup` does: onnxruntime-node's install script would
# download CUDA libraries (package.json's allowScripts skips it on npm 11; the image's npm 10
# reads only this variable). Development dependencies stay out. CUDA=1 adds ONNX Runtime's CUDA
# provider (`npm run install:cuda`), which also needs CUDA 12 and cuDNN 9 in NODE_IMAGE: not
# yet verified on a GPU (README "CUDA").
FROM ${NODE_IMAGE} AS deps
ARG CUDA=0
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json ./
# npm ls: npm 10 can end a failed install with exit status 0 ("Exit handler never called!").
RUN npm ci --omit=dev --no-audit --no-fund \
  && npm ls --omit=dev --all > /dev/null \
  && if [ "$CUDA" = 1 ]; then npm run install:cuda; fi

FROM ${NODE_IMAGE}
# ffmpeg decodes more formats than the embedded decoder (the service uses it when on the PATH).
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The server's default address is 127.0.0.1, which nothing outside the container reaches.
# Models download into HF_HOME and compiled graphs go to QWEN3_ASR_CACHE_DIR, both in the /data
# volume, so a new container starts from what an earlier one downloaded and built.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    HF_HOME=/data/huggingface \
    QWEN3_ASR_CACHE_DIR=/data/qwen3-asr
# The code belongs to root and is read-only to the service, which runs as the image's `node` user
# and writes only to its two data folders (and the temporary folder for uploads).
RUN mkdir -p /data/huggingface /data/qwen3-asr && chown -R node:node /data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json LICENSE ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
USER node
VOLUME ["/data"]
EXPOSE 8000
# Ready (200) once the model is loaded; the first start downloads it (4.7 GB for 1.7B) and builds
# its graphs, hence the long start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 CMD ["node", "scripts/healthcheck.mjs"]
# Exec form, no npm or shell left in between: scripts/node.sh sets GLIBC_TUNABLES (huge pages)
# and execs node, so node is PID 1 and gets SIGTERM for its graceful shutdown.
CMD ["scripts/node.sh", "--import", "tsx", "src/server/main.ts"]
