/**
 * Each service holds one blocking query, hence one connection, to the agent; Consul closes
 * connections beyond `limits.http_max_conns_per_client` (default 200) per client address without an
 * answer. Above this many consul services the sidecar warns at start. (Apart from consul.ts so the
 * sidecar can read it without loading the consul client.)
 */
export const CONSUL_CONNECTIONS_WARNING = 150
