/* config.c: every key good and bad with the exact "file:line: message" the operator sees,
 * section and syntax errors, the project key's sources and the permission refusal, and the
 * values a good file produces. Cases are a table run with tcase_add_loop_test. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ck.h"
#include "config.h"
#include "frame.h"
#include "tdir.h"
#include "tfile.h"

#define KEY "0123456789abcdef0123456789ABCDEF"

/* Four lines every case that is not about them starts with: the key and one link. */
#define BASE                             \
	"[memfault]\n"                   \
	"project_key_file = @DIR@/key\n" \
	"[unix \"sim\"]\n"               \
	"listen = @DIR@/sim.sock\n"

struct env {
	char *dir, *conf, *key;
	char *errors; /* every reported message, each followed by '\n' */
	size_t len;
};

static void
collect(void *arg, const char *msg)
{
	struct env *e = arg;
	size_t n = strlen(msg);
	char *b = realloc(e->errors, e->len + n + 2);

	ck_assert_ptr_nonnull(b);
	memcpy(b + e->len, msg, n);
	b[e->len + n] = '\n';
	b[e->len + n + 1] = '\0';
	e->len += n + 1;
	e->errors = b;
}

static void
env_init(struct env *e)
{
	char *ca;

	memset(e, 0, sizeof(*e));
	unsetenv("CREDENTIALS_DIRECTORY");
	e->dir = tdir_new("config");
	e->conf = tdir_join(e->dir, "otagw.conf");
	e->key = tdir_join(e->dir, "key");
	e->errors = calloc(1, 1);
	tfile_write_str(e->key, 0600, KEY "\n");
	ca = tdir_join(e->dir, "ca.pem");
	tfile_write_str(ca, 0644, "-----BEGIN CERTIFICATE-----\n");
	free(ca);
}

static void
env_free(struct env *e)
{
	tdir_rmrf(e->dir);
	free(e->dir);
	free(e->conf);
	free(e->key);
	free(e->errors);
}

/* Writes text (with @DIR@ replaced) as the config file and loads it. */
static int
env_load(struct env *e, const char *text, mode_t mode, struct config **cfg)
{
	char *t = tfile_subst(text, "@DIR@", e->dir);

	tfile_write_str(e->conf, mode, t);
	free(t);
	e->len = 0;
	e->errors[0] = '\0';
	return config_load(e->conf, collect, e, cfg);
}

/* Expected messages with @CONF@ and @DIR@ replaced. */
static char *
env_expect(const struct env *e, const char *msgs)
{
	char *a = tfile_subst(msgs, "@CONF@", e->conf);
	char *b = tfile_subst(a, "@DIR@", e->dir);

	free(a);
	return b;
}

struct config_case {
	const char *text;
	const char *errors; /* "" if the file must load */
};

/* "@CONF@:5: " etc. */
#define AT(n) "@CONF@:" #n ": "

static const struct config_case cases[] = {
    /* the base alone, comments, blank lines, indentation, inline comments, CRLF, BOM */
    {BASE, ""},
    {"# comment\n; comment\n\n" BASE "  [general]  ; trailing\n\tmax_transfers = 3 ; three\n", ""},
    {"\xef\xbb\xbf[memfault]\r\nproject_key_file = @DIR@/key\r\n[unix \"sim\"]\r\n"
     "listen = @DIR@/sim.sock\r\n",
	""},

    /* [general] */
    {BASE "[general]\nstate_dir = /srv/otagw\ncache_dir = /srv/cache\n", ""},
    {BASE "[general]\nstate_dir = var/lib\n",
	AT(6) "state_dir = var/lib: not an absolute path; write the full path from "
	      "/\n"},
    {BASE "[general]\ncache_dir = ~/cache\n",
	AT(6) "cache_dir = ~/cache: not an absolute path; write the full path from "
	      "/\n"},
    {BASE "[general]\ncache_max = 1G\n", ""},
    {BASE "[general]\ncache_max = 12X\n",
	AT(6) "cache_max = 12X: not a size; use bytes or a number followed by K, M, G "
	      "or T "
	      "(e.g. 512K, 64M), from 1M to 16T\n"},
    {BASE "[general]\ncache_max = 1023K\n",
	AT(6) "cache_max = 1023K: out of range; use a size from 1M to 16T\n"},
    {BASE "[general]\ncache_max = 17T\n",
	AT(6) "cache_max = 17T: out of range; use a size from 1M to 16T\n"},
    {BASE "[general]\ncache_max = 99999999999999999999\n",
	AT(6) "cache_max = 99999999999999999999: out of range; use a size from 1M to "
	      "16T\n"},
    {BASE "[general]\ncache_max = 18014398509481984K\n",
	AT(6) "cache_max = 18014398509481984K: out of range; use a size from 1M to "
	      "16T\n"},
    {BASE "[general]\ncache_max = -1M\n",
	AT(6) "cache_max = -1M: not a size; use bytes or a number followed by K, M, G "
	      "or T "
	      "(e.g. 512K, 64M), from 1M to 16T\n"},
    {BASE "[general]\nmax_transfers = 1024\n", ""},
    {BASE "[general]\nmax_transfers = 0\n",
	AT(6) "max_transfers = 0: out of range; use a whole number from 1 to 1024\n"},
    {BASE "[general]\nmax_transfers = 1025\n",
	AT(6) "max_transfers = 1025: out of range; use a whole number from 1 to "
	      "1024\n"},
    {BASE "[general]\nmax_transfers = eight\n",
	AT(6) "max_transfers = eight: not a number; use a whole number from 1 to "
	      "1024\n"},
    {BASE "[general]\nmax_transfers = 0x8\n",
	AT(6) "max_transfers = 0x8: not a number; use a whole number from 1 to 1024\n"},
    {BASE "[general]\nsession_memory = 16K\n", ""},
    {BASE "[general]\nsession_memory = 8K\n",
	AT(6) "session_memory = 8K: out of range; use a size from 16K to 64M\n"},
    {BASE "[general]\nlog_level = debug\n", ""},
    {BASE "[general]\nlog_level = verbose\n",
	AT(6) "log_level = verbose: unknown level; use err, warn, notice, info or "
	      "debug\n"},

    /* [memfault] */
    {BASE "[memfault]\n", AT(5) "duplicate section [memfault] (first on line 1); merge them\n"},
    {"[memfault]\nproject_key = " KEY "\n[unix \"sim\"]\nlisten = /run/sim.sock\n", ""},
    {"[memfault]\nproject_key = 0123\n[unix \"sim\"]\nlisten = /run/sim.sock\n",
	AT(2) "project_key: not 32 hexadecimal digits (the value is not shown)\n"},
    {"[memfault]\nproject_key = " KEY "0\n[unix \"sim\"]\nlisten = /run/sim.sock\n",
	AT(2) "project_key: not 32 hexadecimal digits (the value is not shown)\n"},
    {"[memfault]\nproject_key = " KEY "\nproject_key_file = @DIR@/key\n[unix \"s\"]\n"
     "listen = /run/s.sock\n",
	AT(3) "set either project_key or project_key_file, not both\n"},
    {"[memfault]\nproject_key_file = key\n[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "project_key_file = key: not an absolute path; write the full path from "
	      "/\n"},
    {"[memfault]\nproject_key_file = @DIR@/nokey\n[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "project_key_file = @DIR@/nokey: cannot open: No such file or "
	      "directory\n"},
    {"[memfault]\nproject_key_file = @DIR@\n[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "project_key_file = @DIR@: not a regular file\n"},
    {"[unix \"s\"]\nlisten = /run/s.sock\n",
	"@CONF@: no Memfault project key: set project_key_file = PATH in [memfault], "
	"or pass "
	"the key as the systemd credential 'project-key' "
	"(LoadCredential=project-key:/etc/otagw/project-key)\n"},
    {BASE "[memfault]\nbase_url = https://api.example.com:8443/prefix/\n",
	AT(5) "duplicate section [memfault] (first on line 1); merge them\n"},
    {"[memfault]\nbase_url = https://api.example.com:8443/x/\nproject_key_file = "
     "@DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nbase_url = ftp://example.com\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "base_url = ftp://example.com: not an https URL; use e.g. "
	      "https://device.memfault.com\n"},
    {"[memfault]\nbase_url = device.memfault.com\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "base_url = device.memfault.com: not a valid URL (Bad scheme)\n"},
    {"[memfault]\nbase_url = https://u:p@example.com\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "base_url: must not carry a user name or password (Memfault takes the "
	      "project "
	      "key in a header)\n"},
    {"[memfault]\nbase_url = https://example.com/?a=b\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "base_url = https://example.com/?a=b: must not have a query or fragment; "
	      "use "
	      "e.g. https://device.memfault.com\n"},
    {"[memfault]\nbase_url = http://127.0.0.1:8080\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "base_url = http://127.0.0.1:8080: plain http would send the project key "
	      "unencrypted; use https (allow_insecure_http = yes is for tests only)\n"},
    {"[memfault]\nbase_url = http://127.0.0.1:8080\nproject_key_file = @DIR@/key\n"
     "allow_insecure_http = yes\n[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nallow_insecure_http = maybe\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "allow_insecure_http = maybe: not a boolean; use yes or no\n"},
    {"[memfault]\nca_file = @DIR@/ca.pem\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nca_file = @DIR@/none.pem\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "ca_file = @DIR@/none.pem: cannot open: No such file or directory\n"},
    {"[memfault]\nca_file = @DIR@\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "ca_file = @DIR@: not a regular file; name a PEM file of CA "
	      "certificates\n"},
    {"[memfault]\nproxy = http://user:secret@proxy.example:3128\nproject_key_file = "
     "@DIR@/key\n[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nproxy = socks5h://127.0.0.1:1080\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nproxy = ftp://user:secret@proxy\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "proxy: unsupported scheme; use a URL starting with http, https, socks4, "
	      "socks4a, socks5 or socks5h, e.g. http://proxy.example:3128\n"},
    {"[memfault]\nproxy = secret proxy\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "proxy: not a valid URL (Bad scheme; the value is not shown)\n"},
    {"[memfault]\nrequest_timeout = 10m\nanswer_cache = 0\nurl_validity = 7d\n"
     "project_key_file = @DIR@/key\n[unix \"s\"]\nlisten = /run/s.sock\n",
	""},
    {"[memfault]\nrequest_timeout = 0\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "request_timeout = 0: out of range; use a duration from 1s to 10m\n"},
    {"[memfault]\nrequest_timeout = 601\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "request_timeout = 601: out of range; use a duration from 1s to 10m\n"},
    {"[memfault]\nrequest_timeout = 5 s\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "request_timeout = 5 s: not a duration; use seconds or a number followed "
	      "by s, "
	      "m, h or d (e.g. 30s, 5m, 1h), from 1s to 10m\n"},
    {"[memfault]\nanswer_cache = 31d\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "answer_cache = 31d: out of range; use a duration from 0s to 30d\n"},
    {"[memfault]\nurl_validity = 30s\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "url_validity = 30s: out of range; use a duration from 1m to 7d\n"},
    {"[memfault]\nurl_validity = 1w\nproject_key_file = @DIR@/key\n"
     "[unix \"s\"]\nlisten = /run/s.sock\n",
	AT(2) "url_validity = 1w: not a duration; use seconds or a number followed by "
	      "s, m, h "
	      "or d (e.g. 30s, 5m, 1h), from 1m to 7d\n"},

    /* [uart] */
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyUSB0\nbaud = 3000000\nflow_control = rtscts\n"
	  "max_frame = 64\n",
	""},
    {BASE "[uart \"gps\"]\ndevice = ttyUSB0\n",
	AT(6) "device = ttyUSB0: not an absolute path; write the full path from /\n"},
    {BASE "[uart \"gps\"]\nbaud = 115200\n",
	AT(5) "[uart \"gps\"]: device is required, e.g. device = "
	      "/dev/serial/by-id/usb-FTDI_...-if00-port0\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nbaud = 49\n",
	AT(7) "baud = 49: out of range; use a whole number from 50 to 4000000\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nbaud = 4000001\n",
	AT(7) "baud = 4000001: out of range; use a whole number from 50 to 4000000\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nbaud = 115200.0\n",
	AT(7) "baud = 115200.0: not a number; use a whole number from 50 to 4000000\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nflow_control = xonxoff\n",
	AT(7) "flow_control = xonxoff: unknown value; use none or rtscts\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nmax_frame = 63\n",
	AT(7) "max_frame = 63: out of range; use a whole number from 64 to 4101\n"},
    {BASE "[uart \"gps\"]\ndevice = /dev/ttyS0\nmax_frame = 4102\n",
	AT(7) "max_frame = 4102: out of range; use a whole number from 64 to 4101\n"},
    {BASE "[uart \"a\"]\ndevice = /dev/ttyS0\n[uart \"b\"]\ndevice = /dev/ttyS0\n",
	AT(8) "[uart \"b\"]: /dev/ttyS0 is already used by [uart \"a\"] on line 6\n"},

    /* [tcp] */
    {BASE "[tcp \"t\"]\nlisten = 0.0.0.0:7000\nmax_connections = 1024\nmax_frame = 4101\n"
	  "[tcp \"u\"]\nconnect = [2001:db8::7]:2000\n[tcp \"v\"]\nconnect = "
	  "ser2net.local:3001\n",
	""},
    {BASE "[tcp \"t\"]\nlisten = 7000\n",
	AT(6) "listen = 7000: not HOST:PORT; use e.g. 192.0.2.7:7000, "
	      "[2001:db8::7]:7000 or "
	      "serial-server.local:7000\n"},
    {BASE "[tcp \"t\"]\nlisten = :7000\n",
	AT(6) "listen = :7000: no host; use e.g. 127.0.0.1:7000, or 0.0.0.0:7000 or "
	      "[::]:7000 for every address\n"},
    {BASE "[tcp \"t\"]\nlisten = ::1:7000\n",
	AT(6) "listen = ::1:7000: put an IPv6 address in brackets, e.g. [::1]:7000\n"},
    {BASE "[tcp \"t\"]\nlisten = [::1]7000\n",
	AT(6) "listen = [::1]7000: not HOST:PORT; use e.g. 192.0.2.7:7000, "
	      "[2001:db8::7]:7000 "
	      "or serial-server.local:7000\n"},
    {BASE "[tcp \"t\"]\nlisten = [::g]:7000\n",
	AT(6) "listen = [::g]:7000: [::g] is not an IPv6 address\n"},
    {BASE "[tcp \"t\"]\nconnect = 300.1.2.3:7000\n",
	AT(6) "connect = 300.1.2.3:7000: 300.1.2.3 is not an IPv4 address\n"},
    {BASE "[tcp \"t\"]\nconnect = -bad-.local:7000\n",
	AT(6) "connect = -bad-.local:7000: -bad-.local is not a host name or "
	      "address\n"},
    {BASE "[tcp \"t\"]\nconnect = host:0\n",
	AT(6) "connect = host:0: the port must be a number from 1 to 65535\n"},
    {BASE "[tcp \"t\"]\nconnect = host:65536\n",
	AT(6) "connect = host:65536: the port must be a number from 1 to 65535\n"},
    {BASE "[tcp \"t\"]\nmax_frame = 100\n",
	AT(5) "[tcp \"t\"]: set listen = HOST:PORT or connect = HOST:PORT\n"},
    {BASE "[tcp \"t\"]\nlisten = 127.0.0.1:1\nconnect = 127.0.0.1:2\n",
	AT(7) "[tcp \"t\"]: set either listen or connect, not both (a link listens for "
	      "devices "
	      "or connects to one)\n"},
    {BASE "[tcp \"t\"]\nconnect = 127.0.0.1:2\nmax_connections = 4\n",
	AT(7) "[tcp \"t\"]: max_connections applies only to a link that listens\n"},
    {BASE "[tcp \"t\"]\nlisten = 127.0.0.1:2\nmax_connections = 0\n",
	AT(7) "max_connections = 0: out of range; use a whole number from 1 to 1024\n"},
    {BASE "[tcp \"a\"]\nlisten = 127.0.0.1:2\n[tcp \"b\"]\nlisten = 127.0.0.1:2\n",
	AT(8) "[tcp \"b\"]: 127.0.0.1:2 is already used by [tcp \"a\"] on line 6\n"},
    {BASE "[tcp \"a\"]\nlisten = 127.0.0.1:2\n[tcp \"b\"]\nconnect = 127.0.0.1:2\n", ""},

    /* [unix] */
    {BASE "[unix \"c\"]\nconnect = /run/renode/uart.sock\n[unix \"l\"]\nlisten = "
	  "/run/l.sock\n"
	  "mode = 0600\nmax_connections = 2\n",
	""},
    {BASE "[unix \"c\"]\nconnect = uart.sock\n",
	AT(6) "connect = uart.sock: not an absolute path; write the full path from "
	      "/\n"},
    {BASE "[unix \"c\"]\nlisten = /run/"
	  "0123456789012345678901234567890123456789012345678901234567890123456789012345"
	  "678901"
	  "23456789012345678901234.sock\n",
	AT(6) "listen: path too long (at most 107 bytes)\n"},
    {BASE "[unix \"c\"]\nlisten = /run/c.sock\nmode = 0800\n",
	AT(7) "mode = 0800: use octal permissions from 0000 to 0777, e.g. 0660\n"},
    {BASE "[unix \"c\"]\nlisten = /run/c.sock\nmode = 4755\n",
	AT(7) "mode = 4755: use octal permissions from 0000 to 0777, e.g. 0660\n"},
    {BASE "[unix \"c\"]\nlisten = /run/c.sock\nmode = rw\n",
	AT(7) "mode = rw: use octal permissions from 0000 to 0777, e.g. 0660\n"},
    {BASE "[unix \"c\"]\nconnect = /run/c.sock\nmode = 0600\n",
	AT(7) "[unix \"c\"]: mode applies only to a link that listens\n"},
    {BASE "[unix \"c\"]\nmode = 0600\n",
	AT(5) "[unix \"c\"]: set listen = PATH or connect = PATH\n"},
    {BASE "[unix \"c\"]\nconnect = @DIR@/sim.sock\n",
	AT(6) "[unix \"c\"]: @DIR@/sim.sock is already used by [unix \"sim\"] on line 4\n"},
    {BASE "[unix \"ble\"]\nlisten = /run/b.sock\n",
	AT(5) "link name \"ble\" is reserved for the [ble] section; choose another name\n"},

    /* [ble] */
    {"[memfault]\nproject_key_file = @DIR@/key\n[ble]\nenabled = yes\nadapter = hci1\n"
     "transport = l2cap\nallow = AA:BB:CC:DD:EE:FF, 11:22:33:44:55:66\n"
     "allow = aa:bb:cc:dd:ee:01\nname_prefix = OTA-\nmax_connections = 16\n"
     "scan_interval = 1h\nl2cap_psm = 0x80\n",
	""},
    {BASE "[ble]\nadapter = eth0\n",
	AT(6) "adapter = eth0: not a Bluetooth adapter name; use hci0, hci1, ... (see "
	      "bluetoothctl list)\n"},
    {BASE "[ble]\ntransport = spp\n",
	AT(6) "transport = spp: unknown value; use auto, gatt or l2cap\n"},
    {BASE "[ble]\nallow = AA:BB:CC:DD:EE:F\n",
	AT(6) "allow: 'AA:BB:CC:DD:EE:F' is not a Bluetooth address; use the form "
	      "AA:BB:CC:DD:EE:FF, separated by commas or spaces\n"},
    {BASE "[ble]\nallow = AA-BB-CC-DD-EE-FF\n",
	AT(6) "allow: 'AA-BB-CC-DD-EE-FF' is not a Bluetooth address; use the form "
	      "AA:BB:CC:DD:EE:FF, separated by commas or spaces\n"},
    {BASE "[ble]\nenabled = 2\n", AT(6) "enabled = 2: not a boolean; use yes or no\n"},
    {BASE "[ble]\nmax_connections = 17\n",
	AT(6) "max_connections = 17: out of range; use a whole number from 1 to 16\n"},
    {BASE "[ble]\nscan_interval = 0\n",
	AT(6) "scan_interval = 0: out of range; use a duration from 1s to 1h\n"},
    {BASE "[ble]\nl2cap_psm = 0\n", ""},
    {BASE "[ble]\nl2cap_psm = 255\n", ""},
    {BASE "[ble]\nl2cap_psm = 0x7f\n", AT(6) "l2cap_psm = 0x7f: use 0 (read the PSM "
					     "from the device) or a dynamic LE PSM "
					     "from 128 to 255 (0x80 to 0xff)\n"},
    {BASE "[ble]\nl2cap_psm = 256\n", AT(6) "l2cap_psm = 256: use 0 (read the PSM from "
					    "the device) or a dynamic LE PSM from "
					    "128 to 255 (0x80 to 0xff)\n"},
    {BASE "[ble]\nl2cap_psm = psm\n", AT(6) "l2cap_psm = psm: use 0 (read the PSM from "
					    "the device) or a dynamic LE PSM from "
					    "128 to 255 (0x80 to 0xff)\n"},

    /* [dbus] */
    {BASE "[dbus]\nbus = session\ncontrol_group = _otagw-admins\n", ""},
    {BASE "[dbus]\nbus = tcp\n", AT(6) "bus = tcp: unknown value; use system, session or none\n"},
    {BASE "[dbus]\ncontrol_group = 9admins\n",
	AT(6) "control_group = 9admins: not a group name; use up to 31 letters, "
	      "digits, '_', "
	      "'.' or '-', starting with a letter\n"},

    /* structure */
    {BASE "[bogus]\nkey = 1\n[general]\nmax_transfers = 1\n",
	AT(5) "unknown section [bogus]; known sections are [general], [memfault], "
	      "[uart \"NAME\"], [tcp \"NAME\"], [unix \"NAME\"], [ble] and [dbus]\n"},
    {BASE "[uart]\ndevice = /dev/ttyS0\n",
	AT(5) "section [uart] needs a name, e.g. [uart \"gw1\"]\n"},
    {BASE "[general \"x\"]\n", AT(5) "section [general] takes no name; write [general]\n"},
    {BASE "[uart \"a b\"]\n", AT(5) "link name \"a b\" is invalid; use 1 to 32 "
				    "letters, digits, '-', '_' or '.'\n"},
    {BASE "[uart \"\"]\n", AT(5) "link name \"\" is invalid; use 1 to 32 letters, "
				 "digits, '-', '_' or '.'\n"},
    {BASE "[uart \"012345678901234567890123456789012\"]\n",
	AT(5) "link name \"012345678901234567890123456789012\" is invalid; use 1 to 32 "
	      "letters, "
	      "digits, '-', '_' or '.'\n"},
    {BASE "[uart \"gps]\n", AT(5) "section name has no closing '\"'\n"},
    {BASE "[uart \"gps\"\n",
	AT(5) "malformed section header; write [section] or [section \"NAME\"]\n"},
    {BASE "[uart-gps]\n",
	AT(5) "malformed section header; write [section] or [section \"NAME\"]\n"},
    {BASE "[general] x\n", AT(5) "unexpected text after ']'\n"},
    {BASE "[]\n", AT(5) "section header without a section name\n"},
    {BASE "[tcp \"sim\"]\nlisten = 127.0.0.1:1\n",
	AT(5) "link name \"sim\" is already used by [unix \"sim\"] on line 3; every "
	      "link needs "
	      "its own name\n"},
    {BASE "[general]\n[general]\n",
	AT(6) "duplicate section [general] (first on line 5); merge them\n"},
    {"max_transfers = 3\n" BASE, AT(1) "'max_transfers' is outside any section; put it "
				       "under the [section] it belongs "
				       "to\n"},
    {BASE "[general]\nmax_transfers\n",
	AT(6) "expected 'key = value', a [section] header or a comment\n"},
    {BASE "[general]\nmax_transfers ; = 3\n",
	AT(6) "expected 'key = value', a [section] header or a comment\n"},
    {BASE "[general]\n= 3\n", AT(6) "missing key name before '='\n"},
    {BASE "[general]\nmax_transfers =\n",
	AT(6) "max_transfers has no value; remove the line to use the default\n"},
    {BASE "[general]\nmax_transfer = 3\n",
	AT(6) "unknown key 'max_transfer' in [general]; known keys: state_dir, "
	      "cache_dir, "
	      "cache_max, max_transfers, session_memory, log_level\n"},
    {BASE "[unix \"x\"]\nlisten = /run/x.sock\nbaud = 9600\n",
	AT(7) "unknown key 'baud' in [unix]; known keys: listen, connect, mode, "
	      "max_connections, max_frame\n"},
    {BASE "[general]\nmax_transfers = 3\nmax_transfers = 4\n",
	AT(7) "max_transfers is already set on line 6\n"},
    {BASE "[general]\nstate_dir = /a\tb\x01\n",
	AT(6) "control character 0x01; the file must be plain text\n"},
    {BASE "[general]\nstate_dir = /a\rb\n",
	AT(6) "control character 0x0d; the file must be plain text\n"},
    {"[memfault]\nproject_key_file = @DIR@/key\n",
	"@CONF@: no links: add a [uart \"NAME\"], [tcp \"NAME\"] or [unix \"NAME\"] "
	"section, or "
	"set enabled = yes in [ble]\n"},
    {"[memfault]\nproject_key_file = @DIR@/key\n[uart]\ndevice = /dev/ttyS0\n",
	AT(3) "section [uart] needs a name, e.g. [uart \"gw1\"]\n"},
    {"", "@CONF@: no Memfault project key: set project_key_file = PATH in [memfault], "
	 "or pass "
	 "the key as the systemd credential 'project-key' "
	 "(LoadCredential=project-key:/etc/otagw/project-key)\n"
	 "@CONF@: no links: add a [uart \"NAME\"], [tcp \"NAME\"] or [unix \"NAME\"] "
	 "section, or "
	 "set enabled = yes in [ble]\n"},
    /* every error at once, including the checks that run after the file is read */
    {"[general]\nmax_transfers = 0\n[memfault]\nproject_key_file = @DIR@/missing\n"
     "[uart \"u\"]\nbaud = 1\n",
	AT(2) "max_transfers = 0: out of range; use a whole number from 1 to "
	      "1024\n" AT(6) "baud = 1: out of range; use a whole number from 50 to "
			     "4000000\n" AT(4) "project_key_file = @DIR@/missing: "
					       "cannot open: No such file or "
					       "directory\n" AT(5) "[uart \"u\"]: "
								   "device is "
								   "required, e.g. "
								   "device = "
								   "/dev/serial/by-id/"
								   "usb-FTDI_...-if00-"
								   "port0\n"},
};

START_TEST(test_config_case)
{
	const struct config_case *c = &cases[_i];
	struct config *cfg = NULL;
	struct env e;
	char *want;
	int r;

	env_init(&e);
	want = env_expect(&e, c->errors);
	r = env_load(&e, c->text, 0600, &cfg);
	ck_assert_msg(
	    strcmp(e.errors, want) == 0, "case %d:\n--- got\n%s--- want\n%s", _i, e.errors, want);
	if (c->errors[0] == '\0') {
		ck_assert_int_eq(r, 0);
		ck_assert_ptr_nonnull(cfg);
	} else {
		ck_assert_int_eq(r, -EINVAL);
		ck_assert_ptr_null(cfg);
	}
	config_free(cfg);
	free(want);
	env_free(&e);
}
END_TEST

/* The values a file produces, every key set. */
START_TEST(test_config_values)
{
	static const char text[] =
	    "[general]\nstate_dir = /srv/state\ncache_dir = /srv/cache\ncache_max = 2G\n"
	    "max_transfers = 3\nsession_memory = 128K\nlog_level = debug\n"
	    "[memfault]\nproject_key_file = @DIR@/key\nbase_url = https://API.example.com/p/\n"
	    "ca_file = @DIR@/ca.pem\nproxy = http://proxy:3128\nrequest_timeout = 2m\n"
	    "answer_cache = 1d\nurl_validity = 90m\n"
	    "[uart \"gps\"]\ndevice = /dev/serial/by-id/usb-FTDI-if00\nbaud = 921600\n"
	    "flow_control = rtscts\nmax_frame = 1024\n"
	    "[tcp \"net\"]\nlisten = [::]:7000\nmax_connections = 5\n"
	    "[unix \"sim\"]\nconnect = /run/sim.sock\n"
	    "[ble]\nenabled = on\nadapter = hci2\ntransport = gatt\nallow = aa:bb:cc:dd:ee:ff\n"
	    "allow = AA:BB:CC:DD:EE:FF 00:11:22:33:44:55\nname_prefix = OTA \n"
	    "max_connections = 4\nscan_interval = 30s\nl2cap_psm = 0x81\n"
	    "[dbus]\nbus = none\ncontrol_group = wheel\n";
	const struct config_link *l;
	struct config *cfg = NULL;
	struct env e;
	char *ca;

	env_init(&e);
	ck_assert_int_eq(env_load(&e, text, 0600, &cfg), 0);
	ck_assert_str_eq(e.errors, "");
	ck_assert_str_eq(cfg->path, e.conf);
	ck_assert_str_eq(cfg->general.state_dir, "/srv/state");
	ck_assert_str_eq(cfg->general.cache_dir, "/srv/cache");
	ck_assert_uint_eq(cfg->general.cache_max, 2ULL << 30);
	ck_assert_uint_eq(cfg->general.max_transfers, 3);
	ck_assert_uint_eq(cfg->general.session_memory, 128 * 1024);
	ck_assert_int_eq(cfg->general.log_level, LOG_LEVEL_DEBUG);

	ck_assert_str_eq(cfg->memfault.project_key, KEY);
	ck_assert_str_eq(cfg->memfault.project_key_source, e.key);
	ck_assert_str_eq(cfg->memfault.base_url, "https://API.example.com/p");
	ca = tdir_join(e.dir, "ca.pem");
	ck_assert_str_eq(cfg->memfault.ca_file, ca);
	free(ca);
	ck_assert_str_eq(cfg->memfault.proxy, "http://proxy:3128");
	ck_assert(!cfg->memfault.allow_insecure_http);
	ck_assert_uint_eq(cfg->memfault.request_timeout_s, 120);
	ck_assert_uint_eq(cfg->memfault.answer_cache_s, 86400);
	ck_assert_uint_eq(cfg->memfault.url_validity_s, 5400);

	ck_assert_uint_eq(cfg->n_links, 3);
	l = TAILQ_FIRST(&cfg->links);
	ck_assert_ptr_eq(l, config_find_link(cfg, "gps"));
	ck_assert_int_eq(l->kind, CONFIG_LINK_UART);
	ck_assert_str_eq(l->uart.device, "/dev/serial/by-id/usb-FTDI-if00");
	ck_assert_uint_eq(l->uart.baud, 921600);
	ck_assert_int_eq(l->uart.flow_control, CONFIG_FLOW_CONTROL_RTSCTS);
	ck_assert_uint_eq(l->max_frame, 1024);
	l = TAILQ_NEXT(l, entry);
	ck_assert_ptr_eq(l, config_find_link(cfg, "net"));
	ck_assert_int_eq(l->kind, CONFIG_LINK_TCP);
	ck_assert(l->tcp.listen);
	ck_assert_str_eq(l->tcp.host, "::");
	ck_assert_uint_eq(l->tcp.port, 7000);
	ck_assert_uint_eq(l->tcp.max_connections, 5);
	ck_assert_uint_eq(l->max_frame, FRAME_MSG_MAX);
	l = TAILQ_NEXT(l, entry);
	ck_assert_ptr_eq(l, config_find_link(cfg, "sim"));
	ck_assert_int_eq(l->kind, CONFIG_LINK_UNIX);
	ck_assert(!l->unix_sock.listen);
	ck_assert_str_eq(l->unix_sock.path, "/run/sim.sock");
	ck_assert_ptr_null(TAILQ_NEXT(l, entry));
	ck_assert_ptr_null(config_find_link(cfg, "nope"));
	ck_assert_str_eq(config_link_kind_name(CONFIG_LINK_UNIX), "unix");

	ck_assert(cfg->ble.enabled);
	ck_assert_str_eq(cfg->ble.adapter, "hci2");
	ck_assert_int_eq(cfg->ble.transport, CONFIG_BLE_TRANSPORT_GATT);
	ck_assert_uint_eq(cfg->ble.n_allow, 2);
	ck_assert_str_eq(cfg->ble.allow[0], "AA:BB:CC:DD:EE:FF");
	ck_assert_str_eq(cfg->ble.allow[1], "00:11:22:33:44:55");
	ck_assert_str_eq(cfg->ble.name_prefix, "OTA");
	ck_assert_uint_eq(cfg->ble.max_connections, 4);
	ck_assert_uint_eq(cfg->ble.scan_interval_s, 30);
	ck_assert_uint_eq(cfg->ble.l2cap_psm, 0x81);
	ck_assert_int_eq(cfg->dbus.bus, CONFIG_BUS_NONE);
	ck_assert_str_eq(cfg->dbus.control_group, "wheel");
	config_free(cfg);
	env_free(&e);
}
END_TEST

START_TEST(test_config_defaults)
{
	struct config *cfg = NULL;
	const struct config_link *l;
	struct env e;

	env_init(&e);
	ck_assert_int_eq(env_load(&e, BASE, 0600, &cfg), 0);
	ck_assert_str_eq(cfg->general.state_dir, "/var/lib/otagw");
	ck_assert_str_eq(cfg->general.cache_dir, "/var/cache/otagw");
	ck_assert_uint_eq(cfg->general.cache_max, 512ULL << 20);
	ck_assert_uint_eq(cfg->general.max_transfers, 8);
	ck_assert_uint_eq(cfg->general.session_memory, 64 * 1024);
	ck_assert_int_eq(cfg->general.log_level, LOG_LEVEL_INFO);
	ck_assert_str_eq(cfg->memfault.base_url, "https://device.memfault.com");
	ck_assert_ptr_null(cfg->memfault.ca_file);
	ck_assert_ptr_null(cfg->memfault.proxy);
	ck_assert_uint_eq(cfg->memfault.request_timeout_s, 30);
	ck_assert_uint_eq(cfg->memfault.answer_cache_s, 3600);
	ck_assert_uint_eq(cfg->memfault.url_validity_s, 6 * 3600);
	l = config_find_link(cfg, "sim");
	ck_assert_ptr_nonnull(l);
	ck_assert(l->unix_sock.listen);
	ck_assert_uint_eq(l->unix_sock.mode, 0660);
	ck_assert_uint_eq(l->unix_sock.max_connections, 16);
	ck_assert_uint_eq(l->max_frame, FRAME_MSG_MAX);
	ck_assert(!cfg->ble.enabled);
	ck_assert_str_eq(cfg->ble.adapter, "hci0");
	ck_assert_int_eq(cfg->ble.transport, CONFIG_BLE_TRANSPORT_AUTO);
	ck_assert_uint_eq(cfg->ble.n_allow, 0);
	ck_assert_ptr_null(cfg->ble.name_prefix);
	ck_assert_uint_eq(cfg->ble.max_connections, 2);
	ck_assert_uint_eq(cfg->ble.l2cap_psm, 0);
	ck_assert_int_eq(cfg->dbus.bus, CONFIG_BUS_SYSTEM);
	ck_assert_str_eq(cfg->dbus.control_group, "otagw");
	config_free(cfg);

	/* The UART defaults. */
	ck_assert_int_eq(env_load(&e, BASE "[uart \"u\"]\ndevice = /dev/ttyS0\n", 0600, &cfg), 0);
	l = config_find_link(cfg, "u");
	ck_assert_uint_eq(l->uart.baud, 115200);
	ck_assert_int_eq(l->uart.flow_control, CONFIG_FLOW_CONTROL_NONE);
	config_free(cfg);
	env_free(&e);
}
END_TEST

/* A file holding the key must not be readable by others; the key never shows in a message. */
START_TEST(test_config_key_permissions)
{
	static const char inline_key[] =
	    "[memfault]\nproject_key = " KEY "\n[unix \"s\"]\nlisten = /run/s.sock\n";
	struct config *cfg = NULL;
	struct env e;
	char *want;

	env_init(&e);
	ck_assert_int_eq(env_load(&e, inline_key, 0600, &cfg), 0);
	ck_assert_str_eq(cfg->memfault.project_key, KEY);
	ck_assert_str_eq(cfg->memfault.project_key_source, e.conf);
	config_free(cfg);
	cfg = NULL;

	ck_assert_int_eq(env_load(&e, inline_key, 0644, &cfg), -EINVAL);
	want =
	    env_expect(&e, AT(2) "project_key: @CONF@ has mode 0644, so other users can read "
				 "the Memfault project key; run chmod 600 @CONF@, or move the key "
				 "to a file named by project_key_file\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	ck_assert_int_eq(env_load(&e, inline_key, 0640, &cfg), -EINVAL);
	ck_assert_int_eq(env_load(&e, inline_key, 0604, &cfg), -EINVAL);
	/* Group-writable but not readable is not a leak. */
	ck_assert_int_eq(env_load(&e, inline_key, 0620, &cfg), 0);
	config_free(cfg);
	cfg = NULL;

	/* A key file: the config may be world-readable, the key file not. */
	tfile_write_str(e.key, 0640, KEY "\n");
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), -EINVAL);
	want = env_expect(&e, AT(2) "project_key_file = @DIR@/key: mode 0640 lets other users read "
				    "the Memfault project key; run chmod 600 @DIR@/key\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	tfile_write_str(e.key, 0400, KEY);
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), 0);
	ck_assert_str_eq(cfg->memfault.project_key, KEY);
	config_free(cfg);
	cfg = NULL;

	/* What the file holds is checked, and never echoed. */
	tfile_write_str(e.key, 0600, "  " KEY "\r\n\n");
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), 0);
	config_free(cfg);
	cfg = NULL;
	tfile_write_str(e.key, 0600, KEY "\n" KEY "\n");
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), -EINVAL);
	want = env_expect(&e, AT(2) "project_key_file = @DIR@/key: does not hold a project key "
				    "(32 hexadecimal digits and nothing else)\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	ck_assert_ptr_null(strstr(e.errors, "0123456789"));
	{
		char big[600];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		tfile_write_str(e.key, 0600, big);
	}
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), -EINVAL);
	want = env_expect(&e, AT(2) "project_key_file = @DIR@/key: too large to hold a project "
				    "key; it should hold only the 32 hexadecimal digits\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	env_free(&e);
}
END_TEST

/* Neither project_key nor project_key_file: the systemd credential. */
START_TEST(test_config_credentials)
{
	static const char text[] = "[unix \"s\"]\nlisten = /run/s.sock\n";
	struct config *cfg = NULL;
	struct env e;
	char *creds, *cred, *want;

	env_init(&e);
	creds = tdir_join(e.dir, "credentials");
	ck_assert_int_eq(mkdir(creds, 0700), 0);
	cred = tdir_join(creds, "project-key");
	setenv("CREDENTIALS_DIRECTORY", creds, 1);

	ck_assert_int_eq(env_load(&e, text, 0644, &cfg), -EINVAL);
	want = env_expect(&e, "@CONF@: credential @DIR@/credentials/project-key: cannot open: No "
			      "such file or directory\n");
	ck_assert_str_eq(e.errors, want);
	free(want);

	/* systemd picks the credential's mode: not checked. */
	tfile_write_str(cred, 0440, KEY);
	ck_assert_int_eq(env_load(&e, text, 0644, &cfg), 0);
	ck_assert_str_eq(cfg->memfault.project_key, KEY);
	ck_assert_str_eq(cfg->memfault.project_key_source, cred);
	config_free(cfg);
	cfg = NULL;

	tfile_write_str(cred, 0400, "not a key");
	ck_assert_int_eq(env_load(&e, text, 0644, &cfg), -EINVAL);
	want = env_expect(&e, "@CONF@: credential @DIR@/credentials/project-key: does not hold a "
			      "project key (32 hexadecimal digits and nothing else)\n");
	ck_assert_str_eq(e.errors, want);
	free(want);

	/* The unit's empty fallback credential: the operator has installed no key. */
	tfile_write_str(cred, 0400, "\n");
	ck_assert_int_eq(env_load(&e, text, 0644, &cfg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(e.errors, "no Memfault project key: the systemd credential "
					       "'project-key' is empty"));

	/* A key file in the config wins over the credential. */
	tfile_write_str(cred, 0400, "not a key");
	ck_assert_int_eq(env_load(&e, BASE, 0644, &cfg), 0);
	ck_assert_str_eq(cfg->memfault.project_key_source, e.key);
	config_free(cfg);

	unsetenv("CREDENTIALS_DIRECTORY");
	free(cred);
	free(creds);
	env_free(&e);
}
END_TEST

START_TEST(test_config_open_errors)
{
	struct config *cfg = NULL;
	struct env e;
	char *want;
	FILE *f;
	int i;

	env_init(&e);
	want = env_expect(&e, "@DIR@/none.conf: cannot open: No such file or directory\n");
	free(e.conf);
	e.conf = tdir_join(e.dir, "none.conf");
	ck_assert_int_eq(config_load(e.conf, collect, &e, &cfg), -ENOENT);
	ck_assert_str_eq(e.errors, want);
	ck_assert_ptr_null(cfg);
	free(want);

	e.len = 0;
	e.errors[0] = '\0';
	ck_assert_int_eq(config_load(e.dir, collect, &e, &cfg), -EINVAL);
	want = env_expect(&e, "@DIR@: not a regular file\n");
	ck_assert_str_eq(e.errors, want);
	free(want);

	/* A huge file is refused before it is read. */
	f = fopen(e.conf, "w");
	ck_assert_ptr_nonnull(f);
	for (i = 0; i < 70000; i++)
		fputs("# padding padding\n", f);
	fclose(f);
	e.len = 0;
	e.errors[0] = '\0';
	ck_assert_int_eq(config_load(e.conf, collect, &e, &cfg), -EFBIG);
	want = env_expect(&e, "@CONF@: larger than 1048576 bytes; is this the configuration "
			      "file?\n");
	ck_assert_str_eq(e.errors, want);
	free(want);

	/* A NULL report is allowed. */
	ck_assert_int_eq(config_load(e.conf, NULL, NULL, &cfg), -EFBIG);
	env_free(&e);
}
END_TEST

/* Garbage does not flood the operator: 100 messages, then a count. */
START_TEST(test_config_error_cap)
{
	struct config *cfg = NULL;
	struct env e;
	char *text = NULL, *last;
	size_t len = 0, n = 0;
	FILE *f;
	int i;

	env_init(&e);
	f = open_memstream(&text, &len);
	fputs(BASE, f);
	for (i = 0; i < 150; i++)
		fputs("garbage\n", f);
	fclose(f);
	ck_assert_int_eq(env_load(&e, text, 0600, &cfg), -EINVAL);
	for (last = e.errors; (last = strchr(last, '\n')) != NULL; last++)
		n++;
	ck_assert_uint_eq(n, 101);
	last = tfile_subst("@CONF@: 50 more errors not shown\n", "@CONF@", e.conf);
	ck_assert_str_eq(e.errors + strlen(e.errors) - strlen(last), last);
	free(last);
	free(text);
	env_free(&e);
}
END_TEST

/* inih's line buffer bounds a line (200 bytes in Debian's build); a longer one is an error
 * for that line only, never a silent truncation. */
START_TEST(test_config_long_line)
{
	struct config *cfg = NULL;
	struct env e;
	char *text, *want, path[400];

	env_init(&e);
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	ck_assert_int_gt(
	    asprintf(&text, BASE "[general]\nstate_dir = %s\nmax_transfers = 0\n", path), 0);
	ck_assert_int_eq(env_load(&e, text, 0600, &cfg), -EINVAL);
	want = env_expect(
	    &e, AT(6) "line longer than 198 characters\n" AT(
		    7) "max_transfers = 0: out of range; use a whole number from 1 to 1024\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	free(text);
	env_free(&e);
}
END_TEST

START_TEST(test_config_too_many_links)
{
	struct config *cfg = NULL;
	struct env e;
	char *text = NULL, *want;
	size_t len = 0;
	FILE *f;
	int i;

	env_init(&e);
	f = open_memstream(&text, &len);
	fputs(BASE, f);
	for (i = 1; i < CONFIG_LINKS_MAX; i++)
		fprintf(f, "[tcp \"t%d\"]\nconnect = 127.0.0.1:%d\n", i, i);
	fclose(f);
	ck_assert_int_eq(env_load(&e, text, 0600, &cfg), 0);
	ck_assert_uint_eq(cfg->n_links, CONFIG_LINKS_MAX);
	config_free(cfg);
	free(text);

	f = open_memstream(&text, &len);
	fputs(BASE, f);
	for (i = 1; i <= CONFIG_LINKS_MAX; i++)
		fprintf(f, "[tcp \"t%d\"]\nconnect = 127.0.0.1:%d\n", i, i);
	fclose(f);
	ck_assert_int_eq(env_load(&e, text, 0600, &cfg), -EINVAL);
	want = env_expect(&e, AT(259) "too many links (at most 128)\n");
	ck_assert_str_eq(e.errors, want);
	free(want);
	free(text);
	env_free(&e);
}
END_TEST

struct scaled_case {
	const char *s;
	int r;
	uint64_t v;
};

static const struct scaled_case durations[] = {
    {"0", 0, 0},
    {"45", 0, 45},
    {"30s", 0, 30},
    {"5m", 0, 300},
    {"1h", 0, 3600},
    {"1d", 0, 86400},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551616", -ERANGE, 0},
    {"213503982334601d", 0, 213503982334601ULL * 86400},
    {"213503982334602d", -ERANGE, 0},
    {"", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"5x", -EINVAL, 0},
    {"5ms", -EINVAL, 0},
    {"-5", -EINVAL, 0},
    {"+5", -EINVAL, 0},
    {" 5", -EINVAL, 0},
    {"5 ", -EINVAL, 0},
    {"1.5h", -EINVAL, 0},
    {"5S", -EINVAL, 0},
};

START_TEST(test_config_duration)
{
	const struct scaled_case *c = &durations[_i];
	uint64_t v = 12345;

	ck_assert_msg(config_parse_duration(c->s, &v) == c->r, "'%s'", c->s);
	ck_assert_uint_eq(v, c->r == 0 ? c->v : 12345); /* untouched on failure */
}
END_TEST

static const struct scaled_case sizes[] = {
    {"0", 0, 0},
    {"1024", 0, 1024},
    {"512K", 0, 512 * 1024},
    {"512k", 0, 512 * 1024},
    {"64M", 0, 64ULL << 20},
    {"1G", 0, 1ULL << 30},
    {"2T", 0, 2ULL << 40},
    {"16777215T", 0, 16777215ULL << 40},
    {"16777216T", -ERANGE, 0},
    {"18014398509481983K", 0, 18014398509481983ULL * 1024},
    {"18014398509481984K", -ERANGE, 0},
    {"99999999999999999999", -ERANGE, 0},
    {"", -EINVAL, 0},
    {"K", -EINVAL, 0},
    {"1P", -EINVAL, 0},
    {"1KB", -EINVAL, 0},
    {"1 K", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
};

START_TEST(test_config_size)
{
	const struct scaled_case *c = &sizes[_i];
	uint64_t v = 12345;

	ck_assert_msg(config_parse_size(c->s, &v) == c->r, "'%s'", c->s);
	ck_assert_uint_eq(v, c->r == 0 ? c->v : 12345);
}
END_TEST

START_TEST(test_config_free_null)
{
	config_free(NULL);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_loop_test(tc, test_config_case, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_config_values);
	tcase_add_test(tc, test_config_defaults);
	tcase_add_test(tc, test_config_key_permissions);
	tcase_add_test(tc, test_config_credentials);
	tcase_add_test(tc, test_config_open_errors);
	tcase_add_test(tc, test_config_error_cap);
	tcase_add_test(tc, test_config_long_line);
	tcase_add_test(tc, test_config_too_many_links);
	tcase_add_loop_test(
	    tc, test_config_duration, 0, (int)(sizeof(durations) / sizeof(durations[0])));
	tcase_add_loop_test(tc, test_config_size, 0, (int)(sizeof(sizes) / sizeof(sizes[0])));
	tcase_add_test(tc, test_config_free_null);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return ck_main(config_suite());
}
