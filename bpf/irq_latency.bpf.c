// SPDX-License-Identifier: GPL-2.0
/*
 * The host's own view of a vCPU's wakeup: from an interrupt accepted into
 * the vCPU's local APIC (kvm_apic_accept_irq, in the sender's context) to
 * that vCPU's next VM entry (kvm_entry, on its thread). What lies between
 * is mostly the vCPU thread waiting for a host CPU: the latency the host
 * scheduler, and so pvsched, decides. Measured the same way in every mode.
 *
 * One VM at a time: the APIC ID stands for the vCPU ID (QEMU's default).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "irq_latency.h"

/* When the oldest interrupt still waiting for its vCPU's entry was accepted (0: none). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IRQ_LATENCY_MAX_VCPUS);
	__type(key, __u32);
	__type(value, __u64);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IRQ_LATENCY_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct irq_latency_totals);
} totals SEC(".maps");

static __always_inline __u32 msb(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

SEC("tp/kvm/kvm_apic_accept_irq")
int on_accept(struct trace_event_raw_kvm_apic_accept_irq *ctx)
{
	__u32 id = ctx->apicid;
	__u64 *ts = bpf_map_lookup_elem(&pending, &id);

	/* The oldest waiting interrupt counts: later ones ride the same entry. */
	if (ts)
		__sync_val_compare_and_swap(ts, 0, bpf_ktime_get_ns());
	return 0;
}

SEC("tp/kvm/kvm_entry")
int on_entry(struct trace_event_raw_kvm_entry *ctx)
{
	__u32 id = ctx->vcpu_id, zero = 0, idx, m;
	struct irq_latency_totals *t;
	__u64 *ts, *slot, since, us;

	ts = bpf_map_lookup_elem(&pending, &id);
	if (!ts)
		return 0;
	since = __sync_lock_test_and_set(ts, 0);
	if (!since)
		return 0;
	us = (bpf_ktime_get_ns() - since) / 1000;
	m = msb(us);
	idx = us < 4 ? us : m * 4 + ((us >> (m - 2)) & 3);
	if (idx >= IRQ_LATENCY_BUCKETS)
		idx = IRQ_LATENCY_BUCKETS - 1;
	slot = bpf_map_lookup_elem(&hist, &idx);
	if (slot)
		__sync_fetch_and_add(slot, 1);
	t = bpf_map_lookup_elem(&totals, &zero);
	if (t) {
		__sync_fetch_and_add(&t->count, 1);
		__sync_fetch_and_add(&t->sum_us, us);
		if (us > t->max_us)
			t->max_us = us;	/* racy, and a max that a race lowers by one sample is fine */
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
