// SPDX-License-Identifier: GPL-2.0
/*
 * kexec_boot: boot KERNEL with INITRD and CMDLINE through kexec, for the
 * guest's kexec check. Two system calls: kexec_file_load() and
 * reboot(LINUX_REBOOT_CMD_KEXEC), which runs the reboot notifiers (the
 * guest driver unregisters there) before jumping to the new kernel.
 * kexec-tools does the same, but its Debian package makes the machine it
 * is installed on kexec at every reboot by default, and the lab would
 * have to install it on the host to copy it into the guest.
 *
 * usage: kexec_boot KERNEL INITRD CMDLINE
 */
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int kernel, initrd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s KERNEL INITRD CMDLINE\n", argv[0]);
		return 2;
	}
	kernel = open(argv[1], O_RDONLY);
	if (kernel < 0) {
		perror(argv[1]);
		return 1;
	}
	initrd = open(argv[2], O_RDONLY);
	if (initrd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (syscall(SYS_kexec_file_load, kernel, initrd, strlen(argv[3]) + 1,
		    argv[3], 0UL)) {
		perror("kexec_file_load");
		return 1;
	}
	sync();
	reboot(LINUX_REBOOT_CMD_KEXEC);
	perror("reboot(LINUX_REBOOT_CMD_KEXEC)");
	return 1;
}
