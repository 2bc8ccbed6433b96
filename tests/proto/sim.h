/* An in-process, discrete-event simulation of one device (otadev) and one gateway (a test peer
 * built on msg + sender) joined by an emulated link: a byte clock for stream links (8N1: ten bit
 * times per byte, one-way latency, random bit errors) or a packet clock for packet links, with
 * hooks to drop, duplicate or corrupt DATA frames, cut the link, restart the gateway session or
 * reboot the device. Time is simulated, so results do not depend on the machine's load. */
#ifndef OTAGW_TEST_SIM_H
#define OTAGW_TEST_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "otadev.h"
#include "sender.h"

struct sim_opts {
	int packet;           /* 0: stream link (COBS frames), 1: packet link */
	uint32_t baud;        /* stream: 8N1 line rate (bytes/s = baud / 10) */
	uint32_t packet_rate; /* packet: bytes/s */
	double latency_ms;    /* one way */
	double ber;           /* stream: bit error rate, both directions */
	double packet_loss;   /* packet: drop probability per packet, both directions */
	uint32_t seed;
	uint32_t size;         /* image bytes */
	uint16_t max_payload;  /* the device's */
	uint8_t window;        /* the device's */
	uint16_t max_stall_ms; /* the device's */
	uint32_t sector_size;  /* 0: no flash_erase callback */
	uint32_t erase_ms;     /* simulated duration of one sector erase */
	uint32_t persist_interval;
	int wrong_sha;     /* the gateway offers a digest that does not match the bytes */
	int decline;       /* the device's application declines the offer */
	int no_update;     /* the gateway answers NO_UPDATE */
	int gateway_error; /* the gateway answers ERROR UPSTREAM_UNAVAILABLE, retry 30 s */
};

#define SIM_HOOKS 8

/* One direction of the link: a ring of bytes (stream) or packets in flight, each with its
 * arrival time. */
struct sim_bytes {
	void *ring;
	size_t head, tail, cap;
	double wire_free;     /* when the sender's side of the wire is free again (us) */
	double bits_to_error; /* bits until the next bit error */
};

enum sim_gw_state {
	SIM_GW_WAIT_HELLO,
	SIM_GW_OFFERED,
	SIM_GW_SENDING,
	SIM_GW_WAIT_RESULT,
	SIM_GW_DONE,
	SIM_GW_FAILED,
};

struct sim {
	struct sim_opts o;
	double t; /* now, us */
	uint32_t rng;
	uint8_t *image, sha[32];
	/* device */
	otadev_t dev;
	otadev_config_t cfg;
	uint8_t *flash;
	uint8_t rx_buf[OTADEV_RX_CAP(PROTO_PAYLOAD_MAX)], tx_buf[OTADEV_TX_CAP];
	otadev_resume_t stored;
	int have_stored;
	double dev_busy_until;
	uint32_t dev_written; /* highest byte written + 1 */
	int dev_results, dev_done, dev_offers, dev_no_update, dev_errors, dev_aborted;
	int dev_last_status;
	int flash_double_program; /* a byte programmed without an erase in between */
	int erases;
	/* links: to the device and to the gateway */
	struct sim_bytes to_dev, to_gw;
	double cut_until;
	double gw_last_tx;
	/* gateway */
	enum sim_gw_state gw;
	struct sender snd;
	int snd_live; /* snd holds a session whose counters are not yet in the totals */
	uint16_t gw_payload;
	uint8_t gw_window;
	uint16_t gw_stall;
	struct frame_decoder gw_dec;
	uint8_t gw_rx[MSG_CONTROL_MAX + FRAME_CRC_LEN + 16];
	uint32_t gw_wake_ms;
	int gw_has_wake;
	int hellos, hellos_resume, acks, gw_bad_msgs;
	uint32_t first_ack_offset, last_hello_resume_offset;
	int gw_result_status, gw_results, gw_dones;
	uint32_t gw_result_bytes;
	uint32_t data_frames; /* DATA frames the gateway sent */
	double t_first_data, t_complete;
	struct sender_stats last_stats; /* of the latest sender session */
	uint64_t total_resent;
	uint32_t total_rewinds, total_timeouts;
	/* hooks: DATA frame numbers (counted from 1) to drop, duplicate or corrupt */
	uint32_t drop[SIM_HOOKS], dup[SIM_HOOKS], corrupt[SIM_HOOKS];
	int out_of_window; /* inject DATA outside the device's window once, when set */
};

/* Sets up both sides; the device sends its first HELLO at time 0. */
void sim_init(struct sim *s, const struct sim_opts *o);
void sim_free(struct sim *s);

/* Runs until the gateway is DONE or FAILED, the device has written at least stop_written bytes
 * (0: ignore), or until_s of simulated time. Returns 1 if it stopped on the written bytes. */
int sim_run(struct sim *s, uint32_t stop_written, double until_s);

/* Drops everything on the link, both ways, for ms. */
void sim_cut(struct sim *s, double ms);
/* Forgets the gateway session (a daemon restart); with solicit, sends SOLICIT. */
void sim_gateway_restart(struct sim *s, int solicit);
/* Reboots the device: a new context from the stored resume state, then a check. */
void sim_reboot(struct sim *s);

/* Goodput of the transfer as a fraction of the line rate: image bytes over the time from the
 * first DATA to the device holding every byte. */
double sim_efficiency(const struct sim *s);

#endif
