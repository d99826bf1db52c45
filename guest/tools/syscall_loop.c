// SPDX-License-Identifier: GPL-2.0
/*
 * syscall_loop: a system-call-heavy loop for the guest driver's overhead
 * (the bench's overhead mode). Runs ROUNDS rounds of sched_yield(), a
 * 1-byte read of /dev/zero and getppid(); sched_yield() takes the
 * runqueue lock, so every round crosses preempt_disable() and
 * preempt_enable() in the kernel. Prints the seconds taken.
 *
 * usage: syscall_loop ROUNDS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long rounds, i;
	double start;
	char byte;
	int fd;

	if (argc != 2 || (rounds = atol(argv[1])) <= 0) {
		fprintf(stderr, "usage: %s ROUNDS\n", argv[0]);
		return 2;
	}
	fd = open("/dev/zero", O_RDONLY);
	if (fd < 0) {
		perror("/dev/zero");
		return 1;
	}
	start = now_s();
	for (i = 0; i < rounds; i++) {
		sched_yield();
		if (read(fd, &byte, 1) != 1) {
			perror("read");
			return 1;
		}
		getppid();
	}
	printf("%.6f\n", now_s() - start);
	return 0;
}
