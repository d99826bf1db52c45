// SPDX-License-Identifier: GPL-2.0
/*
 * Must NOT load: a sched_ext scheduler (a struct_ops program, but not of
 * kvm_pvsched_ops) calling the guest-state kfunc. The kfunc filter must
 * refuse it by its struct_ops type; the lab requires the verifier's "not
 * allowed", which a later failure (its NULL vCPU) would not print.
 */
#include <scx/common.bpf.h>
#include "pvsched_defs.h"

extern int bpf_pvsched_read_guest(struct kvm_pvsched_vcpu *pv,
				  struct pvsched_guest_state *state) __ksym;

char _license[] SEC("license") = "GPL";

void BPF_STRUCT_OPS(bad_scx_enable, struct task_struct *p)
{
	struct pvsched_guest_state state;

	bpf_pvsched_read_guest(NULL, &state);
}

SCX_OPS_DEFINE(pvsched_bad_scx_ops,
	       .enable		= (void *)bad_scx_enable,
	       .name		= "pvsched_bad_scx");
