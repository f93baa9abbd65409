# syntax=docker/dockerfile:1
# outrigger as a sidecar image.
#
#   docker build -t outrigger .
#   docker run --network container:APP -v ./outrigger.yaml:/etc/outrigger/outrigger.yaml:ro outrigger
#
# The config is read from $OUTRIGGER_CONFIG (default /etc/outrigger/outrigger.yaml); `docker run
# outrigger validate` checks it. The admin API stays on loopback by default: the HEALTHCHECK runs
# inside the container, so it reaches it there. To let something outside scrape /metrics or probe
# /readyz (a kubelet, Prometheus), bind it in the config, e.g. `admin: 0.0.0.0:9901`, and set
# OUTRIGGER_HEALTHCHECK_URL if you move its port. See examples/compose and examples/kubernetes.

# Production dependencies only. Install scripts are skipped: no runtime dependency needs one.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# Compile src/ to dist/ (tsconfig.build.json: rootDir src, outDir dist). The `node` devDependency
# only exists to bring Node 24 to machines without it; this image is Node 24, so install scripts
# are skipped (no download, no bin link) and `npm run build` runs tsc on the image's node.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim
# tini as PID 1: forwards SIGTERM/SIGINT to node (which then drains and deregisters) and reaps
# zombies, the same as `docker run --init` but without relying on every runner to pass it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/outrigger /var/lib/outrigger \
 && chown node:node /var/lib/outrigger
ENV NODE_ENV=production \
    OUTRIGGER_CONFIG=/etc/outrigger/outrigger.yaml \
    OUTRIGGER_HEALTHCHECK_URL=http://127.0.0.1:9901/healthz
WORKDIR /app
# package.json marks dist/ as ES modules and gives `outrigger --version` its number.
COPY package.json LICENSE ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The image's own user (uid 1000); point `discovery.stateDir` at /var/lib/outrigger (writable by it)
# so last known endpoints survive a restart when a volume is mounted there.
USER node
# 15001: the shared proxy listener; 9901: admin API (/healthz, /readyz, /metrics, status page).
EXPOSE 15001 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.OUTRIGGER_HEALTHCHECK_URL, { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# The node flags are the ones on src/cli.ts's #! line (the young-generation cap and V8 on the event loop's thread; see there).
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=2", "--single-threaded", "/app/dist/cli.js"]
CMD ["run"]
