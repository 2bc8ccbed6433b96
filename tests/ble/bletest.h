/* The little protocol the BLE VM test programs (bletest-central, bletest-periph) speak over an
 * otagw BLE transport, standing in for the real session: bulk data with windowed acknowledgements
 * (bluetoothd buffers GATT writes without limit, so the sender paces on acks), echoes of every
 * size, and a request to drop the link. Every message starts with a type byte. */
#ifndef OTAGW_BLETEST_H
#define OTAGW_BLETEST_H

#include <stddef.h>
#include <stdint.h>

enum bletest_type {
	BLETEST_DATA = 1, /* u32 seq, then payload bytes bletest_byte(seq, i) */
	BLETEST_ACK,      /* u32 messages received so far in this transfer */
	BLETEST_END,      /* u32 messages, u32 bytes: the sender is done */
	BLETEST_DONE,     /* u32 messages, u32 bytes, u8 ok: the receiver checked all */
	BLETEST_PULL,     /* u32 bytes: send me this much */
	BLETEST_ECHO,     /* anything: sent back with the type BLETEST_ECHOED */
	BLETEST_ECHOED,
	BLETEST_DROP, /* drop the link (the peripheral disconnects the central) */
};

enum { BLETEST_WINDOW = 32 }; /* the receiver acks every WINDOW messages; 2 windows in flight */

static inline uint8_t
bletest_byte(uint32_t seq, size_t i)
{
	return (uint8_t)(seq * 31u + i * 7u + 1u);
}

static inline void
bletest_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t
bletest_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Bulk transfer state, the same on both sides. */
struct bletest_bulk {
	/* sending */
	uint32_t total, sent_bytes, sent_msgs, acked_msgs;
	int sending;
	/* receiving */
	uint32_t rx_msgs, rx_bytes, rx_bad;
	uint32_t first_bad_seq, first_bad_len; /* for the log */
};

#endif
