// SPDX-License-Identifier: GPL-2.0
/*
 * pvsched "boost" policy: run a vCPU thread at SCHED_FIFO while its guest
 * runs an RT task, is in an interrupt or softirq, or asks explicitly; and
 * when an interrupt is injected into a vCPU whose RT task went to sleep,
 * so the wakeup does not wait behind host tasks. RT work is boosted above
 * the rest (boost_priority, hint_priority). Critical-section boosts
 * have a budget of their own (cs_budget_ns per cs_period_ns). A vCPU that halts keeps
 * its boost only while its RT task sleeps (it costs nothing while halted,
 * and a periodic RT task then causes no boost/unboost churn). The kernel
 * applies the boost and enforces its budget of boosted CPU time; this
 * program only decides, and counts per vCPU what it saw and did.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "pvsched_defs.h"
#include "pvsched_vcpus.bpf.h"

#define SCHED_FIFO	1
#define SCHED_RR	2
#define EBUSY		16

extern int bpf_pvsched_read_guest(struct kvm_pvsched_vcpu *pv,
				  struct pvsched_guest_state *state) __ksym;
extern int bpf_pvsched_boost(struct kvm_pvsched_vcpu *pv, int policy,
			     int priority) __ksym;
extern int bpf_pvsched_unboost(struct kvm_pvsched_vcpu *pv) __ksym;

/*
 * RT work in the guest (an RT task running or about to wake) gets
 * boost_priority; a critical section alone or a bare request gets
 * hint_priority: enough to run ahead of the host's ordinary tasks, never
 * ahead of its RT tasks, so a guest's hints cannot cost host RT latency
 * (a busy guest's critical-section boosts cost a host cyclictest at 5
 * 1.34x of its average without the policy at 10, 1.16x at 1; measured
 * here with the stress suite).
 */
const volatile int boost_priority = 10;
const volatile int hint_priority = 1;
/*
 * Boosts for a guest critical section alone (hard/soft IRQ, NMI) get a
 * budget of their own, ChromeOS's 3 ms per 100 ms: KVM sees the guest's
 * state only at exits, so such a boost lasts until the next one. A busy
 * guest exits mostly inside its timer interrupt, and without this budget
 * it flipped between SCHED_FIFO and its own policy at every tick (host
 * stress-ng 0.73x, host cyclictest 1.59x of no policy, measured here).
 */
const volatile __u64 cs_budget_ns = 3000000;
const volatile __u64 cs_period_ns = 100000000;


SEC("struct_ops/vcpu_register")
int BPF_PROG(boost_register, struct kvm_pvsched_vcpu *pv)
{
	vcpu_stats_register(pv);
	return 0;
}

SEC("struct_ops/vcpu_unregister")
void BPF_PROG(boost_unregister, struct kvm_pvsched_vcpu *pv)
{
	vcpu_stats_unregister(pv);
}

SEC("struct_ops/notify")
void BPF_PROG(boost_notify, struct kvm_pvsched_vcpu *pv, __u32 event)
{
	struct pvsched_vcpu_stats scratch, *s;
	struct pvsched_guest_state g;
	bool rt, want, cs_only = false, rt_work = false;
	int prio;
	__u64 now;

	/* Without statistics (scratch) it still decides, by this event alone. */
	s = vcpu_stats_event(pv, event, &scratch);
	if (bpf_pvsched_read_guest(pv, &g)) {
		s->read_errors++;
		want = false;
		goto decide;
	}
	rt = g.policy == SCHED_FIFO || g.policy == SCHED_RR;
	s->last_policy = g.policy;
	if (rt)
		s->last_rt_priority = g.rt_priority;
	if (rt)
		s->rt_seen++;
	if (g.cs & PVSCHED_CS_HARDIRQ)
		s->hardirq_seen++;
	if (g.cs & PVSCHED_CS_SOFTIRQ)
		s->softirq_seen++;
	if (g.cs & PVSCHED_CS_NMI)
		s->nmi_seen++;
	if (g.cs & PVSCHED_CS_PREEMPT_DISABLED)
		s->preempt_seen++;
	if (g.flags & PVSCHED_GUEST_BOOST_REQUEST)
		s->request_seen++;

	want = vcpu_needs_help(&g, rt, event);
	rt_work = rt || (g.flags & PVSCHED_GUEST_RT_SLEEPING);
	cs_only = want && !rt_work && !(g.flags & PVSCHED_GUEST_BOOST_REQUEST);
decide:
	now = bpf_ktime_get_ns();
	budget_window_roll(&s->cs_window_ns, &s->cs_used_ns, &s->cs_since_ns,
			   now, cs_period_ns);
	if (s->cs_since_ns) {
		s->cs_used_ns += now - s->cs_since_ns;
		s->cs_since_ns = now;
	}
	if (!cs_only) {
		s->cs_since_ns = 0;
	} else if (s->cs_used_ns >= cs_budget_ns) {
		s->cs_denied++;
		s->cs_since_ns = 0;
		want = false;
	} else if (!s->cs_since_ns) {
		s->cs_since_ns = now;
	}
	prio = !want ? 0 : rt_work ? boost_priority : hint_priority;
	if (prio == s->wanted)
		return;
	if (!prio) {
		s->unboost_requests++;
		bpf_pvsched_unboost(pv);
	} else if (bpf_pvsched_boost(pv, SCHED_FIFO, prio) == -EBUSY) {
		s->refused++;
		prio = 0;	/* throttled: ask again on the next event */
	} else if (!s->wanted) {
		s->boost_requests++;
	}
	s->wanted = prio;
}

SEC(".struct_ops.link")
struct kvm_pvsched_ops pvsched_boost = {
	.vcpu_register = (void *)boost_register,
	.vcpu_unregister = (void *)boost_unregister,
	.notify = (void *)boost_notify,
	.name = "boost",
};

char LICENSE[] SEC("license") = "GPL";
