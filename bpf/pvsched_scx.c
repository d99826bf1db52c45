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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <scx/common.h>
#include "pvsched_dump.h"
#include "pvsched_scx.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	struct bpf_link *scx_link, *hints_link;
	const char *stats = NULL;
	struct pvsched_scx_bpf *skel;
	int opt, interval_ms = 200;

	while ((opt = getopt(argc, argv, "o:i:")) != -1) {
		switch (opt) {
		case 'o':
			stats = optarg;
			break;
		case 'i':
			interval_ms = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-o STATS.json] [-i MS]\n", argv[0]);
			return 2;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	skel = SCX_OPS_OPEN(pvsched_scx_ops, pvsched_scx_bpf);
	bpf_map__set_autoattach(skel->maps.pvsched_scx_hints, false);
	SCX_OPS_LOAD(skel, pvsched_scx_ops, pvsched_scx_bpf, uei);
	hints_link = bpf_map__attach_struct_ops(skel->maps.pvsched_scx_hints);
	SCX_BUG_ON(!hints_link, "Failed to attach kvm_pvsched_ops");
	scx_link = SCX_OPS_ATTACH(skel, pvsched_scx_ops, pvsched_scx_bpf);
	printf("attached\n");
	fflush(stdout);

	while (!stop && !UEI_EXITED(skel, uei)) {
		pvsched_dump_stats(bpf_map__fd(skel->maps.vcpus), "scx", stats);
		usleep(interval_ms * 1000);
	}
	pvsched_dump_stats(bpf_map__fd(skel->maps.vcpus), "scx", stats);
	bpf_link__destroy(scx_link);
	bpf_link__destroy(hints_link);
	UEI_REPORT(skel, uei);
	pvsched_scx_bpf__destroy(skel);
	printf("detached\n");
	return 0;
}
