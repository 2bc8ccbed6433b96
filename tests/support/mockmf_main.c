/* otagw-mockmf: the Memfault stand-in as a program, for end-to-end tests and the demo. It serves
 * a scenario (or releases given on the command line) over HTTPS on loopback until SIGINT or
 * SIGTERM, and tells its port, base URL and CA file on stdout or in an info file. */
#include "mockmf.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

static void
usage(FILE *f)
{
	fprintf(f,
	    "Usage: otagw-mockmf [OPTIONS]\n"
	    "A local HTTPS stand-in for Memfault's device API and CDN (tests and demo only).\n"
	    "\n"
	    "  -s, --scenario FILE     load releases, payloads and canned responses (JSON)\n"
	    "  -k, --project-key KEY   the project key requests must carry (overrides the "
	    "scenario)\n"
	    "  -P, --payload NAME=FILE serve FILE at /cdn/NAME\n"
	    "  -r, --release HW:SWTYPE:VERSION:NAME\n"
	    "                          a release of payload NAME for every device of HW/SWTYPE\n"
	    "  -a, --address ADDR      listen address (default 127.0.0.1)\n"
	    "  -p, --port PORT         listen port (default 0: any free port)\n"
	    "  -d, --dir DIR           write the test CA to DIR/ca.pem (default: a temporary\n"
	    "                          directory removed at exit)\n"
	    "  -i, --info-file FILE    write {\"port\",\"base_url\",\"ca_file\"} as JSON to FILE\n"
	    "                          (atomically, once listening); default: print it on stdout\n"
	    "      --wrong-host-cert   present a certificate for another host name\n"
	    "  -q, --quiet             do not log requests on stderr\n"
	    "  -h, --help              show this help\n"
	    "\n"
	    "Scenario format (paths relative to the scenario file):\n"
	    "  {\n"
	    "    \"project_key\": \"0123456789abcdef0123456789abcdef\",\n"
	    "    \"releases\": [\n"
	    "      {\"hardware_version\": \"evt\", \"software_type\": \"app\", \"version\": "
	    "\"1.2.0\",\n"
	    "       \"payload\": \"fw-1.2.0.bin\",            // or "
	    "{\"name\":\"fw.bin\",\"size\":65536,\"seed\":1}\n"
	    "       \"is_delta\": false, \"display_name\": \"...\", \"notes\": \"...\",\n"
	    "       \"devices\": [\"SERIAL1\", \"SERIAL2\"]},  // optional; default every device\n"
	    "      {\"hardware_version\": \"evt\", \"software_type\": \"app\", \"version\": "
	    "\"2.0.0\",\n"
	    "       \"artifacts\": [{\"payload\": \"a.bin\", \"hardware_version\": \"evt\",\n"
	    "                      \"type\": \"firmware\", \"sha256\": \"<lie>\", \"file_size\": "
	    "1}]}\n"
	    "    ],\n"
	    "    \"responses\": [                              // canned, used in order per path\n"
	    "      {\"path\": \"/api/v0/releases/latest\", \"status\": 503,\n"
	    "       \"headers\": {\"Retry-After\": \"30\"}, \"body\": \"...\", \"count\": 2},\n"
	    "      {\"path\": \"/cdn/fw-1.2.0.bin\", \"cut_after\": 4096},\n"
	    "      {\"path\": \"/cdn/fw-1.2.0.bin\", \"drip_ms\": 100, \"drip_bytes\": 64,\n"
	    "       \"ignore_range\": true, \"gzip\": false, \"chunked\": false, \"forever\": "
	    "true}\n"
	    "    ]\n"
	    "  }\n"
	    "The latest endpoint answers 403 without the right key, 400 without the required\n"
	    "parameters or for an unknown hardware_version/software_type, 204 with\n"
	    "memfault-reason: latest when current_version equals the release's version, 204\n"
	    "without a reason when no release targets the device, and 200 with the release JSON\n"
	    "otherwise (the last matching release wins). CDN URLs carry a signature; a response\n"
	    "with status 0 keeps the normal answer and only applies its modifiers.\n");
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static int
write_info(const char *path, const char *text)
{
	char tmp[4096];
	FILE *f;

	if (path == NULL) {
		printf("%s\n", text);
		return fflush(stdout) == 0 ? 0 : -errno;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "%s\n", text);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		int r = -errno;

		fclose(f);
		unlink(tmp);
		return r;
	}
	fclose(f);
	return rename(tmp, path) == 0 ? 0 : -errno;
}

static int
add_payload_arg(struct mockmf *m, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char name[128];
	unsigned char *data;
	long len;
	FILE *f;
	int r;

	if (eq == NULL || (size_t)(eq - arg) >= sizeof(name)) {
		fprintf(stderr, "otagw-mockmf: --payload wants NAME=FILE, got %s\n", arg);
		return -EINVAL;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	f = fopen(eq + 1, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || len > (256L << 20) ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "otagw-mockmf: %s: %s\n", eq + 1,
		    f == NULL ? strerror(errno) : "unreadable or larger than 256 MiB");
		if (f != NULL)
			fclose(f);
		return -EINVAL;
	}
	data = malloc((size_t)len + 1);
	if (data == NULL || fread(data, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "otagw-mockmf: cannot read %s\n", eq + 1);
		free(data);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	r = mockmf_add_payload(m, name, data, (size_t)len);
	free(data);
	if (r < 0)
		fprintf(stderr, "otagw-mockmf: payload %s: %s\n", name, strerror(-r));
	return r;
}

static int
add_release_arg(struct mockmf *m, char *arg)
{
	struct mockmf_release rel;
	char *save = NULL;
	int r;

	memset(&rel, 0, sizeof(rel));
	rel.hardware_version = strtok_r(arg, ":", &save);
	rel.software_type = strtok_r(NULL, ":", &save);
	rel.version = strtok_r(NULL, ":", &save);
	rel.payload = strtok_r(NULL, "", &save);
	if (rel.payload == NULL) {
		fprintf(stderr, "otagw-mockmf: --release wants HW:SWTYPE:VERSION:NAME\n");
		return -EINVAL;
	}
	r = mockmf_add_release(m, &rel);
	if (r < 0)
		fprintf(stderr, "otagw-mockmf: release %s: %s\n", rel.version, strerror(-r));
	return r;
}

int
main(int argc, char **argv)
{
	enum { OPT_WRONG_HOST = 256 };
	static const struct option longopts[] = {
	    {"scenario", required_argument, NULL, 's'},
	    {"project-key", required_argument, NULL, 'k'},
	    {"payload", required_argument, NULL, 'P'},
	    {"release", required_argument, NULL, 'r'},
	    {"address", required_argument, NULL, 'a'},
	    {"port", required_argument, NULL, 'p'},
	    {"dir", required_argument, NULL, 'd'},
	    {"info-file", required_argument, NULL, 'i'},
	    {"wrong-host-cert", no_argument, NULL, OPT_WRONG_HOST},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct mockmf_options opt = {.log = stderr};
	const char *scenario = NULL, *info = NULL;
	char *payloads[64], *releases[64];
	size_t n_payloads = 0, n_releases = 0, i;
	struct event *sigint, *sigterm;
	struct event_base *base;
	struct mockmf *m;
	char err[512], text[2048];
	int c, r = 1;

	while ((c = getopt_long(argc, argv, "s:k:P:r:a:p:d:i:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			scenario = optarg;
			break;
		case 'k':
			opt.project_key = optarg;
			break;
		case 'P':
		case 'r':
			if ((c == 'P' ? n_payloads : n_releases) >= 64) {
				fprintf(stderr, "otagw-mockmf: at most 64 of each\n");
				return 2;
			}
			if (c == 'P')
				payloads[n_payloads++] = optarg;
			else
				releases[n_releases++] = optarg;
			break;
		case 'a':
			opt.address = optarg;
			break;
		case 'p': {
			char *end;
			unsigned long p = strtoul(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || p > 65535) {
				fprintf(stderr, "otagw-mockmf: bad port %s\n", optarg);
				return 2;
			}
			opt.port = (uint16_t)p;
			break;
		}
		case 'd':
			opt.dir = optarg;
			break;
		case 'i':
			info = optarg;
			break;
		case OPT_WRONG_HOST:
			opt.cert = MOCKMF_CERT_WRONG_HOST;
			break;
		case 'q':
			opt.log = NULL;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	base = event_base_new();
	if (base == NULL)
		return 1;
	m = mockmf_new(base, &opt);
	if (m == NULL)
		goto out_base;
	if (scenario != NULL && mockmf_load_scenario(m, scenario, err, sizeof(err)) < 0) {
		fprintf(stderr, "otagw-mockmf: %s\n", err);
		goto out;
	}
	if (opt.project_key != NULL && mockmf_set_project_key(m, opt.project_key) < 0)
		goto out;
	for (i = 0; i < n_payloads; i++)
		if (add_payload_arg(m, payloads[i]) < 0)
			goto out;
	for (i = 0; i < n_releases; i++)
		if (add_release_arg(m, releases[i]) < 0)
			goto out;
	snprintf(text, sizeof(text), "{\"port\": %u, \"base_url\": \"%s\", \"ca_file\": \"%s\"}",
	    mockmf_port(m), mockmf_base_url(m), mockmf_ca_file(m));
	if ((c = write_info(info, text)) < 0) {
		fprintf(stderr, "otagw-mockmf: %s: %s\n", info ? info : "stdout", strerror(-c));
		goto out;
	}
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0) {
		fprintf(stderr, "otagw-mockmf: cannot install signal handlers\n");
	} else {
		fprintf(stderr, "otagw-mockmf: listening on %s\n", mockmf_base_url(m));
		event_base_dispatch(base);
		r = 0;
	}
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	if (info != NULL)
		unlink(info);
out:
	mockmf_free(m);
out_base:
	event_base_free(base);
	return r;
}
