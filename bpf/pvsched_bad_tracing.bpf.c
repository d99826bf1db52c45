// SPDX-License-Identifier: GPL-2.0
/*
 * Must NOT load: a tracing program calling the unboost kfunc. pvsched
 * kfuncs exist only for kvm_pvsched_ops programs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

extern int bpf_pvsched_unboost(struct kvm_pvsched_vcpu *pv) __ksym;

SEC("fentry/__kvm_pvsched_event")
int BPF_PROG(bad_tracing, struct kvm_vcpu *vcpu, __u32 event)
{
	struct kvm_pvsched_vcpu *pv = vcpu->arch.pvsched;

	if (pv)
		bpf_pvsched_unboost(pv);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
