# outrigger as a sidecar image: `docker run -v ./outrigger.yaml:/etc/outrigger/outrigger.yaml outrigger`.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# `prepare` compiles src/ to dist/ during the install; dev dependencies are dropped afterwards.
RUN npm ci && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json LICENSE ./
USER node
# 15001: the shared proxy listener; 9901: admin API, metrics and status page (bind it to 0.0.0.0 in
# the config only when something outside the pod must scrape it).
EXPOSE 15001 9901
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["run", "-c", "/etc/outrigger/outrigger.yaml"]
