// SPDX-License-Identifier: GPL-2.0
/*
 * pvsched "scx" policy: a sched_ext scheduler for the host that reads the
 * guests' per-vCPU areas and runs vCPU threads that need help ahead of
 * everything else, without touching their policy.
 *
 * Two parts in one object:
 *  - a kvm_pvsched_ops policy that, at each KVM event, decides from the
 *    guest's area whether the vCPU needs help (same rule as the boost
 *    policy) and records it per thread id;
 *  - a FIFO sched_ext scheduler with two queues: vCPU threads marked as
 *    needing help go to HI_DSQ, consumed first, and their enqueue kicks
 *    the CPU so they preempt; everything else goes to SHARED_DSQ.
 *
 * The kernel's boost budget governs the boost kfuncs; here the policy
 * enforces its own budget of prioritized time per period, in BPF.
 */
#include <scx/common.bpf.h>
#include "pvsched_defs.h"
#include "pvsched_vcpus.bpf.h"

#define SHARED_DSQ	0
#define HI_DSQ		1
#define SCHED_FIFO	1
#define SCHED_RR	2

extern int bpf_pvsched_read_guest(struct kvm_pvsched_vcpu *pv,
				  struct pvsched_guest_state *state) __ksym;

const volatile u64 budget_ns = 500ULL * 1000 * 1000;
const volatile u64 period_ns = 1000ULL * 1000 * 1000;

char _license[] SEC("license") = "GPL";
UEI_DEFINE(uei);

struct help {
	u64 period_start;
	u64 used_ns;
	u64 since;	/* when the current prioritized stretch began, or 0 */
	bool wanted;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVSCHED_MAX_VCPUS);
	__type(key, s32);
	__type(value, struct help);
} help SEC(".maps");

static bool needs_help(s32 tid)
{
	struct help *h = bpf_map_lookup_elem(&help, &tid);
	u64 now;

	if (!h || !h->wanted)
		return false;
	now = bpf_ktime_get_ns();
	budget_window_roll(&h->period_start, &h->used_ns, &h->since, now,
			   period_ns);
	if (h->since && h->used_ns + (now - h->since) >= budget_ns)
		return false;	/* over budget: normal FIFO until the period ends */
	return true;
}

/* sched_ext side */

s32 BPF_STRUCT_OPS(pvscx_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

	/* A vCPU that needs help goes through enqueue() and HI_DSQ. */
	if (is_idle && !needs_help(p->pid))
		scx_bpf_dispatch(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	return cpu;
}

void BPF_STRUCT_OPS(pvscx_enqueue, struct task_struct *p, u64 enq_flags)
{
	struct pvsched_vcpu_stats *s;
	s32 tid = p->pid;

	if (needs_help(tid)) {
		scx_bpf_dispatch(p, HI_DSQ, SCX_SLICE_DFL, enq_flags);
		scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
		s = bpf_map_lookup_elem(&vcpus, &tid);
		if (s)
			s->boost_requests++;
		return;
	}
	scx_bpf_dispatch(p, SHARED_DSQ, SCX_SLICE_DFL, enq_flags);
}

void BPF_STRUCT_OPS(pvscx_dispatch, s32 cpu, struct task_struct *prev)
{
	if (!scx_bpf_consume(HI_DSQ))
		scx_bpf_consume(SHARED_DSQ);
}

void BPF_STRUCT_OPS(pvscx_running, struct task_struct *p)
{
	s32 tid = p->pid;
	struct help *h = bpf_map_lookup_elem(&help, &tid);

	if (h && h->wanted && !h->since)
		h->since = bpf_ktime_get_ns();
}

void BPF_STRUCT_OPS(pvscx_stopping, struct task_struct *p, bool runnable)
{
	s32 tid = p->pid;
	struct help *h = bpf_map_lookup_elem(&help, &tid);

	if (h && h->since) {
		h->used_ns += bpf_ktime_get_ns() - h->since;
		h->since = 0;
	}
}

s32 BPF_STRUCT_OPS_SLEEPABLE(pvscx_init)
{
	s32 ret = scx_bpf_create_dsq(SHARED_DSQ, -1);

	return ret ?: scx_bpf_create_dsq(HI_DSQ, -1);
}

void BPF_STRUCT_OPS(pvscx_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(pvsched_scx_ops,
	       .select_cpu	= (void *)pvscx_select_cpu,
	       .enqueue		= (void *)pvscx_enqueue,
	       .dispatch	= (void *)pvscx_dispatch,
	       .running		= (void *)pvscx_running,
	       .stopping	= (void *)pvscx_stopping,
	       .init		= (void *)pvscx_init,
	       .exit		= (void *)pvscx_exit,
	       .name		= "pvsched_scx");

/* kvm_pvsched_ops side */

SEC("struct_ops/vcpu_register")
int BPF_PROG(pvscx_vcpu_register, struct kvm_pvsched_vcpu *pv)
{
	struct help h = {};
	s32 tid = pv->tid;

	bpf_map_update_elem(&help, &tid, &h, BPF_ANY);
	vcpu_stats_register(pv);
	return 0;
}

SEC("struct_ops/vcpu_unregister")
void BPF_PROG(pvscx_vcpu_unregister, struct kvm_pvsched_vcpu *pv)
{
	s32 tid = pv->tid;

	bpf_map_delete_elem(&help, &tid);
	vcpu_stats_unregister(pv);
}

SEC("struct_ops/notify")
void BPF_PROG(pvscx_notify, struct kvm_pvsched_vcpu *pv, u32 event)
{
	struct pvsched_vcpu_stats scratch, *s;
	struct pvsched_guest_state g;
	s32 tid = pv->tid;
	struct help *h;
	bool rt, want;

	h = bpf_map_lookup_elem(&help, &tid);
	s = vcpu_stats_event(pv, event, &scratch);
	if (!h)
		return;
	if (bpf_pvsched_read_guest(pv, &g)) {
		s->read_errors++;
		h->wanted = false;
		return;
	}
	rt = g.policy == SCHED_FIFO || g.policy == SCHED_RR;
	if (rt)
		s->rt_seen++;
	s->last_policy = g.policy;
	if (rt)
		s->last_rt_priority = g.rt_priority;
	want = vcpu_needs_help(&g, rt, event);
	h->wanted = want;
	s->wanted = want;
}

SEC(".struct_ops.link")
struct kvm_pvsched_ops pvsched_scx_hints = {
	.vcpu_register = (void *)pvscx_vcpu_register,
	.vcpu_unregister = (void *)pvscx_vcpu_unregister,
	.notify = (void *)pvscx_notify,
	.name = "scx_hints",
};
