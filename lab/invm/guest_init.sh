#!/bin/sh
# /init of the level-2 guest (busybox initramfs built by lab/initramfs.py).
# Runs the guest's functional tests, prints them as KTAP on the console,
# dumps dmesg between markers for the splat scan, and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /sys/kernel/debug /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo "LAB-GUEST-READY $(cut -d' ' -f1 /proc/uptime)"

param() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
want_cpus=$(param lab.cpus)
want_mem_mb=$(param lab.mem_mb)

n=0
ok() { n=$((n + 1)); echo "ok $n $1${2:+ # $2}"; }
nok() { n=$((n + 1)); echo "# $2"; echo "not ok $n $1"; }
check() { # name, detail, command...
	name=$1 detail=$2
	shift 2
	if "$@"; then ok "$name"; else nok "$name" "$detail"; fi
}

under_kvm() {
	dmesg | grep -q "Hypervisor detected: KVM" &&
		grep -qw kvm-clock /sys/devices/system/clocksource/clocksource0/available_clocksource
}
cpus_match() { [ "$(grep -c ^processor /proc/cpuinfo)" = "$want_cpus" ]; }
memory_match() {
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
	# The kernel keeps some memory for itself: at least 70% must be visible.
	[ "$kb" -le $((want_mem_mb * 1024)) ] && [ "$kb" -ge $((want_mem_mb * 1024 * 7 / 10)) ]
}

echo "KTAP version 1"
echo "1..3"
check guest_under_kvm "no 'Hypervisor detected: KVM' or no kvm-clock" under_kvm
check guest_cpus "expected $want_cpus CPUs, /proc/cpuinfo has $(grep -c ^processor /proc/cpuinfo)" cpus_match
check guest_memory "expected about $want_mem_mb MiB, $(grep MemTotal /proc/meminfo)" memory_match

echo "LAB-GUEST-DMESG-BEGIN"
dmesg
echo "LAB-GUEST-DMESG-END"
echo "LAB-GUEST-DONE"
poweroff -f
