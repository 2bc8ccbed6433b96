/* otagwctl's side of the D-Bus API (docs/dbus-api.md): connecting, reading properties and
 * objects into JSON, and turning every failed call into otagwctl(1)'s message and exit code. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

const char *
client_bus_text(const struct client *c)
{
	return c->user ? "session bus" : "system bus";
}

int
client_connect(struct client *c)
{
	int r;

	r = c->user ? sd_bus_open_user(&c->bus) : sd_bus_open_system(&c->bus);
	if (r < 0) {
		fprintf(stderr, "otagwctl: otagwd is not running (cannot reach the %s: %s)\n",
		    client_bus_text(c), strerror(-r));
		c->bus = NULL;
		return CTL_EXIT_NOT_RUNNING;
	}
	return CTL_EXIT_OK;
}

void
client_close(struct client *c)
{
	c->bus = sd_bus_flush_close_unref(c->bus);
}

/* The group named in otagwd's "Only root and members of group 'X' may ..." refusal. */
static void
client_denied_group(const sd_bus_error *e, char *group, size_t len)
{
	const char *p = e != NULL && e->message != NULL ? strstr(e->message, "group '") : NULL;
	const char *end;

	snprintf(group, len, "otagw"); /* what the bus policy, io.otagw.conf, names */
	if (p == NULL)
		return;
	p += strlen("group '");
	end = strchr(p, '\'');
	if (end != NULL && (size_t)(end - p) < len && end > p)
		snprintf(group, len, "%.*s", (int)(end - p), p);
}

int
client_error(const struct client *c, int r, const sd_bus_error *e, const char *serial)
{
	const char *msg = e != NULL && e->message != NULL ? e->message : strerror(r < 0 ? -r : r);
	char group[64];

	if (e != NULL && (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
			     sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))) {
		fprintf(stderr,
		    "otagwctl: otagwd is not running (nothing owns " CTL_NAME " on the %s); "
		    "start it with: %s\n",
		    client_bus_text(c),
		    c->user ? "otagwd -c PATH (with [dbus] bus = session)"
			    : "systemctl start otagwd");
		return CTL_EXIT_NOT_RUNNING;
	}
	if ((e != NULL && (sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
			      sd_bus_error_has_name(e, SD_BUS_ERROR_DISCONNECTED))) ||
	    r == -ECONNRESET || r == -ENOTCONN || r == -ETIMEDOUT) {
		fprintf(stderr,
		    "otagwctl: otagwd is not running (it went away during the call: %s)\n", msg);
		return CTL_EXIT_NOT_RUNNING;
	}
	if ((e != NULL && sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED)) || r == -EACCES ||
	    r == -EPERM) {
		client_denied_group(e, group, sizeof(group));
		fprintf(stderr,
		    "otagwctl: access denied: only root and members of group %s may %s\n", group,
		    c->action != NULL ? c->action : "do this");
		return CTL_EXIT_DENIED;
	}
	if (e != NULL && sd_bus_error_has_name(e, "io.otagw.Error.NoSuchDevice")) {
		fprintf(stderr,
		    "otagwctl: no device %s is known to otagwd (see otagwctl devices)\n",
		    serial != NULL ? serial : "");
		return CTL_EXIT_NO_DEVICE;
	}
	fprintf(stderr, "otagwctl: %s\n", msg);
	return CTL_EXIT_FAILURE;
}

/* --- values --- */

static json_t *
client_integer(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static int
client_read_basic(sd_bus_message *m, char type, json_t **out)
{
	union {
		uint8_t y;
		int16_t n;
		uint16_t q;
		int32_t i;
		uint32_t u;
		int64_t x;
		uint64_t t;
		double d;
		int b;
		const char *s;
	} v;
	int r = sd_bus_message_read_basic(m, type, &v);

	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	switch (type) {
	case 'y':
		*out = json_integer(v.y);
		break;
	case 'n':
		*out = json_integer(v.n);
		break;
	case 'q':
		*out = json_integer(v.q);
		break;
	case 'i':
	case 'h':
		*out = json_integer(v.i);
		break;
	case 'u':
		*out = json_integer(v.u);
		break;
	case 'x':
		*out = json_integer(v.x);
		break;
	case 't':
		*out = client_integer(v.t);
		break;
	case 'd':
		*out = json_real(v.d);
		break;
	case 'b':
		*out = json_boolean(v.b);
		break;
	default: /* s, o, g: valid UTF-8, as D-Bus requires */
		*out = json_string(v.s);
		break;
	}
	return *out != NULL ? 0 : -ENOMEM;
}

/* Recursive on containers; D-Bus caps their nesting at 64 and sd-bus refuses deeper messages. */
int
client_read_value(sd_bus_message *m, json_t **out) /* NOLINT(misc-no-recursion): see above */
{
	const char *contents = NULL;
	json_t *item, *key;
	char type;
	int r;

	*out = NULL;
	r = sd_bus_message_peek_type(m, &type, &contents);
	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	switch (type) {
	case 'v':
	case 'r':
	case 'a':
		break;
	default:
		return client_read_basic(m, type, out);
	}
	r = sd_bus_message_enter_container(m, type, contents);
	if (r < 0)
		return r;
	if (type == 'v') {
		r = client_read_value(m, out);
	} else if (type == 'a' && contents[0] == '{' &&
		   (contents[1] == 's' || contents[1] == 'o')) {
		char entry[256]; /* "sv" of "{sv}" */
		size_t len = strlen(contents);

		if (len < 4 || len - 2 >= sizeof(entry))
			return -EBADMSG;
		memcpy(entry, contents + 1, len - 2);
		entry[len - 2] = '\0';
		*out = json_object();
		while (*out != NULL && (r = sd_bus_message_enter_container(m, 'e', entry)) > 0) {
			r = client_read_value(m, &key);
			if (r >= 0) {
				r = client_read_value(m, &item);
				if (r >= 0)
					json_object_set_new(*out, json_string_value(key), item);
				json_decref(key);
			}
			if (r >= 0)
				r = sd_bus_message_exit_container(m);
			if (r < 0)
				break;
		}
	} else { /* arrays and structs: JSON arrays */
		*out = json_array();
		while (*out != NULL && !sd_bus_message_at_end(m, false)) {
			r = client_read_value(m, &item);
			if (r < 0)
				break;
			json_array_append_new(*out, item);
		}
	}
	if (*out == NULL)
		return -ENOMEM;
	if (r < 0) {
		json_decref(*out);
		*out = NULL;
		return r;
	}
	return sd_bus_message_exit_container(m);
}

int
client_read_props(sd_bus_message *m, json_t *obj)
{
	json_t *props = NULL;
	const char *k;
	json_t *v;
	int r;

	r = client_read_value(m, &props);
	if (r < 0)
		return r;
	if (!json_is_object(props)) {
		json_decref(props);
		return -EBADMSG;
	}
	json_object_foreach(props, k, v) json_object_set(obj, k, v);
	json_decref(props);
	return 0;
}

int
client_get_all(
    struct client *c, const char *path, const char *iface, const char *serial, json_t **out)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	json_t *obj = json_object();
	int r, ret = 0;

	r = sd_bus_call_method(c->bus, CTL_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
	    &e, &reply, "s", iface);
	if (r < 0) {
		ret = client_error(c, r, &e, serial);
	} else if (obj == NULL || client_read_props(reply, obj) < 0) {
		fprintf(
		    stderr, "otagwctl: otagwd sent properties of %s that cannot be read\n", path);
		ret = CTL_EXIT_FAILURE;
	}
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	if (ret != 0) {
		json_decref(obj);
		return ret;
	}
	*out = obj;
	return 0;
}

static int
client_cmp_key(const void *a, const void *b, const char *key)
{
	return strcmp(fmt_str(*(json_t *const *)a, key), fmt_str(*(json_t *const *)b, key));
}

static int
client_cmp_serial(const void *a, const void *b)
{
	return client_cmp_key(a, b, "Serial");
}

static int
client_cmp_name(const void *a, const void *b)
{
	return client_cmp_key(a, b, "Name");
}

/* Sorts a JSON array of objects with cmp. */
static void
client_sort(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr), i;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	json_t **v = n > 0 ? calloc(n, sizeof(*v)) : NULL;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp); /* NOLINT(bugprone-sizeof-expression): array of pointers */
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

int
client_objects(struct client *c, json_t **devices, json_t **links)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	json_t *objs = NULL, *devs = json_array(), *lks = json_array(), *ifaces, *props, *o;
	const char *path, *iface;
	int r, ret = 0;

	r = sd_bus_call_method(c->bus, CTL_NAME, CTL_PATH, "org.freedesktop.DBus.ObjectManager",
	    "GetManagedObjects", &e, &reply, NULL);
	if (r < 0) {
		ret = client_error(c, r, &e, NULL);
		goto out;
	}
	if (devs == NULL || lks == NULL || client_read_value(reply, &objs) < 0 ||
	    !json_is_object(objs)) {
		fprintf(stderr, "otagwctl: otagwd sent a list of objects that cannot be read\n");
		ret = CTL_EXIT_FAILURE;
		goto out;
	}
	json_object_foreach(objs, path, ifaces)
	{
		json_object_foreach(ifaces, iface, props)
		{
			bool dev = strcmp(iface, CTL_IFACE_DEV) == 0;

			if (!dev && strcmp(iface, CTL_IFACE_LINK) != 0)
				continue;
			o = json_deep_copy(props);
			if (o == NULL)
				continue;
			json_object_set_new(o, "Path", json_string(path));
			json_array_append_new(dev ? devs : lks, o);
		}
	}
	client_sort(devs, client_cmp_serial);
	client_sort(lks, client_cmp_name);
	if (devices != NULL)
		*devices = json_incref(devs);
	if (links != NULL)
		*links = json_incref(lks);
out:
	json_decref(objs);
	json_decref(devs);
	json_decref(lks);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	return ret;
}

int
client_device_path(struct client *c, const char *serial, char **path)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *p;
	int r, ret = 0;

	r = sd_bus_call_method(
	    c->bus, CTL_NAME, CTL_PATH, CTL_IFACE_MGR, "GetDevice", &e, &reply, "s", serial);
	if (r < 0)
		ret = client_error(c, r, &e, serial);
	else if (sd_bus_message_read(reply, "o", &p) < 0 || (*path = strdup(p)) == NULL)
		ret = client_error(c, -EBADMSG, NULL, serial);
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	return ret;
}
