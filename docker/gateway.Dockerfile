# stsgate gateway image: one image, configured per provider by environment variables.
#   docker build -f docker/gateway.Dockerfile -t stsgate .
#   docker run -p 6030:6030 stsgate                                  # loopback diagnostic provider
#   docker run -p 6030:6030 -e STS_PROVIDER=openai -e OPENAI_API_KEY=... -v ./tools:/usr/src/app/tools stsgate
# Debian (glibc) base: onnxruntime-node's prebuilt binaries (Silero VAD) need glibc, not musl.
FROM node:22-bookworm-slim AS build
RUN npm install --global --no-audit --no-fund pnpm@10.34.8
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile \
 && pnpm build \
 && pnpm deploy --filter @stsgate/gateway --prod --legacy /out \
 && find /out/node_modules -type d -path '*/onnxruntime-node/bin/napi-v*/*' -prune ! -name linux -exec rm -rf {} +
# (onnxruntime-node ships binaries for every OS; only Linux's are kept, ~220 MB less.)

FROM node:22-bookworm-slim
ENV NODE_ENV=production
# AVR's layout: the app in /usr/src/app, user tools mounted at /usr/src/app/tools. Tools are
# CommonJS modules that require('axios') / require('dotenv'): /usr/src/app/package.json is
# deliberately not "type": "module", and /usr/src/app/node_modules resolves both.
WORKDIR /usr/src/app
COPY --from=build /out ./gateway
RUN printf '{"private": true, "description": "stsgate; ./tools holds AVR tool modules (CommonJS)"}\n' > package.json \
 && ln -s gateway/node_modules node_modules \
 && mkdir -p tools avr_tools
USER node
# The default port of every AVR container the gateway replaces: STS 6030 (OpenAI, cascade, Soniox), 6040
# (Speechmatics), ASR 6010 / 6018, LLM 6002, TTS 6011. The health check probes the one `serve` picks.
EXPOSE 6002 6010 6011 6018 6030 6040
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD ["node", "gateway/dist/cli.js", "healthcheck"]
CMD ["node", "gateway/dist/cli.js", "serve"]
