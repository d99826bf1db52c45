// SPDX-License-Identifier: GPL-2.0
/*
 * Loader for the pvsched sched_ext policy (pvsched_scx.bpf.c).
 *
 * usage: pvsched_scx [-o STATS.json] [-i INTERVAL_MS]
 *
 * Attaches the kvm_pvsched_ops hints and the sched_ext scheduler, prints
 * "attached", rewrites per-vCPU statistics every INTERVAL_MS, and on
 * SIGINT/SIGTERM (or if sched_ext ejects the scheduler) detaches both.
 */
#include <bpf/bpf.h>
#include <scx/common.h>
#include "loader.h"
#include "pvsched_scx.skel.h"

static bool ejected(void *ctx)
{
	struct pvsched_scx_bpf *skel = ctx;

	return UEI_EXITED(skel, uei);
}

int main(int argc, char **argv)
{
	struct bpf_link *scx_link, *hints_link;
	struct loader_opts opts = {};
	struct pvsched_scx_bpf *skel;
	int err;

	err = loader_parse(argc, argv, "", &opts, NULL, "[-o STATS.json] [-i MS]");
	if (err)
		return err;
	loader_catch_stop();

	skel = SCX_OPS_OPEN(pvsched_scx_ops, pvsched_scx_bpf);
	bpf_map__set_autoattach(skel->maps.pvsched_scx_hints, false);
	SCX_OPS_LOAD(skel, pvsched_scx_ops, pvsched_scx_bpf, uei);
	hints_link = bpf_map__attach_struct_ops(skel->maps.pvsched_scx_hints);
	SCX_BUG_ON(!hints_link, "Failed to attach kvm_pvsched_ops");
	scx_link = SCX_OPS_ATTACH(skel, pvsched_scx_ops, pvsched_scx_bpf);
	loader_attached();

	loader_dump_until_stopped(skel->maps.vcpus, bpf_object__btf(skel->obj), "scx", &opts,
				  ejected, skel);
	bpf_link__destroy(scx_link);
	bpf_link__destroy(hints_link);
	UEI_REPORT(skel, uei);
	pvsched_scx_bpf__destroy(skel);
	printf("detached\n");
	return 0;
}
