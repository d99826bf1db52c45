/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the pvsched loaders: write the per-vCPU statistics map as JSON,
 * atomically (temporary file + rename) so a reader never sees half of it.
 */
#ifndef __PVSCHED_DUMP_H
#define __PVSCHED_DUMP_H

#include <stdio.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include "pvsched_stats.h"

static int pvsched_dump_stats(int map_fd, const char *policy, const char *path)
{
	struct pvsched_vcpu_stats s;
	__s32 key, next, *prev = NULL;
	char tmp[4096];
	int first = 1;
	FILE *f;

	if (!path)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"policy\": \"%s\", \"vcpus\": [", policy);
	while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(map_fd, &key, &s))
			continue;
		fprintf(f, "%s\n {\"tid\": %d, \"vm_pid\": %d, \"vcpu_id\": %d, "
			"\"cpu\": %d, \"registered\": %d, \"wanted\": %d, "
			"\"registrations\": %llu, \"malformed\": %llu, "
			"\"last_policy\": %d, \"last_rt_priority\": %d, "
			"\"vmenter\": %llu, \"vmexit\": %llu, \"halt\": %llu, "
			"\"intr_inj\": %llu, \"rt_seen\": %llu, "
			"\"hardirq_seen\": %llu, \"softirq_seen\": %llu, "
			"\"request_seen\": %llu, \"read_errors\": %llu, "
			"\"boost_requests\": %llu, \"unboost_requests\": %llu, "
			"\"refused\": %llu, \"kernel_boosts\": %llu, "
			"\"kernel_throttles\": %llu, \"kernel_boosted_ns\": %llu, "
			"\"cs_denied\": %llu}",
			first ? "" : ",", s.tid, s.vm_pid, s.vcpu_id, s.cpu,
			s.registered, s.wanted,
			(unsigned long long)s.registrations,
			(unsigned long long)s.malformed, s.last_policy,
			s.last_rt_priority,
			(unsigned long long)s.events[0],
			(unsigned long long)s.events[1],
			(unsigned long long)s.events[2],
			(unsigned long long)s.events[3],
			(unsigned long long)s.rt_seen,
			(unsigned long long)s.hardirq_seen,
			(unsigned long long)s.softirq_seen,
			(unsigned long long)s.request_seen,
			(unsigned long long)s.read_errors,
			(unsigned long long)s.boost_requests,
			(unsigned long long)s.unboost_requests,
			(unsigned long long)s.refused,
			(unsigned long long)s.kernel_boosts,
			(unsigned long long)s.kernel_throttles,
			(unsigned long long)s.kernel_boosted_ns,
			(unsigned long long)s.cs_denied);
		first = 0;
	}
	fprintf(f, "\n]}\n");
	if (fclose(f))
		return -1;
	return rename(tmp, path);
}

#endif
