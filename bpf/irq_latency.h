/* SPDX-License-Identifier: GPL-2.0 */
/* Shared by irq_latency.bpf.c and its loader. */
#ifndef __IRQ_LATENCY_H
#define __IRQ_LATENCY_H

#define IRQ_LATENCY_MAX_VCPUS	64
/*
 * Log-linear buckets of microseconds: below 4 us one per value, then four
 * per power of two (bucket 4m+f holds [(4+f) << (m-2), (5+f) << (m-2))).
 */
#define IRQ_LATENCY_BUCKETS	160

struct irq_latency_totals {
	__u64 count;
	__u64 sum_us;
	__u64 max_us;
};

#endif
