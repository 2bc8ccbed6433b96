/* Shared helpers of the BLE VM test programs. */
#ifndef OTAGW_BLETEST_IMPL_H
#define OTAGW_BLETEST_IMPL_H

#include "bletest.h"
#include "transport.h"

double bletest_now(void);
/* Sends type + n (1 or 2) u32 values. */
int bletest_send_u32s(struct transport *t, enum bletest_type type, uint32_t a, uint32_t b, int n);
void bletest_bulk_start(struct bletest_bulk *b, uint32_t total);
/* Sends DATA while the window allows, then END. 0 or a negative errno. */
int bletest_bulk_pump(struct transport *t, struct bletest_bulk *b);
/* Checks one DATA message and acks every window. */
int bletest_bulk_rx(struct transport *t, struct bletest_bulk *b, const uint8_t *msg, size_t len);

#endif
