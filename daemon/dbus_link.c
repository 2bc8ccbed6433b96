/* io.otagw.Link1 (docs/dbus-api.md, "Link hierarchy"): one object per link, served by a
 * fallback vtable under /io/otagw/link that looks the link up by the name in the path. The
 * links module tells us about every change; what each link last showed is kept here, so a
 * change signals only the properties that moved, a new link InterfacesAdded and a removed one
 * InterfacesRemoved. Links change rarely, so their signals go out at once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "busev.h"
#include "daemon.h"
#include "dbus_internal.h"
#include "links.h"

struct dbus_link {
	LIST_ENTRY(dbus_link) entry;
	char name[CONFIG_LINK_NAME_MAX + 1];
	char *address;
	char *last_error;
	bool up;
	unsigned connections;
};

static bool
dbus_link_name_valid(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > CONFIG_LINK_NAME_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

static char *
dbus_link_path(const char *name)
{
	char *path = NULL;

	return sd_bus_path_encode(DBUS_LINK_PATH, name, &path) < 0 ? NULL : path;
}

static struct dbus_link *
dbus_link_find_sent(struct dbus *b, const char *name)
{
	struct dbus_link *l;

	LIST_FOREACH(l, &b->links, entry)
	if (strcmp(l->name, name) == 0)
		return l;
	return NULL;
}

static void
dbus_link_free(struct dbus_link *l)
{
	free(l->address);
	free(l->last_error);
	free(l);
}

/* Copies s into *dst if it differs. Returns true if it did (or tried to). */
static bool
dbus_link_update(char **dst, const char *s)
{
	if (s == NULL)
		s = "";
	if (*dst != NULL && strcmp(*dst, s) == 0)
		return false;
	free(*dst);
	*dst = strdup(s);
	return true;
}

/* Records info as signalled; returns the mask of what changed (1 address, 2 state, 4 error,
 * 8 connections). */
static unsigned
dbus_link_record(struct dbus_link *l, const struct link_info *info)
{
	unsigned changed = 0;

	if (dbus_link_update(&l->address, info->address))
		changed |= 1;
	if (l->up != info->up)
		changed |= 2;
	l->up = info->up;
	if (dbus_link_update(&l->last_error, info->up ? "" : info->last_error))
		changed |= 4;
	if (l->connections != info->connections)
		changed |= 8;
	l->connections = info->connections;
	return changed;
}

static struct dbus_link *
dbus_link_add(struct dbus *b, const struct link_info *info)
{
	struct dbus_link *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	snprintf(l->name, sizeof(l->name), "%s", info->name);
	dbus_link_record(l, info);
	LIST_INSERT_HEAD(&b->links, l, entry);
	return l;
}

static void
dbus_link_changed(const struct link_info *info, bool removed, void *arg)
{
	struct dbus *b = arg;
	struct dbus_link *l = dbus_link_find_sent(b, info->name);
	const char *names[5];
	unsigned changed;
	size_t n = 0;
	char *path;
	int r = 0;

	path = dbus_link_path(info->name);
	if (removed) {
		if (l == NULL)
			goto out;
		LIST_REMOVE(l, entry);
		dbus_link_free(l);
		if (b->bus != NULL && path != NULL)
			r = sd_bus_emit_interfaces_removed(b->bus, path, DBUS_IFACE_LINK, NULL);
	} else if (l == NULL) {
		if (dbus_link_add(b, info) == NULL) {
			log_warn("Link %s: out of memory, it is missing on D-Bus", info->name);
			goto out;
		}
		if (b->bus != NULL && path != NULL)
			r = sd_bus_emit_interfaces_added(b->bus, path, DBUS_IFACE_LINK, NULL);
	} else {
		changed = dbus_link_record(l, info);
		if (changed & 1)
			names[n++] = "Address";
		if (changed & 2)
			names[n++] = "State";
		if (changed & 4)
			names[n++] = "LastError";
		if (changed & 8)
			names[n++] = "Connections";
		names[n] = NULL;
		if (n > 0 && b->bus != NULL && path != NULL)
			r = sd_bus_emit_properties_changed_strv(
			    b->bus, path, DBUS_IFACE_LINK, (char **)names);
	}
	if (r < 0)
		log_debug("Link %s: failed to signal its change: %s", info->name, strerror(-r));
	if (b->be != NULL)
		busev_rearm(b->be);
out:
	free(path);
}

static int
dbus_link_record_one(const struct link_info *info, void *arg)
{
	return dbus_link_add(arg, info) != NULL ? 0 : -ENOMEM;
}

void
dbus_link_reset(struct dbus *b)
{
	struct dbus_link *l;

	while ((l = LIST_FIRST(&b->links)) != NULL) {
		LIST_REMOVE(l, entry);
		dbus_link_free(l);
	}
	if (links_foreach(b->d->links, dbus_link_record_one, b) < 0)
		log_warn("Out of memory listing the links for D-Bus, ignoring");
}

/* --- the objects --- */

struct dbus_link_lookup {
	const char *name;
	const struct link_info *info; /* valid during the walk only */
	int (*cb)(const struct link_info *info, void *arg);
	void *arg;
};

static int
dbus_link_lookup_one(const struct link_info *info, void *arg)
{
	struct dbus_link_lookup *q = arg;

	if (strcmp(info->name, q->name) != 0)
		return 0;
	return q->cb(info, q->arg);
}

/* Calls cb with the link at path. Returns cb's value, or 0 if there is no such link (and
 * then cb is not called; *found tells). */
static int
dbus_link_at(
    struct dbus *b, const char *path, int (*cb)(const struct link_info *, void *), void *arg)
{
	struct dbus_link_lookup q = {.cb = cb, .arg = arg};
	char *name = NULL, *canon;
	int r = 0;

	if (sd_bus_path_decode(path, DBUS_LINK_PATH, &name) <= 0 || name == NULL)
		return 0;
	if (dbus_link_name_valid(name)) {
		canon = dbus_link_path(name);
		if (canon != NULL && strcmp(canon, path) == 0) {
			q.name = name;
			r = links_foreach(b->d->links, dbus_link_lookup_one, &q);
		}
		free(canon);
	}
	free(name);
	return r;
}

static int
dbus_link_exists(const struct link_info *info, void *arg)
{
	(void)info;
	(void)arg;
	return 1;
}

static int
dbus_link_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
    sd_bus_error *error)
{
	(void)bus;
	(void)interface;
	(void)error;
	if (dbus_link_at(userdata, path, dbus_link_exists, NULL) <= 0)
		return 0;
	*found = userdata;
	return 1;
}

struct dbus_link_get {
	const char *property;
	sd_bus_message *reply;
};

static int
dbus_link_get_one(const struct link_info *info, void *arg)
{
	struct dbus_link_get *g = arg;
	const char *p = g->property;
	int r;

	if (strcmp(p, "Name") == 0)
		r = dbus_append_text(g->reply, info->name);
	else if (strcmp(p, "Kind") == 0)
		r = sd_bus_message_append(g->reply, "s", config_link_kind_name(info->kind));
	else if (strcmp(p, "Address") == 0)
		r = dbus_append_text(g->reply, info->address);
	else if (strcmp(p, "State") == 0)
		r = sd_bus_message_append(g->reply, "s", info->up ? "up" : "down");
	else if (strcmp(p, "LastError") == 0)
		r = dbus_append_text(g->reply, info->up ? "" : info->last_error);
	else if (strcmp(p, "Connections") == 0)
		r = sd_bus_message_append(g->reply, "u", (uint32_t)info->connections);
	else
		r = -ENOENT;
	return r < 0 ? r : 1;
}

static int
dbus_link_get_prop(sd_bus *bus, const char *path, const char *interface, const char *property,
    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
	struct dbus_link_get g = {property, reply};
	int r;

	(void)bus;
	(void)interface;
	r = dbus_link_at(userdata, path, dbus_link_get_one, &g);
	if (r == 0)
		return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No link at %s", path);
	return r < 0 ? r : 0;
}

static int
dbus_link_list_one(const struct link_info *info, void *arg)
{
	char ***p = arg;

	**p = dbus_link_path(info->name);
	if (**p == NULL)
		return -ENOMEM;
	(*p)++;
	return 0;
}

static int
dbus_link_count_one(const struct link_info *info, void *arg)
{
	(void)info;
	(*(size_t *)arg)++;
	return 0;
}

static int
dbus_link_enumerate(
    sd_bus *bus, const char *prefix, void *userdata, char ***nodes, sd_bus_error *error)
{
	struct dbus *b = userdata;
	char **paths, **p;
	size_t n = 0;
	int r;

	(void)bus;
	(void)prefix;
	(void)error;
	links_foreach(b->d->links, dbus_link_count_one, &n);
	paths = calloc(n + 1, sizeof(char *));
	if (paths == NULL)
		return -ENOMEM;
	p = paths;
	r = links_foreach(b->d->links, dbus_link_list_one, &p);
	if (r < 0) {
		for (p = paths; *p != NULL; p++)
			free(*p);
		free(paths);
		return r;
	}
	*nodes = paths;
	return 0;
}

#define DBUS_LINK_PROP(name, flags) SD_BUS_PROPERTY(name, "s", dbus_link_get_prop, 0, flags)
#define DBUS_EMITS                  SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE

static const sd_bus_vtable dbus_link_vtable[] = {
    SD_BUS_VTABLE_START(SD_BUS_VTABLE_UNPRIVILEGED),
    DBUS_LINK_PROP("Name", SD_BUS_VTABLE_PROPERTY_CONST),
    DBUS_LINK_PROP("Kind", SD_BUS_VTABLE_PROPERTY_CONST),
    DBUS_LINK_PROP("Address", DBUS_EMITS),
    DBUS_LINK_PROP("State", DBUS_EMITS),
    DBUS_LINK_PROP("LastError", DBUS_EMITS),
    SD_BUS_PROPERTY("Connections", "u", dbus_link_get_prop, 0, DBUS_EMITS),
    SD_BUS_VTABLE_END,
};

int
dbus_link_register(struct dbus *b)
{
	int r;

	r = sd_bus_add_fallback_vtable(
	    b->bus, NULL, DBUS_LINK_PATH, DBUS_IFACE_LINK, dbus_link_vtable, dbus_link_find, b);
	if (r >= 0)
		r = sd_bus_add_node_enumerator(
		    b->bus, NULL, DBUS_LINK_PATH, dbus_link_enumerate, b);
	return r;
}

int
dbus_link_start(struct dbus *b)
{
	int r;

	dbus_link_reset(b);
	r = links_subscribe(b->d->links, dbus_link_changed, b);
	if (r < 0)
		return r;
	b->links_sub = r;
	return 0;
}

void
dbus_link_stop(struct dbus *b)
{
	struct dbus_link *l;

	if (b->links_sub > 0 && b->d->links != NULL)
		links_unsubscribe(b->d->links, b->links_sub);
	b->links_sub = 0;
	while ((l = LIST_FIRST(&b->links)) != NULL) {
		LIST_REMOVE(l, entry);
		dbus_link_free(l);
	}
}
