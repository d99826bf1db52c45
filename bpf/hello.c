// SPDX-License-Identifier: GPL-2.0
/*
 * Loader for hello.bpf.c: load, attach, let the scheduler run for a
 * moment, then print how many context switches the program counted.
 * Exit status 0 only when the program loaded, attached and ran.
 */
#include <stdio.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "hello.skel.h"

int main(void)
{
	struct hello_bpf *skel;
	int i, err;

	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	skel = hello_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "hello: open/load failed\n");
		return 1;
	}
	err = hello_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "hello: attach failed: %d\n", err);
		hello_bpf__destroy(skel);
		return 1;
	}
	for (i = 0; i < 10 && skel->bss->switches == 0; i++)
		usleep(10000);
	printf("{\"switches\": %llu}\n",
	       (unsigned long long)skel->bss->switches);
	err = skel->bss->switches ? 0 : 2;
	hello_bpf__destroy(skel);
	return err;
}
