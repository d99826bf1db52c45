// SPDX-License-Identifier: GPL-2.0
/*
 * Loader for the pvsched boost policy (pvsched_boost.bpf.c).
 *
 * usage: pvsched_boost [-p PRIORITY] [-h HINT_PRIORITY] [-o STATS.json]
 *                      [-i INTERVAL_MS]
 *
 * PRIORITY (10) is the SCHED_FIFO priority for a guest's RT work,
 * HINT_PRIORITY (1) for its critical sections and bare requests.
 *
 * Attaches the policy, prints "attached" once it is live, rewrites the
 * per-vCPU statistics to STATS.json every INTERVAL_MS and on exit, and
 * detaches on SIGINT or SIGTERM (the kernel then unboosts every vCPU).
 */
#include <errno.h>
#include <string.h>
#include "loader.h"
#include "pvsched_boost.skel.h"

static int priority = 10, hint = 1;

static bool priority_option(int opt, const char *arg)
{
	if (opt == 'p')
		priority = atoi(arg);
	else if (opt == 'h')
		hint = atoi(arg);
	else
		return false;
	return true;
}

int main(int argc, char **argv)
{
	struct loader_opts opts = {};
	struct pvsched_boost_bpf *skel;
	struct bpf_link *link;
	int err;

	err = loader_parse(argc, argv, "p:h:", &opts, priority_option,
			   "[-p PRIORITY] [-h HINT_PRIORITY] [-o STATS.json] [-i MS]");
	if (err)
		return err;
	loader_catch_stop();

	skel = pvsched_boost_bpf__open();
	if (!skel) {
		fprintf(stderr, "pvsched_boost: open failed: %s\n", strerror(errno));
		return 1;
	}
	skel->rodata->boost_priority = priority;
	skel->rodata->hint_priority = hint;
	err = pvsched_boost_bpf__load(skel);
	if (err) {
		fprintf(stderr, "pvsched_boost: load failed: %d\n", err);
		goto out;
	}
	link = bpf_map__attach_struct_ops(skel->maps.pvsched_boost);
	if (!link) {
		err = -errno;
		fprintf(stderr, "pvsched_boost: attach failed: %s\n", strerror(errno));
		goto out;
	}
	loader_attached();
	loader_dump_until_stopped(skel->maps.vcpus, bpf_object__btf(skel->obj), "boost", &opts,
				  NULL, NULL);
	bpf_link__destroy(link);
	printf("detached\n");
out:
	pvsched_boost_bpf__destroy(skel);
	return err ? 1 : 0;
}
