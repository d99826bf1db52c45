// SPDX-License-Identifier: GPL-2.0
/*
 * ipi_pingpong: two processes, pinned to CPUs 0 and 1, pass a byte back
 * and forth through two pipes for SECONDS. Each one sleeps in read() until
 * the other writes, so every pass wakes a task on the other CPU with an
 * IPI: the interrupt traffic of the lab's functional guest, made with no
 * driver (the emulator control's guests on the unpatched kernel). Prints
 * the round trips made.
 *
 * usage: ipi_pingpong SECONDS
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		exit(1);
	}
}

/* Echo every byte back until the pipe closes. */
static void echo_loop(int in, int out)
{
	char byte;

	while (read(in, &byte, 1) == 1)
		if (write(out, &byte, 1) != 1)
			break;
	exit(0);
}

int main(int argc, char **argv)
{
	int to_child[2], to_parent[2];
	long seconds, trips = 0;
	time_t end;
	char byte = 0;
	pid_t child;

	seconds = argc == 2 ? atol(argv[1]) : 0;
	if (seconds <= 0) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	if (pipe(to_child) || pipe(to_parent)) {
		perror("pipe");
		return 1;
	}
	child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	if (child == 0) {
		pin(1);
		close(to_child[1]);
		close(to_parent[0]);
		echo_loop(to_child[0], to_parent[1]);
	}
	pin(0);
	close(to_child[0]);
	close(to_parent[1]);
	end = time(NULL) + seconds;
	while (time(NULL) < end) {
		if (write(to_child[1], &byte, 1) != 1 || read(to_parent[0], &byte, 1) != 1) {
			perror("ping-pong");
			kill(child, SIGKILL);
			return 1;
		}
		trips++;
	}
	close(to_child[1]);
	waitpid(child, NULL, 0);
	printf("round trips %ld in %ld s\n", trips, seconds);
	return trips > 0 ? 0 : 1;
}
