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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "pvsched_dump.h"
#include "pvsched_boost.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *stats = NULL;
	struct pvsched_boost_bpf *skel;
	struct bpf_link *link;
	int opt, priority = 10, hint = 1, interval_ms = 200, err = 0;

	while ((opt = getopt(argc, argv, "p:h:o:i:")) != -1) {
		switch (opt) {
		case 'p':
			priority = atoi(optarg);
			break;
		case 'h':
			hint = atoi(optarg);
			break;
		case 'o':
			stats = optarg;
			break;
		case 'i':
			interval_ms = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-p PRIORITY] [-h HINT_PRIORITY] [-o STATS.json] [-i MS]\n",
				argv[0]);
			return 2;
		}
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

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
	printf("attached\n");
	fflush(stdout);
	while (!stop) {
		pvsched_dump_stats(bpf_map__fd(skel->maps.vcpus), "boost", stats);
		usleep(interval_ms * 1000);
	}
	pvsched_dump_stats(bpf_map__fd(skel->maps.vcpus), "boost", stats);
	bpf_link__destroy(link);
	printf("detached\n");
out:
	pvsched_boost_bpf__destroy(skel);
	return err ? 1 : 0;
}
