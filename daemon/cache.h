/* Where payloads come from, as two daemon modules: the store (the sqlite index and the blob
 * cache under state_dir and cache_dir, with its size cap) and the upstream side built on it (the
 * HTTP client on the loop, the Memfault client, the per-device check and the download
 * manager). A reload applies a new cache_max, and rebuilds the upstream side when a [memfault]
 * setting changed (the sessions' checks and downloads move over to it). */
#ifndef OTAGW_CACHE_H
#define OTAGW_CACHE_H

struct daemon_module;

/* The database file inside state_dir. */
#define CACHE_DB_NAME "otagw.db"

extern const struct daemon_module cache_store_module;
extern const struct daemon_module cache_upstream_module;

#endif
