// SPDX-License-Identifier: GPL-2.0
/*
 * The lab's smallest BPF program: counts context switches on the host
 * kernel. Loading and attaching it proves the BPF toolchain end to end
 * (clang, the kernel's BTF, the skeleton, the loader, the verifier).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 switches;

SEC("tp_btf/sched_switch")
int BPF_PROG(count_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	__sync_fetch_and_add(&switches, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
