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
#include "pvsched_stats.h"

#define SCHED_FIFO	1
#define SCHED_RR	2
#define EBUSY		16

extern int bpf_pvsched_read_guest(struct kvm_pvsched_vcpu *pv,
				  struct pvsched_guest_state *state) __ksym;
extern int bpf_pvsched_boost(struct kvm_pvsched_vcpu *pv, int policy,
			     int priority) __ksym;
extern int bpf_pvsched_unboost(struct kvm_pvsched_vcpu *pv) __ksym;

const volatile int boost_priority = 10;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PVSCHED_MAX_VCPUS);
	__type(key, __s32);
	__type(value, struct pvsched_vcpu_stats);
} vcpus SEC(".maps");

static __always_inline int event_index(__u32 event)
{
	switch (event) {
	case PVSCHED_EVENT_VMENTER: return 0;
	case PVSCHED_EVENT_VMEXIT: return 1;
	case PVSCHED_EVENT_HALT: return 2;
	default: return 3;
	}
}

SEC("struct_ops/vcpu_register")
int BPF_PROG(boost_register, struct kvm_pvsched_vcpu *pv)
{
	struct pvsched_vcpu_stats fresh = {}, *s;
	__s32 tid = pv->tid;

	/* A vCPU that comes back (CPU hotplug) keeps its counters. */
	s = bpf_map_lookup_elem(&vcpus, &tid);
	if (!s) {
		bpf_map_update_elem(&vcpus, &tid, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&vcpus, &tid);
		if (!s)
			return 0;
	}
	s->tid = tid;
	s->vm_pid = pv->vm_pid;
	s->vcpu_id = pv->vcpu_id;
	s->cpu = pv->cpu;
	s->registered = 1;
	s->wanted = 0;
	s->registrations++;
	return 0;
}

SEC("struct_ops/vcpu_unregister")
void BPF_PROG(boost_unregister, struct kvm_pvsched_vcpu *pv)
{
	__s32 tid = pv->tid;
	struct pvsched_vcpu_stats *s = bpf_map_lookup_elem(&vcpus, &tid);

	if (s)
		s->registered = 0;	/* keep its counters for the report */
}

SEC("struct_ops/notify")
void BPF_PROG(boost_notify, struct kvm_pvsched_vcpu *pv, __u32 event)
{
	struct pvsched_guest_state g;
	struct pvsched_vcpu_stats *s;
	__s32 tid = pv->tid;
	bool rt, want;

	s = bpf_map_lookup_elem(&vcpus, &tid);
	if (!s)
		return;
	s->cpu = pv->cpu;
	s->malformed = pv->malformed;
	s->kernel_boosts = pv->boosts;
	s->kernel_throttles = pv->throttles;
	s->kernel_boosted_ns = pv->boosted_ns;
	s->events[event_index(event)]++;
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

	/*
	 * An RT task that sleeps on this vCPU keeps it boosted until another
	 * task runs (the guest clears the flag then): a periodic RT task
	 * causes no boost/unboost churn, and a halted vCPU uses no budget.
	 */
	want = rt || (g.flags & PVSCHED_GUEST_RT_SLEEPING);
	if (event == PVSCHED_EVENT_VMENTER || event == PVSCHED_EVENT_VMEXIT)
		want = want || (g.cs & (PVSCHED_CS_NMI | PVSCHED_CS_HARDIRQ |
					PVSCHED_CS_SOFTIRQ)) ||
		       (g.flags & PVSCHED_GUEST_BOOST_REQUEST);
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
