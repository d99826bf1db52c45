/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Write a statistics map as JSON, each value described by the map's own BTF
 * (so a field added to pvsched_stats.h needs no change here), atomically
 * (temporary file + rename) so a reader never sees half of it.
 */
#ifndef __PVSCHED_DUMP_H
#define __PVSCHED_DUMP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

/* An integer, or an array of them, at `data`; anything else as null. */
static inline void pvsched_json_value(FILE *f, const struct btf *btf, __u32 type_id, const char *data)
{
	const struct btf_type *t = btf__type_by_id(btf, btf__resolve_type(btf, type_id));
	const struct btf_array *arr;
	__s64 size;
	__u32 i;

	if (t && btf_is_array(t)) {
		arr = btf_array(t);
		size = btf__resolve_size(btf, arr->type);
		fputc('[', f);
		for (i = 0; size > 0 && i < arr->nelems; i++) {
			fputs(i ? ", " : "", f);
			pvsched_json_value(f, btf, arr->type, data + i * size);
		}
		fputc(']', f);
	} else if (t && btf_is_int(t) && (btf_int_encoding(t) & BTF_INT_SIGNED)) {
		fprintf(f, "%lld", t->size == 8 ? (long long)*(const __s64 *)data :
			t->size == 4 ? *(const __s32 *)data : t->size == 2 ?
			*(const __s16 *)data : *(const __s8 *)data);
	} else if (t && btf_is_int(t)) {
		fprintf(f, "%llu", t->size == 8 ? (unsigned long long)*(const __u64 *)data :
			t->size == 4 ? *(const __u32 *)data : t->size == 2 ?
			*(const __u16 *)data : *(const __u8 *)data);
	} else {
		fputs("null", f);
	}
}

/* One struct value as a JSON object of its members. */
static inline int pvsched_json_struct(FILE *f, const struct btf *btf, __u32 type_id, const char *data)
{
	const struct btf_type *t = btf__type_by_id(btf, btf__resolve_type(btf, type_id));
	const struct btf_member *m;
	__u32 i;

	if (!t || !btf_is_struct(t))
		return -EINVAL;
	m = btf_members(t);
	fputc('{', f);
	for (i = 0; i < btf_vlen(t); i++, m++) {
		fprintf(f, "%s\"%s\": ", i ? ", " : "", btf__name_by_offset(btf, m->name_off));
		pvsched_json_value(f, btf, m->type, data + btf_member_bit_offset(t, i) / 8);
	}
	fputc('}', f);
	return 0;
}

/* `btf`: the BPF object's (bpf_object__btf), which describes the map's values. */
static inline int pvsched_dump_stats(const struct bpf_map *map, const struct btf *btf, const char *policy,
			      const char *path)
{
	__u32 value_type = bpf_map__btf_value_type_id(map);
	int fd = bpf_map__fd(map), first = 1, err = 0;
	__s32 key, next, *prev = NULL;
	char tmp[4096], *value;
	FILE *f;

	if (!path)
		return 0;
	if (!btf || !value_type)
		return -EINVAL;
	value = malloc(bpf_map__value_size(map));
	if (!value)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		free(value);
		return -errno;
	}
	fprintf(f, "{\"policy\": \"%s\", \"vcpus\": [", policy);
	while (!err && bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, value))
			continue;
		fputs(first ? "\n " : ",\n ", f);
		err = pvsched_json_struct(f, btf, value_type, value);
		first = 0;
	}
	fprintf(f, "\n]}\n");
	free(value);
	if (fclose(f) || err)
		return err ? err : -errno;
	return rename(tmp, path);
}

#endif
