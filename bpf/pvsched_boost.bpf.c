// SPDX-License-Identifier: GPL-2.0
/*
 * pvsched "boost" policy: run a vCPU thread at SCHED_FIFO while its guest
 * runs an RT task, is in an interrupt or softirq, or asks explicitly; and
 * when an interrupt is injected into a vCPU whose RT task went to sleep,
 * so the wakeup does not wait behind host tasks. A vCPU that halts keeps
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

const volatile int boost_priority = 10;


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
	struct pvsched_guest_state g;
	struct pvsched_vcpu_stats *s;
	bool rt, want;

	s = vcpu_stats_event(pv, event);
	if (!s)
		return;
	if (bpf_pvsched_read_guest(pv, &g)) {
		s->read_errors++;
		want = false;
		goto decide;
	}
	rt = g.policy == SCHED_FIFO || g.policy == SCHED_RR;
	s->last_policy = g.policy;
	s->last_rt_priority = g.rt_priority;
	if (rt)
		s->rt_seen++;
	if (g.cs & PVSCHED_CS_HARDIRQ)
		s->hardirq_seen++;
	if (g.cs & PVSCHED_CS_SOFTIRQ)
		s->softirq_seen++;
	if (g.flags & PVSCHED_GUEST_BOOST_REQUEST)
		s->request_seen++;

	want = vcpu_needs_help(&g, rt, event);
decide:
	if (want == s->wanted)
		return;
	s->wanted = want;
	if (!want) {
		s->unboost_requests++;
		bpf_pvsched_unboost(pv);
	} else if (bpf_pvsched_boost(pv, SCHED_FIFO, boost_priority) == -EBUSY) {
		s->refused++;
		s->wanted = false;	/* throttled: ask again on the next event */
	} else {
		s->boost_requests++;
	}
}

SEC(".struct_ops.link")
struct kvm_pvsched_ops pvsched_boost = {
	.vcpu_register = (void *)boost_register,
	.vcpu_unregister = (void *)boost_unregister,
	.notify = (void *)boost_notify,
	.name = "boost",
};

char LICENSE[] SEC("license") = "GPL";
