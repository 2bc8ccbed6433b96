/* Running the one libevent loop in tests until something has happened: a condition checked after
 * every pass of the loop, with a deadline that fails the wait, never a timing assertion. A short
 * tick keeps the loop turning so that a condition may also poll what the loop does not watch (a
 * raw peer's socket, a child's output). */
#ifndef OTAGW_TESTS_TLOOP_H
#define OTAGW_TESTS_TLOOP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

/* Runs base until cond(arg) holds (checked before the first pass too) or timeout_ms passes.
 * Returns whether cond held. */
bool tloop_until(struct event_base *base, bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/* tloop_until() that fails the test ("timed out after N ms waiting for <what>") on the
 * deadline. */
void tloop_wait(struct event_base *base, bool (*cond)(void *arg), void *arg, unsigned timeout_ms,
    const char *what);

/* Runs base for ms milliseconds: to give what must NOT happen its chance to. */
void tloop_for(struct event_base *base, unsigned ms);

/* A condition: true once the bool at arg is. */
bool tloop_flag(void *arg);

/* A condition: true once *n reaches want (arg points to this). */
struct tloop_count {
	const size_t *n;
	size_t want;
};
bool tloop_count(void *arg);

#endif
