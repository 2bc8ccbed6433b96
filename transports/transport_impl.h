/* The implementer's side of transport.h: the common object every link kind embeds, the ops
 * table that makes a kind, and the helpers a kind uses to report events. Only transports/ code
 * includes this; the rest of otagw sees the opaque struct transport of transport.h. */
#ifndef OTAGW_TRANSPORT_IMPL_H
#define OTAGW_TRANSPORT_IMPL_H

#include <stdarg.h>

#include "transport.h"

/* What differs between link kinds. Every member is required. */
struct transport_ops {
	/* Queues one message. transport_send() has already checked that the link is up and that
	 * 0 < len <= mtu. Returns 0 or -EAGAIN (above high water: nothing queued). */
	int (*send)(struct transport *t, const uint8_t *msg, size_t len);
	/* Largest message the link takes while it is up. */
	size_t (*mtu)(const struct transport *t);
	/* Bytes queued in user space. */
	size_t (*queued)(const struct transport *t);
	/* Drops the link and frees everything, the memory holding t included. Called exactly
	 * once, after transport_free(), when no dispatch holds a reference any more. transport.c
	 * has already released the name and called the owner's destroy. */
	void (*free)(struct transport *t);
};

/* The common part; a kind embeds it in its own struct (container_of to get back). */
struct transport {
	const struct transport_ops *ops;
	enum transport_kind kind;
	char *name;
	transport_cb cb;
	void *cb_arg;
	void (*cb_destroy)(void *arg);
	struct transport_stats stats;
	unsigned int refs; /* the owner's, plus one per dispatch in progress */
	bool up;           /* the link is usable: transport_send() queues */
	bool announced;    /* CONNECTED reported, DISCONNECTED not yet */
	bool was_announced;
	bool freed; /* transport_free() was called: no more events */
};

#define transport_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Prepares the common part: one reference (the owner's), no callback, zero stats, link down.
 * name is printf-formatted and copied. Returns 0 or -ENOMEM. */
int transport_init(struct transport *t, const struct transport_ops *ops, enum transport_kind kind,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int transport_initv(struct transport *t, const struct transport_ops *ops, enum transport_kind kind,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* Releases what transport_init() took, for a kind whose constructor fails after it. Does not
 * call ops->free. */
void transport_init_undo(struct transport *t);

/* Holds t across a dispatch: a libevent callback of the kind that must keep touching t after
 * reporting calls transport_ref() first and transport_unref() last, so a transport_free() from
 * the owner's callback in between only marks t and the final unref frees it. */
void transport_ref(struct transport *t);
void transport_unref(struct transport *t);

/* Reports one event to the owner and keeps the stats and the CONNECTED/DISCONNECTED alternation:
 * CONNECTED while already announced and DISCONNECTED while not announced are swallowed, so the
 * owner always sees them in turn. MESSAGE counts msgs_in, BAD_FRAME counts bad_frames, a second
 * and later CONNECTED counts reconnects. Holds t across the callback. Returns false if the owner
 * freed t (now or before): the caller must not touch the link any more, and unless it holds a
 * reference of its own, t itself is gone. */
bool transport_report(
    struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err);

#endif
