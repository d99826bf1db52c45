// SPDX-License-Identifier: GPL-2.0
/*
 * Loader for irq_latency.bpf.c.
 *
 * usage: irq_latency -o OUT.json
 *
 * Attaches, prints "attached", zeroes the counts on SIGUSR1 (the start of a
 * measured window), and on SIGINT or SIGTERM writes the histogram to
 * OUT.json and detaches.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "irq_latency.h"
#include "loader.h"
#include "irq_latency.skel.h"

static volatile sig_atomic_t reset;

static void on_reset(int sig)
{
	reset = 1;
}

static void zero_counts(struct irq_latency_bpf *skel)
{
	struct irq_latency_totals t = {};
	__u64 z = 0;
	__u32 i;

	for (i = 0; i < IRQ_LATENCY_BUCKETS; i++)
		bpf_map_update_elem(bpf_map__fd(skel->maps.hist), &i, &z, BPF_ANY);
	i = 0;
	bpf_map_update_elem(bpf_map__fd(skel->maps.totals), &i, &t, BPF_ANY);
}

static int dump(struct irq_latency_bpf *skel, const char *path)
{
	struct irq_latency_totals t = {};
	char tmp[4096];
	__u32 i, zero = 0;
	int first = 1;
	__u64 c;
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	bpf_map_lookup_elem(bpf_map__fd(skel->maps.totals), &zero, &t);
	fprintf(f, "{\"count\": %llu, \"sum_us\": %llu, \"max_us\": %llu, \"buckets\": [",
		(unsigned long long)t.count, (unsigned long long)t.sum_us,
		(unsigned long long)t.max_us);
	for (i = 0; i < IRQ_LATENCY_BUCKETS; i++) {
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.hist), &i, &c) || !c)
			continue;
		fprintf(f, "%s[%u, %llu]", first ? "" : ", ", i, (unsigned long long)c);
		first = 0;
	}
	fprintf(f, "]}\n");
	fclose(f);
	return rename(tmp, path);
}

int main(int argc, char **argv)
{
	struct irq_latency_bpf *skel;
	const char *out = NULL;
	int opt, err;

	while ((opt = getopt(argc, argv, "o:")) != -1) {
		if (opt != 'o') {
			fprintf(stderr, "usage: %s -o OUT.json\n", argv[0]);
			return 2;
		}
		out = optarg;
	}
	if (!out) {
		fprintf(stderr, "usage: %s -o OUT.json\n", argv[0]);
		return 2;
	}
	loader_catch_stop();
	signal(SIGUSR1, on_reset);

	skel = irq_latency_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "irq_latency: open/load failed: %s\n", strerror(errno));
		return 1;
	}
	err = irq_latency_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "irq_latency: attach failed: %d\n", err);
		goto out;
	}
	loader_attached();
	while (!loader_stop) {
		if (reset) {
			reset = 0;
			zero_counts(skel);
		}
		usleep(20000);
	}
	err = dump(skel, out);
	if (err)
		fprintf(stderr, "irq_latency: cannot write %s: %s\n", out, strerror(errno));
out:
	irq_latency_bpf__destroy(skel);
	return err ? 1 : 0;
}
