// SPDX-License-Identifier: GPL-2.0
/*
 * Must NOT load: calls the boost kfunc from vcpu_register(), which is not
 * one of the allowlisted call sites. The lab checks the verifier rejects it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

extern int bpf_pvsched_boost(struct kvm_pvsched_vcpu *pv, int policy,
			     int priority) __ksym;

SEC("struct_ops/vcpu_register")
int BPF_PROG(bad_register, struct kvm_pvsched_vcpu *pv)
{
	return bpf_pvsched_boost(pv, 1, 10);
}

SEC(".struct_ops.link")
struct kvm_pvsched_ops pvsched_bad_register = {
	.vcpu_register = (void *)bad_register,
	.name = "bad_register",
};

char LICENSE[] SEC("license") = "GPL";
