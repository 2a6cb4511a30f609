# The tags docker/compose/<provider>.yml use: stsgate's one image with the provider variable of the AVR container a
# service replaces baked in, so avr-infra's service block runs unchanged. Build the base first, then each tag:
#   docker build -f docker/gateway.Dockerfile -t stsgate/gateway .
#   for t in openai xai speechmatics-flow asr-soniox tts-soniox llm-openai; do
#     docker build -f docker/compose/images.Dockerfile --target "$t" -t "stsgate/gateway:$t" docker/compose; done
ARG BASE=stsgate/gateway

# avr-sts-openai
FROM ${BASE} AS openai
ENV STS_PROVIDER=openai

# avr-sts-xai
FROM ${BASE} AS xai
ENV STS_PROVIDER=xai

# avr-sts-speechmatics (its block has no LLM key: Flow, deprecated; STS_PROVIDER=speechmatics needs OPENAI_API_KEY)
FROM ${BASE} AS speechmatics-flow
ENV STS_PROVIDER=speechmatics-flow

# avr-asr-soniox
FROM ${BASE} AS asr-soniox
ENV ASR_PROVIDER=soniox

# avr-tts-soniox
FROM ${BASE} AS tts-soniox
ENV TTS_PROVIDER=soniox

# avr-llm-openai
FROM ${BASE} AS llm-openai
ENV LLM_PROVIDER=openai
