/* SPDX-License-Identifier: GPL-2.0 */
/* Per-vCPU statistics the pvsched policies keep, shared with their loaders. */
#ifndef __PVSCHED_STATS_H
#define __PVSCHED_STATS_H

#define PVSCHED_MAX_VCPUS	256

struct pvsched_vcpu_stats {
	__s32 tid;
	__s32 vm_pid;
	__s32 vcpu_id;
	__s32 cpu;
	__s32 registered;
	__s32 wanted;		/* boost: the priority asked for (0: none); scx: 1 */
	__u64 registrations;
	__u64 malformed;		/* copied from the kernel's count */
	__s32 last_policy;
	__s32 last_rt_priority;	/* of the last RT task seen (kept across non-RT events) */
	__u64 vmenter;		/* events seen, by kind */
	__u64 vmexit;
	__u64 halt;
	__u64 intr_inj;
	__u64 rt_seen;
	__u64 hardirq_seen;
	__u64 softirq_seen;
	__u64 nmi_seen;
	__u64 preempt_seen;	/* PREEMPT_DISABLED: counted, not acted on */
	__u64 request_seen;
	__u64 read_errors;
	__u64 boost_requests;
	__u64 unboost_requests;
	__u64 refused;
	/* the kernel's own accounting of this vCPU, copied at each event */
	__u64 kernel_boosts;
	__u64 kernel_throttles;
	__u64 kernel_boosted_ns;
	/* the boost policy's budget for critical-section boosts */
	__u64 cs_denied;	/* critical-section boosts refused: over budget */
	__u64 cs_window_ns;	/* start of the current budget window */
	__u64 cs_used_ns;	/* boosted for critical sections in it */
	__u64 cs_since_ns;	/* start of the running one, 0 if none */
};

#endif
