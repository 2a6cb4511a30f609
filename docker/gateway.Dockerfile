# stsgate gateway images: one Dockerfile, one final stage (target) per AVR container it replaces, each with that
# container's provider variable baked in and its port exposed, so the image name alone selects the provider and
# avr-infra's environment blocks run unchanged. The all-in-one default is the LAST stage: a plain build gives it.
#   docker build -f docker/gateway.Dockerfile -t stsgate/gateway .                        # all-in-one (loopback until STS_PROVIDER is set)
#   docker build -f docker/gateway.Dockerfile --target openai -t stsgate/gateway:openai .
#   docker run -p 6030:6030 -e OPENAI_API_KEY=... -v ./tools:/usr/src/app/tools stsgate/gateway:openai
# Targets: openai xai speechmatics speechmatics-flow soniox cascade asr-soniox tts-soniox llm-openai, and default.
# Targets whose providers need no voice activity detection ship without onnxruntime-node (Silero VAD, ~70 MB): openai,
# xai, speechmatics-flow, asr-soniox, tts-soniox, llm-openai. The cascades (speechmatics, soniox, cascade) and the
# default (loopback) keep it. Turn detection `none` (OPENAI_/XAI_TURN_DETECTION) needs the VAD: use the default image.
# Debian (glibc) base: onnxruntime-node's prebuilt binaries need glibc, not musl.
FROM node:22-bookworm-slim AS build
RUN npm install --global --no-audit --no-fund pnpm@10.34.8
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile \
 && pnpm build \
 && pnpm deploy --filter @stsgate/gateway --prod --legacy /out \
 && find /out/node_modules -type d -path '*/onnxruntime-node/bin/napi-v*/*' -prune ! -name linux -exec rm -rf {} + \
 && cp -a /out /out-novad \
 && rm -rf /out-novad/node_modules/.pnpm/onnxruntime-*
# (onnxruntime-node ships binaries for every OS; only Linux's are kept, ~220 MB less. /out-novad has none at all.)

FROM node:22-bookworm-slim AS runtime-base
ENV NODE_ENV=production
# jemalloc instead of glibc's malloc. Every socket read is a malloc'd buffer freed at the next GC; under hundreds of
# calls glibc's heap fragments and keeps ~30 MB resident after the calls end, while jemalloc's background thread
# returns freed pages within seconds (bench/README.md, `scale`: RSS 30 s after 500 calls, 1.02x idle vs 1.3-1.8x).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/*
ENV LD_PRELOAD=libjemalloc.so.2 MALLOC_CONF=background_thread:true
# AVR's layout: the app in /usr/src/app, user tools mounted at /usr/src/app/tools, avr-app's at /usr/src/app/avr_tools.
# Tools are CommonJS modules that require('axios') / require('dotenv'): /usr/src/app/package.json is deliberately
# not "type": "module", and /usr/src/app/node_modules resolves both.
WORKDIR /usr/src/app
RUN printf '{"private": true, "description": "stsgate; ./tools holds AVR tool modules (CommonJS)"}\n' > package.json \
 && ln -s gateway/node_modules node_modules \
 && mkdir -p tools avr_tools
USER node
# `stsgate healthcheck` probes the port `serve` picks from the same environment: PORT, else the provider's default.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD ["node", "gateway/dist/cli.js", "healthcheck"]
# --single-threaded-gc: V8 collects garbage on the event loop's thread in short incremental steps. Its default helper
# threads share the gateway's core and preempt the event loop for 10-30 ms at a time: at 100 calls on one core this
# cut the caller-audio p99 from 3.4-4.0 to 1.4-1.8 ms (pcm24: 31-40 to 5-6) and the interruption p99 from 6.5-13 to
# 2.0-2.8 ms (pcm24: 46-50 to 9-12), same CPU (bench/README.md, "GC"). With an idle core beside the gateway, the two
# measured the same. NODE_OPTIONS does not accept the flag: it has to be on the command line.
CMD ["node", "--single-threaded-gc", "gateway/dist/cli.js", "serve"]

FROM runtime-base AS runtime
COPY --from=build /out ./gateway

FROM runtime-base AS runtime-novad
COPY --from=build /out-novad ./gateway

# avr-sts-openai (OPENAI_API_KEY)
FROM runtime-novad AS openai
ENV STS_PROVIDER=openai
EXPOSE 6030

# avr-sts-xai (XAI_API_KEY)
FROM runtime-novad AS xai
ENV STS_PROVIDER=xai
EXPOSE 6041

# Speechmatics agent, a cascade: Speechmatics ASR + TTS (SPEECHMATICS_API_KEY) and an LLM, which has to be set too:
# LLM_PROVIDER=openai with OPENAI_API_KEY (or OPENAI_BASE_URL for any OpenAI-compatible server).
FROM runtime AS speechmatics
ENV STS_PROVIDER=speechmatics
EXPOSE 6040

# avr-sts-speechmatics (its block has no LLM key: Flow, deprecated by Speechmatics)
FROM runtime-novad AS speechmatics-flow
ENV STS_PROVIDER=speechmatics-flow
EXPOSE 6040

# Soniox agent, a cascade: Soniox ASR + TTS (SONIOX_API_KEY) and an LLM (LLM_PROVIDER=openai with OPENAI_API_KEY)
FROM runtime AS soniox
ENV STS_PROVIDER=soniox
EXPOSE 6030

# Any ASR + LLM + TTS as one agent: ASR_PROVIDER, LLM_PROVIDER, TTS_PROVIDER and their keys
FROM runtime AS cascade
ENV STS_PROVIDER=cascade
EXPOSE 6030

# avr-asr-soniox
FROM runtime-novad AS asr-soniox
ENV ASR_PROVIDER=soniox
EXPOSE 6018

# avr-tts-soniox
FROM runtime-novad AS tts-soniox
ENV TTS_PROVIDER=soniox
EXPOSE 6011

# avr-llm-openai
FROM runtime-novad AS llm-openai
ENV LLM_PROVIDER=openai
EXPOSE 6002

# All-in-one (last, so a plain `docker build` gives it): every provider, chosen by STS_PROVIDER / ASR_PROVIDER /
# LLM_PROVIDER / TTS_PROVIDER; with none set, the loopback diagnostic provider on 6030. The ports exposed are those
# of every AVR container the gateway replaces: STS 6030 / 6040 / 6041, ASR 6010 / 6018, LLM 6002, TTS 6011.
FROM runtime AS default
EXPOSE 6002 6010 6011 6018 6030 6040 6041
