#!/usr/bin/env bash
# Prints the MCU footprint of proto/device (otadev with the proto/ files it uses) for Cortex-M0+
# and Cortex-M4: arm-none-eabi-gcc -Os -mthumb, -ffunction-sections, linked with --gc-sections
# against a stub main per port, so only what a real port links is counted:
#   uart: otadev_init + otadev_feed, sending through tx (COBS + CRC-32C framing);
#   ble:  otadev_init_packet + otadev_packet, sending through tx_packet (no framing);
# both also call otadev_check, otadev_poll, otadev_rewind and otadev_stop.
# text (.text + .rodata), data and bss are summed per object from the linker map; flash is text +
# data, RAM is data + bss:
# "core" is otadev with framing, CRC and messages; "sha256" is the portable SHA-256 a port may
# replace with hardware; "libc" is what the compiler pulls in (memcpy, memset, strlen, helpers).
# The context (otadev_t) is the RAM a port allocates beyond its rx/tx buffers.
# Usage: bash tools/footprint.sh [--check]
#   --check: fail if a port's core exceeds FOOTPRINT_MAX_FLASH bytes (default 3072, issue 2's
#   3 KiB) or its context FOOTPRINT_MAX_RAM bytes (default 256) on either core, or if the ble port
#   links any framing code (frame.c, crc32c.c).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
check=0
[ "${1:-}" = "--check" ] && check=1
max_flash=${FOOTPRINT_MAX_FLASH:-3072}
max_ram=${FOOTPRINT_MAX_RAM:-256}
command -v arm-none-eabi-gcc >/dev/null || {
	echo "footprint: arm-none-eabi-gcc not found (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)" >&2
	exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The part both stubs share: callbacks, and a volatile sink so nothing is optimised away.
cat >"$work/common.h" <<'STUB'
#include "otadev.h"

otadev_t footprint_ctx;
volatile uint32_t sink;

static int er_fn(void *u, uint32_t o) { (void)u; return (int)o; }
static int wr_fn(void *u, uint32_t o, const uint8_t *d, size_t n) { (void)u; (void)d; return (int)(o + n); }
static int rd_fn(void *u, uint32_t o, uint8_t *d, size_t n) { (void)u; d[0] = 0; return (int)(o + n); }
static int sv_fn(void *u, const otadev_resume_t *s) { (void)u; return (int)s->offset; }
static int ld_fn(void *u, otadev_resume_t *s) { (void)u; s->offset = 0; return -1; }
static int ev_fn(void *u, const otadev_event_t *e) { (void)u; return (int)e->type; }

#define FOOTPRINT_CFG \
	.serial = "sn-1", .hardware_version = "hw", .software_type = "main", \
	.current_version = "1.0.0", .window = 4, .max_stall_ms = 200, \
	.flash_erase = er_fn, .sector_size = 4096, .flash_write = wr_fn, .flash_read = rd_fn, \
	.slot_size = 1 << 20, .persist_save = sv_fn, .persist_load = ld_fn, .event = ev_fn
STUB

# A UART port: stream framing both ways, caller-owned rx/tx buffers.
cat >"$work/uart.c" <<'STUB'
#include "common.h"

static uint8_t rx[OTADEV_RX_CAP(512)], tx[OTADEV_TX_CAP];

static int tx_fn(void *u, const uint8_t *b, size_t n) { (void)u; (void)b; return (int)n; }

static const otadev_config_t cfg = {
	FOOTPRINT_CFG, .max_payload = 512, .rx_buf = rx, .rx_cap = sizeof(rx), .tx_buf = tx,
	.tx_cap = sizeof(tx), .tx = tx_fn,
};

int
main(void)
{
	uint32_t now = 0;

	if (otadev_init(&footprint_ctx, &cfg) != 0)
		return 1;
	otadev_check(&footprint_ctx, now);
	otadev_feed(&footprint_ctx, rx, sink, now);
	sink = otadev_poll(&footprint_ctx, now);
	sink = (uint32_t)otadev_rewind(&footprint_ctx, sink, now);
	otadev_stop(&footprint_ctx);
	return 0;
}
STUB

# A BLE port (GATT or L2CAP): one message per packet, no buffers, no framing.
cat >"$work/ble.c" <<'STUB'
#include "common.h"

static uint8_t pkt[244];

static int txp_fn(void *u, const uint8_t *m, size_t n) { (void)u; (void)m; return (int)n; }

static const otadev_config_t cfg = {
	FOOTPRINT_CFG, .max_payload = 239, .tx_packet = txp_fn,
};

int
main(void)
{
	uint32_t now = 0;

	if (otadev_init_packet(&footprint_ctx, &cfg) != 0)
		return 1;
	otadev_check(&footprint_ctx, now);
	otadev_packet(&footprint_ctx, pkt, sink, now);
	sink = otadev_poll(&footprint_ctx, now);
	sink = (uint32_t)otadev_rewind(&footprint_ctx, sink, now);
	otadev_stop(&footprint_ctx);
	return 0;
}
STUB

# The UART example in docs/porting.md must keep compiling against the real headers.
awk '/<!-- example:uart -->/ { on = 1; next } on && /^```c/ { code = 1; next }
	code && /^```/ { exit } code { print }' "$top/docs/porting.md" >"$work/example.c"
arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os -std=c99 -Wall -Wextra -Werror \
	-I"$top/proto" -I"$top/proto/device" -c "$work/example.c" -o "$work/example.o" || {
	echo "footprint: the example in docs/porting.md does not compile" >&2
	exit 1
}

srcs=(proto/device/otadev.c proto/device/otadev_sha256.c proto/frame.c proto/crc32c.c proto/msg.c
	proto/ident.c)
status=0
printf '%-14s %-5s %-8s %6s %6s %6s %8s %7s\n' target port part text data bss "flash B" "RAM B"
for cpu in cortex-m0plus cortex-m4; do
	flags=(-mcpu=$cpu -mthumb -Os -std=c99 -ffunction-sections -fdata-sections -Wall -Wextra
		-I"$top/proto" -I"$top/proto/device")
	objs=()
	for s in "${srcs[@]}" ; do
		o="$work/$cpu-$(basename "$s" .c).o"
		arm-none-eabi-gcc "${flags[@]}" -c "$top/$s" -o "$o"
		objs+=("$o")
	done
	for port in uart ble; do
		arm-none-eabi-gcc "${flags[@]}" -Werror -I"$work" -c "$work/$port.c" \
			-o "$work/$cpu-$port-stub.o"
		# No start files: main is the entry, so only the library calls our code makes are
		# linked.
		arm-none-eabi-gcc "${flags[@]}" --specs=nano.specs -nostartfiles -Wl,--entry=main \
			-Wl,--gc-sections -Wl,-Map="$work/$cpu-$port.map" "$work/$cpu-$port-stub.o" \
			"${objs[@]}" -o "$work/$cpu-$port.elf"
		# Sum the kept input sections per object from the map ("Linker script and memory
		# map" on).
		awk -v cpu="$cpu" -v port="$port" -v check="$check" -v max_flash="$max_flash" \
			-v max_ram="$max_ram" '
		function hex(s,   i, n) {
			n = 0; s = tolower(substr(s, 3))
			for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
			return n
		}
		/^Linker script and memory map/ { on = 1; next }
		!on { next }
		/^ \.(text|rodata|data|bss)/ || /^ COMMON/ {
			sec = $1; addr = $2; size = $3; obj = $4
			if (NF == 1) { pending = sec; next }
		}
		pending != "" && /^ +0x/ { sec = pending; addr = $1; size = $2; obj = $3; pending = "" }
		sec != "" && size ~ /^0x/ {
			n = hex(size); kind = sec ~ /bss|COMMON/ ? "bss" : sec ~ /^\.data/ ? "data" : "text"
			# Our objects are named $cpu-<source>.o and $cpu-<port>-stub.o; anything else
			# (libc_nano.a(lib_a-memcpy-stub.o), libgcc.a(...)) comes from the toolchain.
			part = obj ~ /-otadev_sha256\.o$/ ? "sha256" : obj ~ /-(otadev|frame|crc32c|msg|ident)\.o$/ ? "core" : obj ~ /-(uart|ble)-stub\.o$/ ? (sec ~ /footprint_ctx/ ? "context" : "") : "libc"
			if (part != "")
				sz[part, kind] += n
			if (obj ~ /-(frame|crc32c)\.o$/ && n > 0)
				framing += n
			sec = ""
		}
		END {
			split("core sha256 libc context", parts, " ")
			for (i = 1; i <= 4; i++) {
				p = parts[i]
				t = sz[p, "text"]; d = sz[p, "data"]; b = sz[p, "bss"]
				printf "%-14s %-5s %-8s %6d %6d %6d %8d %7d\n", cpu, port, p, t, d, b, t + d, d + b
			}
			core = sz["core", "text"] + sz["core", "data"]
			ctx = sz["context", "data"] + sz["context", "bss"]
			if (!check)
				exit 0
			bad = 0
			if (core > max_flash || ctx > max_ram) {
				printf "footprint: %s %s: core %d B flash (target %d), context %d B RAM (target %d)\n", cpu, port, core, max_flash, ctx, max_ram > "/dev/stderr"
				bad = 1
			}
			if (port == "ble" && framing > 0) {
				printf "footprint: %s ble: links %d B of stream framing (frame.c, crc32c.c)\n", cpu, framing > "/dev/stderr"
				bad = 1
			}
			exit bad
		}' "$work/$cpu-$port.map" || status=1
	done
done
exit $status
