// SPDX-License-Identifier: GPL-2.0
/*
 * setfifo: make task PID SCHED_FIFO at priority PRIO, from the CPU this
 * runs on (busybox has no chrt). The guest tests change a task running
 * on another vCPU with it, as an admin's `chrt -f -p` would.
 *
 * usage: setfifo PID PRIO
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	struct sched_param sp = { 0 };

	if (argc != 3) {
		fprintf(stderr, "usage: %s PID PRIO\n", argv[0]);
		return 2;
	}
	sp.sched_priority = atoi(argv[2]);
	if (sched_setscheduler(atoi(argv[1]), SCHED_FIFO, &sp)) {
		perror("setfifo");
		return 1;
	}
	return 0;
}
