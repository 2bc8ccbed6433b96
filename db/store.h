/* The payload store: verified firmware blobs under <cache_dir>/blobs/<sha256hex>, downloads in
 * progress under <cache_dir>/partial/<sha256hex>.part, indexed by the artifacts table of the
 * sqlite database. The files are the truth for what bytes exist; the table is the index. The
 * store owns the database handle (see db.h); devices.h and history.h work on store_db().
 *
 * Artifacts are keyed by their SHA-256 (64 hex digits; either case is accepted, lower case is
 * stored and shown). Every function returns 0 or a negative errno; on failure store_errmsg()
 * says what went wrong, naming the file or the artifact, for the daemon to log. Output
 * parameters are untouched on failure. Nothing here logs above debug or blocks for long, except
 * store_blob_verify(), which reads a whole blob.
 *
 * Download life cycle (the download manager):
 *   store_partial_open()  -> fd + bytes already present; the entry is pinned for the caller
 *   pwrite(fd, ..., offset = present...), store_partial_progress() now and then,
 *   store_partial_restart() if the server ignored Range, store_partial_set_url() on a new URL
 *   then exactly one of: store_commit() (consumes fd and pin) or store_partial_close() (keeps
 *   the partial for a later resume, releases fd and pin).
 * Serving (a session): store_pin(), store_blob_verify() if !verified, store_blob_open(), pread,
 * close, store_unpin(). */
#ifndef OTAGW_STORE_H
#define OTAGW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ident.h"

struct db;
struct store;

#define STORE_SHA256_LEN 32
#define STORE_SHA256_HEX 64
#define STORE_MD5_HEX    32
/* Longest payload URL kept (signed CDN links are a few hundred bytes). */
#define STORE_URL_MAX 4095
/* Room for store_errmsg() texts. */
#define STORE_ERRMSG_MAX 512

struct store_config {
	const char *db_path;   /* sqlite file, e.g. /var/lib/otagw/otagw.db */
	const char *cache_dir; /* holds blobs/ and partial/, e.g. /var/cache/otagw */
	uint64_t max_bytes;    /* cache size cap (complete + partial artifacts); 0 = no cap */
};

enum store_state {
	STORE_STATE_PARTIAL,  /* download in progress or interrupted: partial/<sha>.part */
	STORE_STATE_COMPLETE, /* verified at commit: blobs/<sha>, read-only */
};

/* One row of the artifacts table. Times are wall-clock Unix seconds (shown, not used for
 * intervals); 0 means never. */
struct store_artifact {
	char sha256[STORE_SHA256_HEX + 1];
	int64_t artifact_id; /* Memfault's artifact id, 0 if unknown */
	char version[IDENT_VERSION_MAX + 1];
	bool is_delta;
	uint64_t size;
	char md5[STORE_MD5_HEX + 1]; /* "" if Memfault gave none */
	enum store_state state;
	uint64_t bytes_present; /* complete: size; partial: last recorded progress */
	char url[STORE_URL_MAX + 1];
	int64_t url_fetched; /* when the URL was obtained (signed URLs expire after ~6 h) */
	int64_t created;
	int64_t last_used;
	unsigned pins;
	bool verified; /* hashed by this process (store_commit or store_blob_verify) */
};

/* What store_partial_open() needs to know about an artifact. Strings are copied. */
struct store_partial_meta {
	const char *sha256;  /* 64 hex digits */
	int64_t artifact_id; /* 0 if unknown */
	const char *version; /* release version, ident_text_valid(IDENT_VERSION_MAX) */
	bool is_delta;
	uint64_t size;   /* 1..max_bytes */
	const char *md5; /* 32 hex digits, or NULL */
	const char *url; /* payload URL, 1..STORE_URL_MAX bytes */
	int64_t url_fetched;
};

/* Opens the store: creates missing directories (0750: cache_dir, its blobs/ and partial/, and
 * the database's directory; their parents must exist), takes an exclusive lock on cache_dir (a
 * second otagwd on the same cache gets -EBUSY), opens and migrates the database, marks
 * transfers left in progress by a previous process as aborted, and reconciles the index with
 * the files: blob files without a row, with a bad name, or whose length differs from the row
 * are removed; rows without files are dropped; a partial row keeps its file for resume with
 * bytes_present taken from the file length; a blob renamed into place just before a crash is
 * recorded complete; pins and verified flags are reset (they are process state).
 * On success *out owns the store (store_free()). On failure err (if not NULL) receives a
 * message naming the path and what to do, and the return value is: -ENOENT (a parent directory
 * is missing), -EACCES/-EROFS (not writable), -ENOTDIR, -EBUSY (locked by another process),
 * -EBADMSG (the database is corrupt or not an otagw database), -ENOTSUP (the database was
 * written by a newer otagw), -EIO, -ENOMEM, -EINVAL (bad config). */
int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen);

/* Closes the database and the directories. Accepts NULL. Returns NULL. */
struct store *store_free(struct store *s);

/* The message for the last failed call on s (valid until the next call). */
const char *store_errmsg(const struct store *s);

/* The database handle, for devices.h and history.h. Owned by the store. */
struct db *store_db(struct store *s);

/* Changes the size cap (config reload) and evicts down to it. -ENOSPC if pinned entries alone
 * exceed the new cap (the cap applies; eviction resumes as pins are released). */
int store_set_max_bytes(struct store *s, uint64_t max_bytes);

/* Reads the artifact's row into *out. -EINVAL for a malformed sha256, -ENOENT if unknown. */
int store_artifact_get(struct store *s, const char *sha256, struct store_artifact *out);

/* Creates the partial file for an artifact (recording meta) or reopens the existing one for a
 * resume (updating url, url_fetched and the other metadata). *fd is O_RDWR|O_CLOEXEC, owned by
 * the caller until it hands it to store_commit() or store_partial_close(); write with
 * pwrite() at offsets from *present (the current file length) on; if *present is the whole
 * size (a crash in the middle of a commit), request nothing: hash the file and commit. Takes
 * one pin for the caller. Before creating, evicts least-recently-used unpinned entries so the
 * full size fits the cap, and reserves the disk space (fallocate with KEEP_SIZE, where
 * supported).
 * Errors: -EINVAL (bad meta), -EFBIG (size alone is larger than the cap: raise the cap),
 * -EEXIST (already complete: serve it), -EBUSY (pinned: another download holds it), -ENOSPC
 * (pinned entries leave no room under the cap, or the disk is full), -EIO. */
int store_partial_open(
    struct store *s, const struct store_partial_meta *meta, int *fd, uint64_t *present);

/* Records download progress (bytes written so far) for usage figures. One row update (a WAL
 * fsync) and no fsync of the file: after a crash the file length is what counts. -ENOENT if no
 * partial exists, -EINVAL if present is above the artifact size. */
int store_partial_progress(struct store *s, const char *sha256, uint64_t present);

/* The server ignored Range: truncates the partial file to 0 bytes (the caller's fd sees it;
 * write again from offset 0) and records 0 bytes present. -ENOENT if no partial exists. */
int store_partial_restart(struct store *s, const char *sha256);

/* Records a fresh payload URL and the wall-clock time it was obtained. -ENOENT, -EINVAL. */
int store_partial_set_url(struct store *s, const char *sha256, const char *url, int64_t fetched);

/* Ends an interrupted download, keeping the partial for a later resume: records the file
 * length as progress, closes fd and releases the pin store_partial_open() took. fd is closed
 * in every case. */
int store_partial_close(struct store *s, const char *sha256, int fd);

/* Makes a finished download servable. fd (from store_partial_open) is consumed and the pin
 * released in every case. Checks that fd is the partial file, fsyncs it, checks its length is
 * the artifact's size and that digest (the SHA-256 the caller computed over the bytes it
 * wrote) equals the sha256 key; renames it to blobs/<sha256> read-only (0444), fsyncs both
 * directories and records the artifact complete; then evicts least-recently-used unpinned
 * entries down to the cap (never the one just committed).
 * -EBADMSG: wrong size or digest; the partial file and its row are deleted and nothing is
 * served. -ENOENT: no partial for sha256 (or its file vanished: the row is dropped too).
 * -EINVAL: fd is not its partial file (the partial stays for a resume). -EIO: fsync or
 * rename failed (the partial is deleted: its bytes cannot be trusted). */
int store_commit(
    struct store *s, const char *sha256, int fd, const uint8_t digest[STORE_SHA256_LEN]);

/* Deletes an artifact, partial or complete, and its file. -EBUSY if pinned (a session serves
 * it or a download holds it), -ENOENT if unknown. */
int store_discard(struct store *s, const char *sha256);

/* Opens a complete blob for serving: *fd is O_RDONLY|O_CLOEXEC (caller closes it), *size its
 * length. Marks the artifact most recently used. -ENOENT if unknown or not complete; if the
 * file vanished the row is dropped (-ENOENT); if its length changed behind our back the blob
 * and its row are removed (-EBADMSG). */
int store_blob_open(struct store *s, const char *sha256, int *fd, uint64_t *size);

/* Re-hashes a complete blob (SHA-256, 64 KiB reads) and compares it with its key. 0: intact;
 * the artifact is marked verified for this process lifetime. -EBADMSG: corrupt; the blob and
 * its row are removed, pinned or not, so it is never served again (sessions holding a pin get
 * -ENOENT from store_unpin()). -ENOENT: unknown, incomplete or vanished. Blocks while it reads
 * the blob: call it once per blob per process (when !verified), before first serving it. */
int store_blob_verify(struct store *s, const char *sha256);

/* Pins an artifact (partial or complete) so eviction and purge leave it alone. Every pin needs
 * one store_unpin(). Pins are process state: store_open() resets them. -ENOENT if unknown. */
int store_pin(struct store *s, const char *sha256);

/* Releases one pin. -ENOENT if unknown, -EINVAL if not pinned. */
int store_unpin(struct store *s, const char *sha256);

/* Bytes on disk (complete sizes plus partial progress) and number of artifacts. Either pointer
 * may be NULL. */
int store_usage(struct store *s, uint64_t *bytes, uint64_t *count);

/* Drops every unpinned artifact, complete or partial (D-Bus PurgeCache). *bytes and *count
 * (either may be NULL) receive what was freed. */
int store_purge(struct store *s, uint64_t *bytes, uint64_t *count);

/* Calls cb for every artifact, least recently used first. Rows are read one at a time, so cb
 * may call store functions; an artifact used during the walk moves to its end and is not
 * visited twice, and artifacts added during it are not visited. A non-zero return from cb
 * stops the walk and is returned. */
int store_foreach_artifact(
    struct store *s, int (*cb)(const struct store_artifact *a, void *arg), void *arg);

/* Parses a sha256 in hex (either case) into lower case. Returns 0 or -EINVAL. */
int store_sha256_norm(const char *in, char out[STORE_SHA256_HEX + 1]);

#endif
