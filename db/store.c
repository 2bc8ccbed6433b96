/* The payload store: blob and partial files under the cache directory, indexed by the
 * artifacts table. Every change to files and rows is ordered so that a crash between any two
 * steps leaves a state store_open()'s reconciliation turns back into a consistent store
 * without losing a verified blob: rows are removed before their files (an orphan file is
 * deleted on the next start), and a blob is renamed into blobs/ before its row says complete
 * (a verified blob whose row still says partial is promoted on the next start). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "db_internal.h"
#include "hex.h"
#include "history.h"
#include "store.h"

/* Read size for hashing a blob: large enough to amortise system calls, small enough to keep
 * off the stack. */
#define STORE_HASH_CHUNK  ((size_t)64 * 1024)
#define STORE_PART_SUFFIX ".part"
/* "<64 hex>.part" and a NUL */
#define STORE_NAME_MAX (STORE_SHA256_HEX + sizeof(STORE_PART_SUFFIX))

struct store {
	struct db *db;
	char *cache_dir;
	int cache_fd; /* holds the flock that keeps a second otagwd out */
	int blobs_fd;
	int partial_fd;
	uint64_t max_bytes;
	EVP_MD *sha256;
};

#define STORE_COLUMNS                                                                    \
	"sha256, artifact_id, version, is_delta, size, md5, state, bytes_present, url, " \
	"url_fetched, created, last_used, pins, verified"

static const char sql_get[] = "SELECT " STORE_COLUMNS " FROM artifacts WHERE sha256 = ?1";
static const char sql_reserved[] = "SELECT coalesce(sum(size), 0) FROM artifacts";
static const char sql_victim[] = "SELECT sha256, state FROM artifacts"
				 " WHERE pins = 0 AND sha256 IS NOT ?1 ORDER BY lru LIMIT 1";
static const char sql_delete[] = "DELETE FROM artifacts WHERE sha256 = ?1";
static const char sql_insert[] =
    "INSERT INTO artifacts (sha256, artifact_id, version, is_delta, size, md5, state,"
    " bytes_present, url, url_fetched, created, last_used, lru, pins)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'partial', 0, ?7, ?8, ?9, ?9,"
    " (SELECT coalesce(max(lru), 0) + 1 FROM artifacts), 1)";
static const char sql_reopen[] =
    "UPDATE artifacts SET artifact_id = ?2, version = ?3, is_delta = ?4, size = ?5, md5 = ?6,"
    " bytes_present = ?10, url = ?7, url_fetched = ?8, last_used = ?9,"
    " lru = (SELECT max(lru) + 1 FROM artifacts), pins = pins + 1"
    " WHERE sha256 = ?1 AND state = 'partial'";
static const char sql_progress[] = "UPDATE artifacts SET bytes_present = ?2"
				   " WHERE sha256 = ?1 AND state = 'partial'";
static const char sql_set_url[] = "UPDATE artifacts SET url = ?2, url_fetched = ?3"
				  " WHERE sha256 = ?1 AND state = 'partial'";
static const char sql_close[] = "UPDATE artifacts SET bytes_present = ?2, pins = max(pins - 1, 0)"
				" WHERE sha256 = ?1 AND state = 'partial'";
static const char sql_complete[] =
    "UPDATE artifacts SET state = 'complete', bytes_present = size, verified = 1,"
    " pins = max(pins - 1, 0), last_used = ?2, lru = (SELECT max(lru) + 1 FROM artifacts)"
    " WHERE sha256 = ?1 AND state = 'partial'";
static const char sql_touch[] = "UPDATE artifacts SET last_used = ?2,"
				" lru = (SELECT max(lru) + 1 FROM artifacts) WHERE sha256 = ?1";
static const char sql_verified[] = "UPDATE artifacts SET verified = 1 WHERE sha256 = ?1";
static const char sql_release[] = "UPDATE artifacts SET pins = max(pins - 1, 0)"
				  " WHERE sha256 = ?1";
static const char sql_pin[] = "UPDATE artifacts SET pins = pins + 1 WHERE sha256 = ?1";
static const char sql_unpin[] =
    "UPDATE artifacts SET pins = pins - 1 WHERE sha256 = ?1 AND pins > 0";
static const char sql_usage[] =
    "SELECT coalesce(sum(CASE state WHEN 'complete' THEN size ELSE bytes_present END), 0),"
    " count(*) FROM artifacts";
static const char sql_unpinned[] = "SELECT sha256, state, CASE state WHEN 'complete' THEN size"
				   " ELSE bytes_present END FROM artifacts"
				   " WHERE pins = 0 ORDER BY lru LIMIT 1";
static const char sql_next[] =
    "SELECT " STORE_COLUMNS ", lru FROM artifacts WHERE lru > ?1 AND lru <= ?2"
    " ORDER BY lru LIMIT 1";
static const char sql_max_lru[] = "SELECT coalesce(max(lru), 0) FROM artifacts";
static const char sql_rec_all[] = "SELECT sha256, state, size FROM artifacts ORDER BY sha256";
static const char sql_rec_promote[] =
    "UPDATE artifacts SET state = 'complete', bytes_present = size WHERE sha256 = ?1";
static const char sql_rec_reset[] = "UPDATE artifacts SET pins = 0, verified = 0"
				    " WHERE pins != 0 OR verified != 0";

int
store_sha256_norm(const char *in, char out[STORE_SHA256_HEX + 1])
{
	uint8_t bin[STORE_SHA256_LEN];

	if (!in || hex_decode(in, bin, sizeof(bin)) < 0)
		return -EINVAL;
	hex_encode(bin, sizeof(bin), out);
	return 0;
}

/* Normalises a caller's key, with a message when it is malformed. */
static int
store_key(struct store *s, const char *in, char out[STORE_SHA256_HEX + 1])
{
	if (store_sha256_norm(in, out) < 0)
		return db_err(s->db, -EINVAL, "artifact key is not a SHA-256 (64 hex digits)");
	return 0;
}

static void
store_part_name(const char *key, char name[STORE_NAME_MAX])
{
	snprintf(name, STORE_NAME_MAX, "%s%s", key, STORE_PART_SUFFIX);
}

static enum store_state
store_state_parse(const unsigned char *t)
{
	return (t && strcmp((const char *)t, "complete") == 0) ? STORE_STATE_COMPLETE
							       : STORE_STATE_PARTIAL;
}

static void
store_row(sqlite3_stmt *st, struct store_artifact *a)
{
	memset(a, 0, sizeof(*a));
	db_column_copy(st, 0, a->sha256, sizeof(a->sha256));
	a->artifact_id = sqlite3_column_int64(st, 1);
	db_column_copy(st, 2, a->version, sizeof(a->version));
	a->is_delta = sqlite3_column_int(st, 3) != 0;
	a->size = db_column_u64(st, 4);
	db_column_copy(st, 5, a->md5, sizeof(a->md5));
	a->state = store_state_parse(sqlite3_column_text(st, 6));
	a->bytes_present = db_column_u64(st, 7);
	db_column_copy(st, 8, a->url, sizeof(a->url));
	a->url_fetched = sqlite3_column_int64(st, 9);
	a->created = sqlite3_column_int64(st, 10);
	a->last_used = sqlite3_column_int64(st, 11);
	a->pins = (unsigned)db_column_u64(st, 12);
	a->verified = sqlite3_column_int(st, 13) != 0;
}

/* Reads key's row. -ENOENT (with a message) if there is none. */
static int
store_get(struct store *s, const char *key, struct store_artifact *a)
{
	sqlite3_stmt *st;
	int r;

	r = db_query_text(s->db, sql_get, key, "reading an artifact", &st);
	if (r > 0) {
		store_row(st, a);
		db_reset(st);
		return 0;
	}
	if (r == 0)
		r = db_err(s->db, -ENOENT, "artifact %s is not in the cache", key);
	return r;
}

/* Normalises a caller's sha256 into key and reads its row. */
static int
store_find(struct store *s, const char *sha256, char *key, struct store_artifact *a)
{
	int r = store_key(s, sha256, key);

	return r < 0 ? r : store_get(s, key, a);
}

/* store_find() for the partial-only calls: -ENOENT unless a download is in progress. */
static int
store_find_partial(struct store *s, const char *sha256, char *key, struct store_artifact *a)
{
	int r = store_find(s, sha256, key, a);

	if (r == 0 && a->state != STORE_STATE_PARTIAL)
		r = db_err(s->db, -ENOENT, "artifact %s has no download in progress", key);
	return r;
}

/* Runs a statement whose parameters are (key, optional integer). */
static int
store_exec_key(struct store *s, const char *sql, const char *key, int64_t v, const char *what)
{
	sqlite3_stmt *st;
	int r;

	r = db_prepare(s->db, sql, &st);
	if (r < 0)
		return r;
	db_bind_text(st, 1, key);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, v);
	return db_step(s->db, st, what);
}

/* Removes key's file, if any. The row is already gone, so a failure only leaves an orphan that
 * the next start deletes. */
static void
store_unlink(struct store *s, const char *key, enum store_state state)
{
	char name[STORE_NAME_MAX];

	if (state == STORE_STATE_COMPLETE) {
		unlinkat(s->blobs_fd, key, 0);
	} else {
		store_part_name(key, name);
		unlinkat(s->partial_fd, name, 0);
	}
}

/* Deletes key's row, then its file. */
static int
store_remove(struct store *s, const char *key, enum store_state state)
{
	int r = store_exec_key(s, sql_delete, key, 0, "removing an artifact");

	if (r < 0)
		return r;
	store_unlink(s, key, state);
	return 0;
}

static int
store_query_u64(struct store *s, const char *sql, uint64_t *a, uint64_t *b)
{
	sqlite3_stmt *st;
	int r;

	r = db_prepare(s->db, sql, &st);
	if (r < 0)
		return r;
	r = db_step(s->db, st, "reading cache usage");
	if (r > 0) {
		if (a)
			*a = db_column_u64(st, 0);
		if (b)
			*b = db_column_u64(st, 1);
		db_reset(st);
		return 0;
	}
	return r == 0 ? db_err(s->db, -EIO, "reading cache usage returned nothing") : r;
}

/* Evicts unpinned artifacts, least recently used first (never except), until need more bytes
 * fit under the cap. Partial downloads count with their full size: the space they will take is
 * reserved when they start, so two downloads cannot together overrun the cap. */
static int
store_evict(struct store *s, uint64_t need, const char *except)
{
	char victim[STORE_SHA256_HEX + 1];
	enum store_state state;
	uint64_t reserved;
	sqlite3_stmt *st;
	int r;

	if (s->max_bytes == 0)
		return 0;
	for (;;) {
		r = store_query_u64(s, sql_reserved, &reserved, NULL);
		if (r < 0)
			return r;
		if (need <= s->max_bytes && reserved <= s->max_bytes - need)
			return 0;
		r = db_query_text(s->db, sql_victim, except, "choosing an artifact to evict", &st);
		if (r < 0)
			return r;
		if (r == 0)
			return db_err(s->db, -ENOSPC,
			    "cache %s is full: %" PRIu64 " bytes are held by artifacts in use, "
			    "%" PRIu64 " more do not fit under cache_max=%" PRIu64
			    ": retry when transfers end, or raise cache_max",
			    s->cache_dir, reserved, need, s->max_bytes);
		db_column_copy(st, 0, victim, sizeof(victim));
		state = store_state_parse(sqlite3_column_text(st, 1));
		db_reset(st);
		r = store_remove(s, victim, state);
		if (r < 0)
			return r;
	}
}

/* Writes an error about a path into the caller's buffer (before a db exists). */
static int __attribute__((format(printf, 4, 5)))
store_openerr(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return r;
}

/* Creates directory name (relative to dirfd, or absolute) if missing and opens it. */
static int
store_opendir(int dirfd, const char *name, const char *shown, int *out, char *err, size_t errlen)
{
	int fd, r;

	if (mkdirat(dirfd, name, 0750) < 0 && errno != EEXIST)
		return store_openerr(
		    err, errlen, -errno, "cannot create directory %s: %s", shown, strerror(errno));
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return store_openerr(
		    err, errlen, -errno, "cannot open directory %s: %s", shown, strerror(errno));
	/* Every change below needs to create, rename and remove files here. */
	if (faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) < 0) {
		r = -errno;
		close(fd);
		return store_openerr(
		    err, errlen, r, "directory %s is not writable: %s", shown, strerror(-r));
	}
	*out = fd;
	return 0;
}

/* Creates the database's directory if missing (its parent must exist). */
static int
store_db_dir(const char *db_path, char *err, size_t errlen)
{
	char *dir, *slash;
	int fd = -1, r = 0;

	dir = strdup(db_path);
	if (!dir)
		return store_openerr(err, errlen, -ENOMEM, "out of memory");
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = store_opendir(AT_FDCWD, dir, dir, &fd, err, errlen);
		if (fd >= 0)
			close(fd);
	}
	free(dir);
	return r;
}

/* --- reconciliation --------------------------------------------------------------------- */

struct store_rec {
	char key[STORE_SHA256_HEX + 1];
	enum store_state state;
	uint64_t size;
	uint64_t present; /* partial file length */
	bool blob;        /* blobs/<key> exists with the right length */
	bool part;        /* partial/<key>.part exists */
};

/* bsearch() comparison of a key with a record; the rows are read ORDER BY sha256, which
 * sqlite's BINARY collation sorts like strcmp(). */
static int
store_rec_cmp(const void *key, const void *rec)
{
	return strcmp(key, ((const struct store_rec *)rec)->key);
}

static struct store_rec *
store_rec_find(struct store_rec *recs, size_t n, const char *key)
{
	return n ? bsearch(key, recs, n, sizeof(*recs), store_rec_cmp) : NULL;
}

/* True if name is exactly 64 lower-case hex digits followed by suffix. */
static bool
store_name_valid(const char *name, const char *suffix)
{
	size_t i;

	for (i = 0; i < STORE_SHA256_HEX; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return strcmp(name + STORE_SHA256_HEX, suffix) == 0;
}

static int
store_rec_load(struct store *s, struct store_rec **out, size_t *nout)
{
	struct store_rec *recs = NULL, *n;
	size_t len = 0, cap = 0;
	sqlite3_stmt *st;
	int r;

	r = db_prepare(s->db, sql_rec_all, &st);
	if (r < 0)
		return r;
	while ((r = db_step(s->db, st, "reading the artifacts")) == 1) {
		if (len == cap) {
			cap = cap ? 2 * cap : 64;
			n = reallocarray(recs, cap, sizeof(*recs));
			if (!n) {
				db_reset(st);
				free(recs);
				return db_err(s->db, -ENOMEM, "out of memory");
			}
			recs = n;
		}
		memset(&recs[len], 0, sizeof(recs[len]));
		db_column_copy(st, 0, recs[len].key, sizeof(recs[len].key));
		recs[len].state = store_state_parse(sqlite3_column_text(st, 1));
		recs[len].size = db_column_u64(st, 2);
		len++;
	}
	if (r < 0) {
		free(recs);
		return r;
	}
	*out = recs;
	*nout = len;
	return 0;
}

/* Opens a fresh directory stream on dirfd (the fd itself stays open for *at() calls). */
static DIR *
store_dir_stream(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

/* Removes an entry that does not belong; a directory is removed only if empty (never
 * recursively: whatever someone put there is theirs to clean). */
static void
store_remove_entry(int dirfd, const char *name, const struct stat *st)
{
	unlinkat(dirfd, name, S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0);
}

/* Calls entry for everything in dirfd (dirname for messages) but "." and "..". Removing the
 * current entry during the walk is fine. */
static int
store_scan(struct store *s, int dirfd, const char *dirname,
    void (*entry)(
	struct store *s, const char *name, const struct stat *st, struct store_rec *recs, size_t n),
    struct store_rec *recs, size_t n)
{
	struct dirent *de;
	struct stat st;
	DIR *d;

	d = store_dir_stream(dirfd);
	if (!d)
		return db_err(s->db, db_neg_errno(), "cannot read directory %s/%s: %s",
		    s->cache_dir, dirname, strerror(errno));
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			entry(s, de->d_name, &st, recs, n);
	}
	closedir(d);
	return 0;
}

/* An entry of blobs/: kept if it is the blob of a row, with the row's length. */
static void
store_scan_blob(
    struct store *s, const char *name, const struct stat *st, struct store_rec *recs, size_t n)
{
	struct store_rec *rec;

	rec = store_name_valid(name, "") ? store_rec_find(recs, n, name) : NULL;
	if (!rec || !S_ISREG(st->st_mode) || (uint64_t)st->st_size != rec->size) {
		store_remove_entry(s->blobs_fd, name, st);
		return;
	}
	rec->blob = true;
	if ((st->st_mode & 07777) != 0444)
		fchmodat(s->blobs_fd, name, 0444, 0);
}

/* An entry of partial/ (scanned after blobs/): kept if it is the download of a partial row. */
static void
store_scan_part(
    struct store *s, const char *name, const struct stat *st, struct store_rec *recs, size_t n)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_rec *rec = NULL;
	int fd;

	if (store_name_valid(name, STORE_PART_SUFFIX)) {
		snprintf(key, sizeof(key), "%.*s", STORE_SHA256_HEX, name);
		rec = store_rec_find(recs, n, key);
	}
	/* A partial beside a blob of the same key is a leftover: the blob wins. */
	if (!rec || rec->state != STORE_STATE_PARTIAL || rec->blob || !S_ISREG(st->st_mode)) {
		store_remove_entry(s->partial_fd, name, st);
		return;
	}
	rec->part = true;
	rec->present = (uint64_t)st->st_size;
	/* A crash between the chmod and the rename of a commit leaves it read-only. */
	if ((st->st_mode & 0600) != 0600)
		fchmodat(s->partial_fd, name, 0640, 0);
	if (rec->present > rec->size) {
		/* Longer than the artifact: the bytes cannot be right. Start over. */
		fd = openat(s->partial_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || ftruncate(fd, 0) < 0) {
			unlinkat(s->partial_fd, name, 0);
			rec->part = false;
		}
		if (fd >= 0)
			close(fd);
		rec->present = 0;
	}
}

/* Applies what the scans found to the rows, in one transaction. */
static int
store_rec_apply(struct store *s, struct store_rec *recs, size_t n)
{
	size_t i;
	int r;

	r = db_begin(s->db);
	if (r < 0)
		return r;
	for (i = 0; i < n && r >= 0; i++) {
		struct store_rec *rec = &recs[i];

		if (rec->blob && rec->state == STORE_STATE_PARTIAL)
			/* Renamed into blobs/ after verification, then the process died before
			 * the row said so: the blob is good. */
			r = store_exec_key(s, sql_rec_promote, rec->key, 0, "reconciling");
		else if (rec->part && rec->state == STORE_STATE_PARTIAL)
			r = store_exec_key(
			    s, sql_progress, rec->key, (int64_t)rec->present, "reconciling");
		else if (!rec->blob && !rec->part)
			r = store_exec_key(s, sql_delete, rec->key, 0, "reconciling");
	}
	if (r >= 0)
		r = db_exec(s->db, sql_rec_reset, "resetting pins");
	if (r < 0) {
		db_rollback(s->db);
		return r;
	}
	return db_commit(s->db);
}

static int
store_reconcile(struct store *s)
{
	struct store_rec *recs = NULL;
	size_t n = 0;
	int r;

	r = store_rec_load(s, &recs, &n);
	if (r == 0)
		r = store_scan(s, s->blobs_fd, "blobs", store_scan_blob, recs, n);
	if (r == 0)
		r = store_scan(s, s->partial_fd, "partial", store_scan_part, recs, n);
	if (r == 0)
		r = store_rec_apply(s, recs, n);
	free(recs);
	return r;
}

/* --- open and close --------------------------------------------------------------------- */

int
store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen)
{
	char path[4096];
	struct store *s;
	int r;

	if (!cfg || !cfg->db_path || !*cfg->db_path || !cfg->cache_dir || !*cfg->cache_dir)
		return store_openerr(err, errlen, -EINVAL, "no database path or cache directory");
	if (strlen(cfg->cache_dir) > sizeof(path) - 16)
		return store_openerr(err, errlen, -ENAMETOOLONG, "cache directory name too long");

	s = calloc(1, sizeof(*s));
	if (!s || !(s->cache_dir = strdup(cfg->cache_dir))) {
		free(s);
		return store_openerr(err, errlen, -ENOMEM, "out of memory");
	}
	s->cache_fd = s->blobs_fd = s->partial_fd = -1;
	s->max_bytes = cfg->max_bytes;

	r = store_opendir(AT_FDCWD, s->cache_dir, s->cache_dir, &s->cache_fd, err, errlen);
	if (r < 0)
		goto fail;
	/* Two processes reconciling the same directory would delete each other's partials. */
	if (flock(s->cache_fd, LOCK_EX | LOCK_NB) < 0) {
		r = store_openerr(err, errlen, errno == EWOULDBLOCK ? -EBUSY : -errno,
		    "cache directory %s is in use by another process (is another otagwd "
		    "running?)",
		    s->cache_dir);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/blobs", s->cache_dir);
	r = store_opendir(s->cache_fd, "blobs", path, &s->blobs_fd, err, errlen);
	if (r < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/partial", s->cache_dir);
	r = store_opendir(s->cache_fd, "partial", path, &s->partial_fd, err, errlen);
	if (r < 0)
		goto fail;
	r = store_db_dir(cfg->db_path, err, errlen);
	if (r < 0)
		goto fail;

	s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!s->sha256) {
		r = store_openerr(err, errlen, -ENOSYS, "OpenSSL provides no SHA-256");
		goto fail;
	}
	r = db_open(cfg->db_path, &s->db, err, errlen);
	if (r < 0)
		goto fail;
	r = history_abort_stale(s->db, "otagwd stopped during the transfer", NULL);
	if (r == 0)
		r = store_reconcile(s);
	if (r == 0)
		r = store_evict(s, 0, NULL);
	if (r < 0) {
		store_openerr(err, errlen, r, "%s", db_errmsg(s->db));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_free(s);
	return r;
}

struct store *
store_free(struct store *s)
{
	if (!s)
		return NULL;
	db_free(s->db);
	if (s->partial_fd >= 0)
		close(s->partial_fd);
	if (s->blobs_fd >= 0)
		close(s->blobs_fd);
	if (s->cache_fd >= 0)
		close(s->cache_fd); /* drops the lock */
	EVP_MD_free(s->sha256);
	free(s->cache_dir);
	free(s);
	return NULL;
}

const char *
store_errmsg(const struct store *s)
{
	return db_errmsg(s->db);
}

struct db *
store_db(struct store *s)
{
	return s->db;
}

int
store_set_max_bytes(struct store *s, uint64_t max_bytes)
{
	s->max_bytes = max_bytes;
	return store_evict(s, 0, NULL);
}

int
store_artifact_get(struct store *s, const char *sha256, struct store_artifact *out)
{
	char key[STORE_SHA256_HEX + 1];

	return store_find(s, sha256, key, out);
}

/* --- downloads -------------------------------------------------------------------------- */

static int
store_meta_check(struct store *s, const struct store_partial_meta *m, char *key)
{
	char md5[STORE_MD5_HEX / 2];

	if (store_key(s, m->sha256, key) < 0)
		return -EINVAL;
	if (!m->version || !ident_text_valid(m->version, strlen(m->version), IDENT_VERSION_MAX))
		return db_err(s->db, -EINVAL, "artifact %s: version is not 1..%d printable bytes",
		    key, IDENT_VERSION_MAX);
	if (m->size == 0 || m->size > INT64_MAX)
		return db_err(
		    s->db, -EINVAL, "artifact %s: size %" PRIu64 " is invalid", key, m->size);
	if (m->md5 && hex_decode(m->md5, (uint8_t *)md5, sizeof(md5)) < 0)
		return db_err(s->db, -EINVAL, "artifact %s: md5 is not 32 hex digits", key);
	if (!m->url || !*m->url || strnlen(m->url, STORE_URL_MAX + 1) > STORE_URL_MAX)
		return db_err(s->db, -EINVAL, "artifact %s: URL is empty or longer than %d bytes",
		    key, STORE_URL_MAX);
	if (s->max_bytes && m->size > s->max_bytes)
		return db_err(s->db, -EFBIG,
		    "artifact %s (version %s) is %" PRIu64 " bytes, larger than the whole cache "
		    "(cache_max=%" PRIu64 "): raise cache_max",
		    key, m->version, m->size, s->max_bytes);
	return 0;
}

/* Reserves the disk blocks a download will need, so a full disk shows up now with a clear
 * message instead of as a failed write halfway. KEEP_SIZE leaves the file length alone: it
 * stays the count of bytes written, which is what a resume relies on. */
static int
store_reserve(struct store *s, int fd, const char *key, uint64_t size)
{
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) == 0)
		return 0;
	if (errno == ENOSPC || errno == EDQUOT)
		return db_err(s->db, -ENOSPC,
		    "not enough free space in %s for artifact %s (%" PRIu64 " bytes)", s->cache_dir,
		    key, size);
	/* The file system cannot preallocate (EOPNOTSUPP): writes will tell. */
	return 0;
}

static int
store_bind_meta(sqlite3_stmt *st, const char *key, const struct store_partial_meta *m)
{
	db_bind_text(st, 1, key);
	sqlite3_bind_int64(st, 2, m->artifact_id);
	db_bind_text(st, 3, m->version);
	sqlite3_bind_int(st, 4, m->is_delta ? 1 : 0);
	sqlite3_bind_int64(st, 5, (int64_t)m->size);
	db_bind_text(st, 6, m->md5);
	db_bind_text(st, 7, m->url);
	sqlite3_bind_int64(st, 8, m->url_fetched);
	sqlite3_bind_int64(st, 9, db_now());
	return 0;
}

/* Resumes an existing partial: reopens (or recreates, if it vanished) its file. */
static int
store_partial_reopen(struct store *s, const char *key, const struct store_artifact *a,
    const struct store_partial_meta *m, int *fdp, uint64_t *presentp)
{
	char name[STORE_NAME_MAX];
	sqlite3_stmt *st;
	struct stat sb;
	uint64_t present;
	int fd, r;

	if (a->pins > 0)
		return db_err(s->db, -EBUSY, "artifact %s is already being downloaded", key);
	store_part_name(key, name);
	fd = openat(s->partial_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return db_err(s->db, db_neg_errno(), "cannot open %s/partial/%s: %s", s->cache_dir,
		    name, strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return db_err(
		    s->db, -EIO, "%s/partial/%s is not a regular file", s->cache_dir, name);
	}
	present = (uint64_t)sb.st_size;
	/* A different size for the same hash means the old metadata (and bytes) were wrong. */
	if (present > m->size || a->size != m->size) {
		if (ftruncate(fd, 0) < 0) {
			r = db_err(s->db, db_neg_errno(), "cannot truncate %s/partial/%s: %s",
			    s->cache_dir, name, strerror(errno));
			close(fd);
			return r;
		}
		present = 0;
	}
	r = store_reserve(s, fd, key, m->size);
	if (r == 0)
		r = db_prepare(s->db, sql_reopen, &st);
	if (r == 0) {
		store_bind_meta(st, key, m);
		sqlite3_bind_int64(st, 10, (int64_t)present);
		r = db_step(s->db, st, "resuming a download");
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	*fdp = fd;
	*presentp = present;
	return 0;
}

/* Starts a new partial: makes room, creates the file, then the row. */
static int
store_partial_create(struct store *s, const char *key, const struct store_partial_meta *m, int *fdp,
    uint64_t *presentp)
{
	char name[STORE_NAME_MAX];
	sqlite3_stmt *st;
	int fd, r;

	r = store_evict(s, m->size, key);
	if (r < 0)
		return r;
	store_part_name(key, name);
	fd = openat(s->partial_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return db_err(s->db, db_neg_errno(), "cannot create %s/partial/%s: %s",
		    s->cache_dir, name, strerror(errno));
	r = store_reserve(s, fd, key, m->size);
	if (r == 0)
		r = db_prepare(s->db, sql_insert, &st);
	if (r == 0) {
		store_bind_meta(st, key, m);
		r = db_step(s->db, st, "recording a download");
	}
	if (r < 0) {
		close(fd);
		unlinkat(s->partial_fd, name, 0);
		return r;
	}
	*fdp = fd;
	*presentp = 0;
	return 0;
}

int
store_partial_open(
    struct store *s, const struct store_partial_meta *meta, int *fd, uint64_t *present)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	int r;

	r = store_meta_check(s, meta, key);
	if (r < 0)
		return r;
	r = store_get(s, key, &a);
	if (r == -ENOENT)
		return store_partial_create(s, key, meta, fd, present);
	if (r < 0)
		return r;
	if (a.state == STORE_STATE_COMPLETE) {
		struct stat sb;

		if (fstatat(s->blobs_fd, key, &sb, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
			return db_err(s->db, -EEXIST, "artifact %s is already in the cache", key);
		/* Its blob vanished behind our back: forget it and download again. */
		r = store_exec_key(s, sql_delete, key, 0, "dropping a vanished artifact");
		if (r < 0)
			return r;
		return store_partial_create(s, key, meta, fd, present);
	}
	return store_partial_reopen(s, key, &a, meta, fd, present);
}

/* Runs a statement on key's partial row; -ENOENT if there is no such partial. */
static int
store_partial_update(struct store *s, const char *key, int r)
{
	if (r < 0)
		return r;
	if (db_changes(s->db) == 0)
		return db_err(s->db, -ENOENT, "artifact %s has no download in progress", key);
	return 0;
}

int
store_partial_progress(struct store *s, const char *sha256, uint64_t present)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	int r;

	r = store_find_partial(s, sha256, key, &a);
	if (r < 0)
		return r;
	if (present > a.size)
		return db_err(s->db, -EINVAL,
		    "artifact %s: %" PRIu64 " bytes present is more than its size %" PRIu64, key,
		    present, a.size);
	r = store_exec_key(s, sql_progress, key, (int64_t)present, "recording progress");
	return store_partial_update(s, key, r);
}

int
store_partial_restart(struct store *s, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1], name[STORE_NAME_MAX];
	struct store_artifact a;
	int fd, r;

	r = store_find_partial(s, sha256, key, &a);
	if (r < 0)
		return r;
	store_part_name(key, name);
	fd = openat(s->partial_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return db_err(s->db, db_neg_errno(), "cannot open %s/partial/%s: %s", s->cache_dir,
		    name, strerror(errno));
	if (ftruncate(fd, 0) < 0) {
		r = db_err(s->db, db_neg_errno(), "cannot truncate %s/partial/%s: %s", s->cache_dir,
		    name, strerror(errno));
		close(fd);
		return r;
	}
	/* Truncating released the preallocation; take it again. */
	r = store_reserve(s, fd, key, a.size);
	close(fd);
	if (r < 0)
		return r;
	r = store_exec_key(s, sql_progress, key, 0, "recording a restart");
	return store_partial_update(s, key, r);
}

int
store_partial_set_url(struct store *s, const char *sha256, const char *url, int64_t fetched)
{
	char key[STORE_SHA256_HEX + 1];
	sqlite3_stmt *st;
	int r;

	r = store_key(s, sha256, key);
	if (r < 0)
		return r;
	if (!url || !*url || strnlen(url, STORE_URL_MAX + 1) > STORE_URL_MAX)
		return db_err(s->db, -EINVAL, "artifact %s: URL is empty or longer than %d bytes",
		    key, STORE_URL_MAX);
	r = db_prepare(s->db, sql_set_url, &st);
	if (r < 0)
		return r;
	db_bind_text(st, 1, key);
	db_bind_text(st, 2, url);
	sqlite3_bind_int64(st, 3, fetched);
	r = db_step(s->db, st, "recording a URL");
	return store_partial_update(s, key, r);
}

int
store_partial_close(struct store *s, const char *sha256, int fd)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	struct stat sb;
	uint64_t present = 0;
	int r;

	if (fd >= 0 && fstat(fd, &sb) == 0)
		present = (uint64_t)sb.st_size;
	if (fd >= 0)
		close(fd);
	r = store_find_partial(s, sha256, key, &a);
	if (r < 0)
		return r;
	if (present > a.size)
		present = 0; /* the next open truncates it */
	r = store_exec_key(s, sql_close, key, (int64_t)present, "ending a download");
	return store_partial_update(s, key, r);
}

/* Hashes fd from offset 0 with SHA-256, reading 64 KiB at a time. *len gets the length. */
static int
store_hash_fd(struct store *s, int fd, uint8_t out[STORE_SHA256_LEN], uint64_t *len)
{
	EVP_MD_CTX *ctx;
	uint8_t *buf;
	uint64_t off = 0;
	ssize_t n;
	int r = 0;

	buf = malloc(STORE_HASH_CHUNK);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || !EVP_DigestInit_ex(ctx, s->sha256, NULL)) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		n = pread(fd, buf, STORE_HASH_CHUNK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		if (!EVP_DigestUpdate(ctx, buf, (size_t)n)) {
			r = -EIO;
			goto out;
		}
		off += (uint64_t)n;
	}
	if (!EVP_DigestFinal_ex(ctx, out, NULL))
		r = -EIO;
	*len = off;
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return r;
}

/* Deletes a partial that failed its checks: the row, then the file. */
static int store_commit_refuse(struct store *s, const char *key, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
store_commit_refuse(struct store *s, const char *key, int err, const char *fmt, ...)
{
	char why[DB_ERRMSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	store_remove(s, key, STORE_STATE_PARTIAL);
	return db_err(s->db, err, "artifact %s refused, download deleted: %s", key, why);
}

int
store_commit(struct store *s, const char *sha256, int fd, const uint8_t digest[STORE_SHA256_LEN])
{
	char key[STORE_SHA256_HEX + 1], name[STORE_NAME_MAX], got[STORE_SHA256_HEX + 1];
	struct stat fs, ps;
	struct store_artifact a;
	int r;

	r = store_find_partial(s, sha256, key, &a);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	store_part_name(key, name);
	if (fstatat(s->partial_fd, name, &ps, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
		if (fd >= 0)
			close(fd);
		store_exec_key(s, sql_delete, key, 0, "dropping a vanished download");
		return db_err(s->db, -ENOENT,
		    "artifact %s: %s/partial/%s vanished during the download; forgotten", key,
		    s->cache_dir, name);
	}
	if (fd < 0 || fstat(fd, &fs) < 0 ||
	    fstatat(s->partial_fd, name, &ps, AT_SYMLINK_NOFOLLOW) < 0 || fs.st_dev != ps.st_dev ||
	    fs.st_ino != ps.st_ino) {
		if (fd >= 0)
			close(fd);
		store_exec_key(s, sql_release, key, 0, "ending a download");
		return db_err(s->db, -EINVAL,
		    "artifact %s: the descriptor given is not %s/partial/%s", key, s->cache_dir,
		    name);
	}
	/* Flush before the checks: what is verified is then what the disk holds. */
	if (fsync(fd) < 0) {
		r = -errno;
		close(fd);
		return store_commit_refuse(s, key, -EIO, "fsync failed: %s", strerror(-r));
	}
	close(fd);
	if ((uint64_t)fs.st_size != a.size)
		return store_commit_refuse(s, key, -EBADMSG,
		    "%" PRIu64 " bytes downloaded, %" PRIu64 " expected", (uint64_t)fs.st_size,
		    a.size);
	hex_encode(digest, STORE_SHA256_LEN, got);
	if (strcmp(got, key) != 0)
		return store_commit_refuse(s, key, -EBADMSG, "content has SHA-256 %s", got);

	/* Read-only before it becomes visible, so no serving path ever sees a writable blob. */
	if (fchmodat(s->partial_fd, name, 0444, 0) < 0 ||
	    renameat(s->partial_fd, name, s->blobs_fd, key) < 0)
		return store_commit_refuse(s, key, -EIO, "cannot move it into %s/blobs: %s",
		    s->cache_dir, strerror(errno));
	/* The rename is durable only once both directories are. */
	if (fsync(s->blobs_fd) < 0 || fsync(s->partial_fd) < 0) {
		r = -errno;
		unlinkat(s->blobs_fd, key, 0);
		store_exec_key(s, sql_delete, key, 0, "removing an artifact");
		return db_err(s->db, -EIO, "artifact %s refused: fsync of %s failed: %s", key,
		    s->cache_dir, strerror(-r));
	}
	r = store_exec_key(s, sql_complete, key, db_now(), "recording a complete artifact");
	if (r < 0) {
		/* The blob stays (the next start's reconciliation promotes it); the pin goes. */
		char why[DB_ERRMSG_MAX];

		snprintf(why, sizeof(why), "%s", store_errmsg(s));
		store_exec_key(s, sql_release, key, 0, "ending a download");
		return db_err(s->db, r, "%s", why);
	}
	/* Over the cap now is not this commit's failure: pins may hold the space for a while. */
	store_evict(s, 0, key);
	return 0;
}

int
store_discard(struct store *s, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	int r;

	r = store_find(s, sha256, key, &a);
	if (r < 0)
		return r;
	if (a.pins > 0)
		return db_err(s->db, -EBUSY, "artifact %s is in use (%u pins)", key, a.pins);
	return store_remove(s, key, a.state);
}

/* --- serving ---------------------------------------------------------------------------- */

/* Gets a complete artifact's row and opens its blob, dropping a row whose file vanished and
 * removing a blob whose length changed. */
static int
store_blob_get(struct store *s, const char *sha256, char *key, struct store_artifact *a, int *fdp,
    struct stat *sb)
{
	int fd, r;

	r = store_find(s, sha256, key, a);
	if (r < 0)
		return r;
	if (a->state != STORE_STATE_COMPLETE)
		return db_err(s->db, -ENOENT, "artifact %s is still downloading", key);
	fd = openat(s->blobs_fd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		store_exec_key(s, sql_delete, key, 0, "dropping a vanished artifact");
		return db_err(
		    s->db, -ENOENT, "blob %s/blobs/%s vanished; forgotten", s->cache_dir, key);
	}
	if (fd < 0)
		return db_err(s->db, db_neg_errno(), "cannot open %s/blobs/%s: %s", s->cache_dir,
		    key, strerror(errno));
	if (fstat(fd, sb) < 0 || !S_ISREG(sb->st_mode) || (uint64_t)sb->st_size != a->size) {
		close(fd);
		store_remove(s, key, STORE_STATE_COMPLETE);
		return db_err(s->db, -EBADMSG,
		    "blob %s/blobs/%s changed behind otagwd's back (length %jd, expected %" PRIu64
		    "); removed",
		    s->cache_dir, key, (intmax_t)sb->st_size, a->size);
	}
	*fdp = fd;
	return 0;
}

int
store_blob_open(struct store *s, const char *sha256, int *fd, uint64_t *size)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	/* Initialised for clang-analyzer, which cannot tell that store_blob_get's -errno is
	 * negative and so follows a "success" that wrote nothing. */
	struct stat sb = {0};
	int r, bfd = -1;

	r = store_blob_get(s, sha256, key, &a, &bfd, &sb);
	if (r < 0)
		return r;
	/* Only the eviction order depends on this; serving does not fail for it. */
	store_exec_key(s, sql_touch, key, db_now(), "marking an artifact used");
	*fd = bfd;
	*size = (uint64_t)sb.st_size;
	return 0;
}

int
store_blob_verify(struct store *s, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1], got[STORE_SHA256_HEX + 1];
	uint8_t digest[STORE_SHA256_LEN];
	struct store_artifact a;
	struct stat sb;
	uint64_t len = 0;
	int r, fd = -1; /* as in store_blob_open() */

	r = store_blob_get(s, sha256, key, &a, &fd, &sb);
	if (r < 0)
		return r;
	r = store_hash_fd(s, fd, digest, &len);
	close(fd);
	if (r < 0)
		return db_err(
		    s->db, r, "cannot read %s/blobs/%s: %s", s->cache_dir, key, strerror(-r));
	hex_encode(digest, sizeof(digest), got);
	if (len != a.size || strcmp(got, key) != 0) {
		store_remove(s, key, STORE_STATE_COMPLETE);
		return db_err(s->db, -EBADMSG,
		    "blob %s/blobs/%s is corrupt (%" PRIu64 " bytes with SHA-256 %s); removed",
		    s->cache_dir, key, len, got);
	}
	return store_exec_key(s, sql_verified, key, 0, "marking an artifact verified");
}

/* --- pins, usage, purge, listing -------------------------------------------------------- */

int
store_pin(struct store *s, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1];
	int r;

	r = store_key(s, sha256, key);
	if (r == 0)
		r = store_exec_key(s, sql_pin, key, 0, "pinning an artifact");
	if (r == 0 && db_changes(s->db) == 0)
		r = db_err(s->db, -ENOENT, "artifact %s is not in the cache", key);
	return r;
}

int
store_unpin(struct store *s, const char *sha256)
{
	char key[STORE_SHA256_HEX + 1];
	struct store_artifact a;
	int r;

	r = store_key(s, sha256, key);
	if (r == 0)
		r = store_exec_key(s, sql_unpin, key, 0, "unpinning an artifact");
	if (r < 0 || db_changes(s->db) > 0)
		return r;
	r = store_get(s, key, &a);
	return r < 0 ? r : db_err(s->db, -EINVAL, "artifact %s is not pinned", key);
}

int
store_usage(struct store *s, uint64_t *bytes, uint64_t *count)
{
	return store_query_u64(s, sql_usage, bytes, count);
}

int
store_purge(struct store *s, uint64_t *bytes, uint64_t *count)
{
	char key[STORE_SHA256_HEX + 1];
	uint64_t freed = 0, n = 0, len;
	enum store_state state;
	sqlite3_stmt *st;
	int r;

	/* One row at a time, so removing rows never disturbs an open query. */
	for (;;) {
		r = db_prepare(s->db, sql_unpinned, &st);
		if (r < 0)
			return r;
		r = db_step(s->db, st, "choosing an artifact to purge");
		if (r <= 0)
			break;
		db_column_copy(st, 0, key, sizeof(key));
		state = store_state_parse(sqlite3_column_text(st, 1));
		len = db_column_u64(st, 2);
		db_reset(st);
		r = store_remove(s, key, state);
		if (r < 0)
			break;
		freed += len;
		n++;
	}
	if (bytes)
		*bytes = freed;
	if (count)
		*count = n;
	return r;
}

int
store_foreach_artifact(
    struct store *s, int (*cb)(const struct store_artifact *a, void *arg), void *arg)
{
	struct store_artifact a;
	sqlite3_stmt *st;
	int64_t after = 0, last;
	int r;

	r = db_query_int(s->db, sql_max_lru, &last);
	/* Walk by lru up to the largest at the start: an artifact cb touches moves past it. */
	while (r == 0) {
		r = db_prepare(s->db, sql_next, &st);
		if (r < 0)
			break;
		sqlite3_bind_int64(st, 1, after);
		sqlite3_bind_int64(st, 2, last);
		r = db_step(s->db, st, "listing artifacts");
		if (r <= 0)
			break;
		store_row(st, &a);
		after = sqlite3_column_int64(st, 14);
		db_reset(st);
		r = cb(&a, arg);
	}
	return r;
}
