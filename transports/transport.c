/* The common transport object behind transport.h: argument checks, the one callback, stats,
 * and lifetime. A transport is reference counted only to survive its own callback: the owner
 * holds one reference, every dispatch holds another, and transport_free() from inside a
 * callback leaves the real free to the dispatch's final unref. */
#include "transport_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int
transport_initv(struct transport *t, const struct transport_ops *ops, enum transport_kind kind,
    const char *fmt, va_list ap)
{
	*t = (struct transport){.ops = ops, .kind = kind, .refs = 1};
	if (vasprintf(&t->name, fmt, ap) < 0) {
		t->name = NULL;
		return -ENOMEM;
	}
	return 0;
}

int
transport_init(struct transport *t, const struct transport_ops *ops, enum transport_kind kind,
    const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = transport_initv(t, ops, kind, fmt, ap);
	va_end(ap);
	return r;
}

void
transport_init_undo(struct transport *t)
{
	free(t->name);
	t->name = NULL;
}

void
transport_ref(struct transport *t)
{
	t->refs++;
}

void
transport_unref(struct transport *t)
{
	void (*destroy)(void *arg);

	if (--t->refs > 0)
		return;
	destroy = t->cb_destroy;
	t->cb_destroy = NULL;
	t->cb = NULL;
	if (destroy != NULL)
		destroy(t->cb_arg);
	free(t->name);
	t->name = NULL;
	t->ops->free(t);
}

bool
transport_report(
    struct transport *t, enum transport_event ev, const uint8_t *msg, size_t len, int err)
{
	bool alive;

	if (t->freed)
		return false;
	switch (ev) {
	case TRANSPORT_EV_CONNECTED:
		if (t->announced)
			return true;
		t->announced = true;
		if (t->was_announced)
			t->stats.reconnects++;
		t->was_announced = true;
		break;
	case TRANSPORT_EV_DISCONNECTED:
		if (!t->announced)
			return true;
		t->announced = false;
		break;
	case TRANSPORT_EV_MESSAGE:
		t->stats.msgs_in++;
		break;
	case TRANSPORT_EV_BAD_FRAME:
		t->stats.bad_frames++;
		break;
	case TRANSPORT_EV_WRITABLE:
		break;
	}
	if (t->cb == NULL)
		return true;
	transport_ref(t);
	t->cb(t, ev, msg, len, err, t->cb_arg);
	alive = !t->freed;
	transport_unref(t);
	return alive;
}

void
transport_set_callback(struct transport *t, transport_cb cb, void *arg, void (*destroy)(void *arg))
{
	void (*old_destroy)(void *arg) = t->cb_destroy;
	void *old_arg = t->cb_arg;

	t->cb = cb;
	t->cb_arg = arg;
	t->cb_destroy = destroy;
	/* Like BlueZ's io handlers: replacing a registration releases the old user data, unless
	 * it is the very same registration again. */
	if (old_destroy != NULL && (old_destroy != destroy || old_arg != arg))
		old_destroy(old_arg);
}

int
transport_send(struct transport *t, const uint8_t *msg, size_t len)
{
	int r;

	if (t->freed || !t->up)
		return -ENOTCONN;
	if (msg == NULL || len == 0)
		return -EINVAL;
	if (len > t->ops->mtu(t))
		return -EMSGSIZE;
	r = t->ops->send(t, msg, len);
	if (r == 0)
		t->stats.msgs_out++;
	return r;
}

size_t
transport_mtu(const struct transport *t)
{
	if (t->freed || !t->up)
		return 0;
	return t->ops->mtu(t);
}

size_t
transport_queued(const struct transport *t)
{
	return t->ops->queued(t);
}

bool
transport_connected(const struct transport *t)
{
	return t->up && !t->freed;
}

enum transport_kind
transport_kind(const struct transport *t)
{
	return t->kind;
}

const char *
transport_name(const struct transport *t)
{
	return t->name;
}

void
transport_get_stats(const struct transport *t, struct transport_stats *out)
{
	*out = t->stats;
}

void
transport_free(struct transport *t)
{
	if (t == NULL || t->freed)
		return;
	t->freed = true;
	transport_unref(t);
}
