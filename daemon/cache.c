/* The store and upstream modules (see cache.h): what opening them needs from the
 * configuration, what a reload changes, and the order things are freed in. */
#include "cache.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "db.h"
#include "download.h"
#include "http.h"
#include "log.h"
#include "memfault.h"
#include "session.h"
#include "store.h"
#include "upstream.h"

/* After a non-retryable Memfault error (a rejected key, a 500) a device is not asked about
 * again for its answer cache time, within these bounds. */
#define CACHE_ERROR_HOLD_MIN_S 600u
#define CACHE_ERROR_HOLD_MAX_S 3600u

/* --- the store --- */

static int
cache_store_start(struct daemon *d)
{
	const struct config_general *g = &d->cfg->general;
	char path[PATH_MAX], err[STORE_ERRMSG_MAX];
	struct store_config sc;
	uint64_t bytes = 0, count = 0;
	int r;

	if (snprintf(path, sizeof(path), "%s/" CACHE_DB_NAME, g->state_dir) >= (int)sizeof(path)) {
		log_err("state_dir %s is too long", g->state_dir);
		return -ENAMETOOLONG;
	}
	sc = (struct store_config){
	    .db_path = path, .cache_dir = g->cache_dir, .max_bytes = g->cache_max};
	err[0] = '\0';
	r = store_open(&sc, &d->store, err, sizeof(err));
	if (r < 0) {
		log_err(
		    "Failed to open the payload store: %s", err[0] != '\0' ? err : strerror(-r));
		return r;
	}
	store_usage(d->store, &bytes, &count);
	log_info("Payload cache %s: %" PRIu64 " artifact(s), %" PRIu64 " of %" PRIu64
		 " bytes; database %s",
	    g->cache_dir, count, bytes, g->cache_max, path);
	return 0;
}

static int
cache_store_reload(struct daemon *d, const struct config *old)
{
	uint64_t max = d->cfg->general.cache_max;
	int r;

	if (max == old->general.cache_max)
		return 0;
	r = store_set_max_bytes(d->store, max);
	if (r == -ENOSPC) {
		log_warn("cache_max is now %" PRIu64
			 " bytes, but payloads in use take more; they are evicted when released",
		    max);
		return 0;
	}
	if (r < 0) {
		log_err("Failed to apply cache_max = %" PRIu64 ": %s", max, store_errmsg(d->store));
		return r;
	}
	log_info("cache_max is now %" PRIu64 " bytes", max);
	return 0;
}

static void
cache_store_stop(struct daemon *d)
{
	d->store = store_free(d->store);
}

const struct daemon_module cache_store_module = {
    .name = "store",
    .start = cache_store_start,
    .reload = cache_store_reload,
    .stop = cache_store_stop,
};

/* --- the upstream side --- */

struct cache_upstream {
	struct http *http;
	struct memfault *mf;
	struct upstream *up;
	struct download_manager *dm;
};

static void
cache_upstream_free(struct cache_upstream *u)
{
	download_manager_free(u->dm);
	upstream_free(u->up);
	memfault_free(u->mf);
	http_free(u->http);
	memset(u, 0, sizeof(*u));
}

/* Builds the four pieces from cfg. Logs what failed. */
static int
cache_upstream_build(struct daemon *d, const struct config *cfg, struct cache_upstream *u)
{
	const struct config_memfault *mc = &cfg->memfault;
	struct http_config hc = {
	    .ca_file = mc->ca_file,
	    .proxy = mc->proxy,
	    .allow_http = mc->allow_insecure_http,
	};
	struct memfault_config mfc = {
	    .base_url = mc->base_url,
	    .project_key = mc->project_key,
	    .config_path = cfg->path,
	    .key_source = mc->project_key_source,
	    .timeout_s = mc->request_timeout_s,
	};
	struct upstream_config uc = {
	    /* 0 in the file means "do not reuse": upstream.c takes 0 as its default */
	    .answer_lifetime_s = mc->answer_cache_s > 0 ? mc->answer_cache_s : 1,
	    .error_hold_s = mc->answer_cache_s < CACHE_ERROR_HOLD_MIN_S   ? CACHE_ERROR_HOLD_MIN_S
			    : mc->answer_cache_s > CACHE_ERROR_HOLD_MAX_S ? CACHE_ERROR_HOLD_MAX_S
									  : mc->answer_cache_s,
	};
	struct download_config dc = {.url_validity_s = mc->url_validity_s};
	char err[256];
	int r;

	memset(u, 0, sizeof(*u));
	u->http = http_new(d->base, &hc);
	if (u->http == NULL) {
		log_err("Failed to set up the HTTP client (libcurl)");
		return -ENOMEM;
	}
	err[0] = '\0';
	r = memfault_new(u->http, &mfc, &u->mf, err, sizeof(err));
	if (r < 0) {
		log_err("Failed to set up the Memfault client: %s",
		    err[0] != '\0' ? err : strerror(-r));
		goto fail;
	}
	r = upstream_new(d->base, u->mf, store_db(d->store), &uc, &u->up);
	if (r < 0) {
		log_err_errno(r, "Failed to set up the upstream checks");
		goto fail;
	}
	r = download_manager_new(d->base, u->http, d->store, &dc, &u->dm);
	if (r < 0) {
		log_err_errno(r, "Failed to set up the download manager");
		goto fail;
	}
	return 0;
fail:
	cache_upstream_free(u);
	return r;
}

static int
cache_upstream_start(struct daemon *d)
{
	struct cache_upstream u;
	int r;

	r = cache_upstream_build(d, d->cfg, &u);
	if (r < 0)
		return r;
	d->http = u.http;
	d->memfault = u.mf;
	d->upstream = u.up;
	d->downloads = u.dm;
	log_debug("Asking Memfault at %s", memfault_base_url(d->memfault));
	return 0;
}

static bool
cache_str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
cache_memfault_same(const struct config *a, const struct config *b)
{
	const struct config_memfault *x = &a->memfault, *y = &b->memfault;

	return strcmp(x->project_key, y->project_key) == 0 &&
	       cache_str_eq(x->base_url, y->base_url) &&
	       x->allow_insecure_http == y->allow_insecure_http &&
	       cache_str_eq(x->ca_file, y->ca_file) && cache_str_eq(x->proxy, y->proxy) &&
	       x->request_timeout_s == y->request_timeout_s &&
	       x->answer_cache_s == y->answer_cache_s && x->url_validity_s == y->url_validity_s;
}

static int
cache_upstream_reload(struct daemon *d, const struct config *old)
{
	struct cache_upstream u, prev;
	int r;

	if (cache_memfault_same(d->cfg, old))
		return 0;
	r = cache_upstream_build(d, d->cfg, &u);
	if (r < 0) {
		log_err("Keeping the previous [memfault] settings");
		return r;
	}
	prev = (struct cache_upstream){d->http, d->memfault, d->upstream, d->downloads};
	/* The sessions let go of the old checks and downloads before those are freed. */
	if (d->sessions != NULL)
		sessions_set_upstream(d->sessions, u.up, u.dm);
	cache_upstream_free(&prev);
	d->http = u.http;
	d->memfault = u.mf;
	d->upstream = u.up;
	d->downloads = u.dm;
	log_info(
	    "Applied the new [memfault] settings (Memfault at %s)", memfault_base_url(d->memfault));
	return 0;
}

static int
cache_log_download(const struct download_progress *p, void *arg)
{
	(void)arg;
	log_info("Download of %s (sha256 %.12s) stopped at %" PRIu64 " of %" PRIu64
		 " bytes; it resumes from there at the next start",
	    p->version, p->sha256, p->bytes, p->size);
	return 0;
}

static void
cache_upstream_stop(struct daemon *d)
{
	struct cache_upstream u = {d->http, d->memfault, d->upstream, d->downloads};

	/* Downloads in progress keep their partial files for the next start. */
	if (d->downloads != NULL)
		download_foreach(d->downloads, cache_log_download, NULL);
	cache_upstream_free(&u);
	d->http = NULL;
	d->memfault = NULL;
	d->upstream = NULL;
	d->downloads = NULL;
}

const struct daemon_module cache_upstream_module = {
    .name = "upstream",
    .start = cache_upstream_start,
    .reload = cache_upstream_reload,
    .stop = cache_upstream_stop,
};
