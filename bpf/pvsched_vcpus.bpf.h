/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-vCPU statistics map both pvsched policies keep, and its upkeep
 * from their kvm_pvsched_ops callbacks. Their loaders dump it as JSON.
 *
 * Entries outlive their vCPU (the report wants the counters of VMs that
 * are gone), so the map is an LRU: past PVSCHED_MAX_VCPUS threads the
 * least recently seen entry, a gone vCPU's, makes room. A vCPU whose entry
 * went anyway gets a new one at its next event, and a policy decides for a
 * vCPU without statistics all the same.
 */
#ifndef __PVSCHED_VCPUS_BPF_H
#define __PVSCHED_VCPUS_BPF_H

#include "pvsched_stats.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PVSCHED_MAX_VCPUS);
	__type(key, __s32);
	__type(value, struct pvsched_vcpu_stats);
} vcpus SEC(".maps");

/* The vCPU's entry, created if it has none (NULL only if that fails). */
static __always_inline struct pvsched_vcpu_stats *
vcpu_stats_get(struct kvm_pvsched_vcpu *pv)
{
	struct pvsched_vcpu_stats fresh = {}, *s;
	__s32 tid = pv->tid;

	s = bpf_map_lookup_elem(&vcpus, &tid);
	if (s)
		return s;
	fresh.tid = tid;
	fresh.vm_pid = pv->vm_pid;
	fresh.vcpu_id = pv->vcpu_id;
	fresh.registered = 1;
	bpf_map_update_elem(&vcpus, &tid, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&vcpus, &tid);
}

/* A vCPU registered; one that comes back (CPU hotplug) keeps its counters. */
static __always_inline void vcpu_stats_register(struct kvm_pvsched_vcpu *pv)
{
	struct pvsched_vcpu_stats *s = vcpu_stats_get(pv);

	if (!s)
		return;
	s->tid = pv->tid;
	s->vm_pid = pv->vm_pid;
	s->vcpu_id = pv->vcpu_id;
	s->cpu = pv->cpu;
	s->registered = 1;
	s->wanted = 0;
	s->registrations++;
}

/* A vCPU went away: keep its counters for the report. */
static __always_inline void vcpu_stats_unregister(struct kvm_pvsched_vcpu *pv)
{
	__s32 tid = pv->tid;
	struct pvsched_vcpu_stats *s = bpf_map_lookup_elem(&vcpus, &tid);

	if (s)
		s->registered = 0;
}

/*
 * An event: where the vCPU runs, and the kernel's own accounting of it.
 * Returns the vCPU's entry, or `scratch` (zeroed) if it has none.
 */
static __always_inline struct pvsched_vcpu_stats *
vcpu_stats_event(struct kvm_pvsched_vcpu *pv, __u32 event,
		 struct pvsched_vcpu_stats *scratch)
{
	struct pvsched_vcpu_stats *s = vcpu_stats_get(pv);

	if (!s) {
		__builtin_memset(scratch, 0, sizeof(*scratch));
		s = scratch;
	}
	s->cpu = pv->cpu;
	s->malformed = pv->malformed;
	s->kernel_boosts = pv->boosts;
	s->kernel_throttles = pv->throttles;
	s->kernel_boosted_ns = pv->boosted_ns;
	if (event == PVSCHED_EVENT_VMENTER)
		s->vmenter++;
	else if (event == PVSCHED_EVENT_VMEXIT)
		s->vmexit++;
	else if (event == PVSCHED_EVENT_HALT)
		s->halt++;
	else
		s->intr_inj++;
	return s;
}

/*
 * A budget window both policies keep per vCPU: once `period` has passed
 * since *start, a new window begins with nothing used, and a stretch that
 * is running (*since != 0) is charged from the window's start on.
 */
static __always_inline void budget_window_roll(__u64 *start, __u64 *used,
					       __u64 *since, __u64 now,
					       __u64 period)
{
	if (now - *start < period)
		return;
	*start = now;
	*used = 0;
	if (*since)
		*since = now;
}

/*
 * The one rule both policies use: help a vCPU while its guest runs an RT
 * task or has one sleeping (the guest clears RT_SLEEPING when another task
 * runs: a periodic RT task causes no boost/unboost churn, and a halted vCPU
 * uses no budget); at VM entry/exit also while it is in a hard/soft IRQ or
 * asks for it.
 */
static __always_inline bool vcpu_needs_help(const struct pvsched_guest_state *g,
					    bool rt, __u32 event)
{
	if (rt || (g->flags & PVSCHED_GUEST_RT_SLEEPING))
		return true;
	if (event != PVSCHED_EVENT_VMENTER && event != PVSCHED_EVENT_VMEXIT)
		return false;
	return (g->cs & (PVSCHED_CS_NMI | PVSCHED_CS_HARDIRQ | PVSCHED_CS_SOFTIRQ)) ||
	       (g->flags & PVSCHED_GUEST_BOOST_REQUEST);
}

#endif
