/* Shared fixtures for the db/ tests: a private temporary directory per test with a store in
 * it, downloads into it, and the integrity check every test ends with. The generic pieces
 * (runner, directories, files, payloads) are tests/support's. */
#ifndef OTAGW_DBTEST_H
#define OTAGW_DBTEST_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "ck.h"
#include "db.h"
#include "store.h"
#include "tdata.h"
#include "tfile.h"

struct dbtest {
	char dir[256];   /* the test's temporary directory */
	char db[320];    /* <dir>/state/otagw.db */
	char cache[320]; /* <dir>/cache */
	struct store *s;
};

/* Creates the temporary directory and fills in the paths (the store is not opened). */
void dbtest_init(struct dbtest *t);

/* Opens t->s with the given cap; fails the test (with the store's message) on error. */
void dbtest_open(struct dbtest *t, uint64_t max_bytes);

/* store_open() on t's paths; returns its result and leaves err filled. */
int dbtest_try_open(
    struct dbtest *t, uint64_t max_bytes, struct store **out, char *err, size_t errlen);

/* Closes the store (after running db_integrity_check() on it), removes the directory (which
 * tests/support removes at exit anyway, also after a failed assertion). */
void dbtest_done(struct dbtest *t);

/* Closes and reopens the store (reconciliation runs again), checking integrity before. */
void dbtest_reopen(struct dbtest *t, uint64_t max_bytes);

/* Downloads buf into the store the way the download manager does (partial_open, pwrite,
 * commit) and returns its key in hex. Fails the test on any error. */
void dbtest_add(struct store *s, const uint8_t *buf, size_t len, char hex[STORE_SHA256_HEX + 1]);

/* dbtest_add() of len bytes made from seed. */
void dbtest_add_seed(struct store *s, unsigned seed, size_t len, char hex[STORE_SHA256_HEX + 1]);

/* Fills a meta for buf's artifact (url "https://cdn.example/<hex>", version "1.0.0"). hex must
 * hold the key. */
void dbtest_meta(struct store_partial_meta *m, const char *hex, size_t len);

/* Path helpers: <cache>/blobs/<hex>, <cache>/partial/<hex>.part. */
void dbtest_blob_path(const struct dbtest *t, const char *hex, char *out, size_t size);
void dbtest_part_path(const struct dbtest *t, const char *hex, char *out, size_t size);

/* True if path exists. Length of a file (-1 if missing). */
int dbtest_exists(const char *path);
long long dbtest_file_len(const char *path);

/* Number of entries in a directory, "." and ".." not counted. */
int dbtest_dir_count(const char *path);

/* Runs SQL on the database with a separate sqlite connection (the way an operator or a crash
 * leaves rows behind). Fails the test on error. */
void dbtest_sql(const char *db_path, const char *sql);

/* Runs a one-integer query with a separate connection. */
long long dbtest_sql_int(const char *db_path, const char *sql);

#endif
