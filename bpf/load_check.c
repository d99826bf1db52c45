// SPDX-License-Identifier: GPL-2.0
/*
 * load_check OBJ: try to load every program of a BPF object.
 * Exit 0 if the kernel accepted it, 1 if it was rejected (the verifier's
 * log goes to stderr), 2 on usage or open errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>

static int print_all(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	int err;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OBJ\n", argv[0]);
		return 2;
	}
	libbpf_set_print(print_all);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "load_check: cannot open %s\n", argv[1]);
		return 2;
	}
	err = bpf_object__load(obj);
	printf("%s: %s\n", argv[1], err ? "rejected" : "loaded");
	bpf_object__close(obj);
	return err ? 1 : 0;
}
