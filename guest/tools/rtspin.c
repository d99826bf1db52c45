// SPDX-License-Identifier: GPL-2.0
/*
 * rtspin: a real-time task for the guest tests. Runs at SCHED_FIFO
 * priority PRIO on CPU CPU for MS milliseconds, alternating SPIN_US of
 * busy work with SLEEP_US of sleep, so the vCPU sees RT running, RT
 * sleeping and RT wakeups. Prints the number of cycles done. PRIO 0
 * leaves it SCHED_OTHER (for a test that makes it RT from elsewhere).
 *
 * usage: rtspin PRIO CPU MS [SPIN_US [SLEEP_US]]
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	struct sched_param sp = { 0 };
	long long end, t, spin_us = 1000, sleep_us = 1000, cycles = 0;
	cpu_set_t set;

	if (argc < 4) {
		fprintf(stderr, "usage: %s PRIO CPU MS [SPIN_US [SLEEP_US]]\n", argv[0]);
		return 2;
	}
	sp.sched_priority = atoi(argv[1]);
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[2]), &set);
	if (argc > 4)
		spin_us = atoll(argv[4]);
	if (argc > 5)
		sleep_us = atoll(argv[5]);
	if (sched_setaffinity(0, sizeof(set), &set) ||
	    (sp.sched_priority && sched_setscheduler(0, SCHED_FIFO, &sp))) {
		perror("rtspin");
		return 1;
	}
	end = now_us() + atoll(argv[3]) * 1000;
	while ((t = now_us()) < end) {
		while (now_us() - t < spin_us)
			;
		if (sleep_us)
			usleep(sleep_us);
		cycles++;
	}
	printf("rtspin cycles %lld\n", cycles);
	return 0;
}
