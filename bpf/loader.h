/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the loaders: the stop flag SIGINT and SIGTERM set, the options
 * the policy loaders share (-o STATS.json, -i INTERVAL_MS), and the loop
 * that rewrites the statistics until stopped, as tools/sched_ext's loaders
 * keep theirs.
 */
#ifndef __LOADER_H
#define __LOADER_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "pvsched_dump.h"

static volatile sig_atomic_t loader_stop;

static inline void loader_on_stop(int sig)
{
	loader_stop = 1;
}

static inline void loader_catch_stop(void)
{
	signal(SIGINT, loader_on_stop);
	signal(SIGTERM, loader_on_stop);
}

struct loader_opts {
	const char *stats;	/* -o: where the statistics go (none: not written) */
	int interval_ms;	/* -i: how often they are rewritten */
};

/*
 * Parse -o and -i, and hand every other option of `extra` (getopt syntax)
 * to `other`, which returns false on a bad one. Returns 0, or 2 after
 * printing `usage`.
 */
static inline int loader_parse(int argc, char **argv, const char *extra, struct loader_opts *opts,
			bool (*other)(int opt, const char *arg), const char *usage)
{
	char spec[64];
	int opt;

	snprintf(spec, sizeof(spec), "o:i:%s", extra);
	opts->interval_ms = 200;
	while ((opt = getopt(argc, argv, spec)) != -1) {
		if (opt == 'o') {
			opts->stats = optarg;
		} else if (opt == 'i') {
			opts->interval_ms = atoi(optarg);
		} else if (!other || opt == '?' || !other(opt, optarg)) {
			fprintf(stderr, "usage: %s %s\n", argv[0], usage);
			return 2;
		}
	}
	return 0;
}

/* "attached" on stdout: the lab waits for this line. */
static inline void loader_attached(void)
{
	printf("attached\n");
	fflush(stdout);
}

/*
 * Rewrite `map`'s statistics (described by the object's `btf`) every
 * interval until stopped (or `ejected` says the kernel dropped the policy),
 * then once more.
 */
static inline void loader_dump_until_stopped(const struct bpf_map *map, const struct btf *btf,
				      const char *policy, const struct loader_opts *opts,
				      bool (*ejected)(void *ctx), void *ctx)
{
	while (!loader_stop && !(ejected && ejected(ctx))) {
		pvsched_dump_stats(map, btf, policy, opts->stats);
		usleep(opts->interval_ms * 1000);
	}
	pvsched_dump_stats(map, btf, policy, opts->stats);
}

#endif
