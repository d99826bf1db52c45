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
	# The kernel keeps some memory for itself: at least 70% must be visible,
	# 50% under KASAN (its shadow and quarantine take the rest).
	pct=70
	dmesg | grep -q "KernelAddressSanitizer initialized" && pct=50
	[ "$kb" -le $((want_mem_mb * 1024)) ] && [ "$kb" -ge $((want_mem_mb * 1024 * pct / 100)) ]
}

# --- pvsched (when the lab put the guest driver in this initramfs) ---
PV=/sys/kernel/debug/pvsched
MOD=/lib/modules/pvsched_guest.ko
# The driver's preempt-disabled marks are off by default (they cost ~10 % of a
# syscall loop and of hackbench here); the lab's checks and stress parts turn
# them on. The bench's windows and overhead runs load the driver as a user
# would (the overhead's `--overhead-driver-args` can change that).
MARKS=preempt_marks=1
PARAMS=/sys/module/pvsched_guest/parameters
mode=$(param lab.mode)
# Sections per kind the cs_probe phases run (CS_PROBE_SECTIONS in lab/invm/pvsched_host.py).
CS_PROBE_SECTIONS=100
# Rounds of syscall_loop per overhead run: about 2.5 s in a nested guest here
# (50000 took 0.22-0.57 s, run 20261204T060540Z-bbd2: too short against its noise).
SYSCALL_ROUNDS=500000
counter() { sed -n "s/^$1 //p" $PV/counters; }
# The host's status for vCPU 1 (where the RT task runs), as the guest sees it.
cpu1_boosted() { awk 'NR > 1 && $1 == 1 && and($8, 2) { f = 1 } END { exit !f }' $PV/status 2>/dev/null; }
host_boosted_seen() { # samples it $1 times, every 20 ms; boost_polls: how many it took
	boost_polls=0
	while [ $boost_polls -lt "$1" ]; do
		cpu1_boosted && return 0
		boost_polls=$((boost_polls + 1)); usleep 20000
	done
	return 1
}
# The unboost gets the time the boost took to show, five times over (at
# least 300 ms): a bound from this run's own pace, not a fixed sleep that a
# loaded host misses.
unboost_polls() { n=$((5 * (boost_polls + 1))); [ $n -lt 15 ] && n=15; echo $n; }
host_unboosted_within() { # samples it up to $1 times, every 20 ms
	i=0
	while [ $i -lt "$1" ]; do
		cpu1_boosted || return 0
		i=$((i + 1)); usleep 20000
	done
	return 1
}
cs_probe() { # kind: the driver runs CS_PROBE_SECTIONS sections of it, all counted
	b=$(counter cs_probe_$1)
	echo "$1 $CS_PROBE_SECTIONS" 2>&1 > $PV/cs_probe | sed 's/^/# cs_probe: /'
	a=$(counter cs_probe_$1)
	[ "$a" = $((b + CS_PROBE_SECTIONS)) ] || { echo "# cs_probe_$1 counted $b then $a"; return 1; }
}
cs_probe_phase() { # kind, check name
	phase cs-$1 0.5
	check "$2" "cs_probe did not run and count $CS_PROBE_SECTIONS $1 sections" cs_probe "$1"
	sleep 1
	phase cs-$1-done
}
registered_is() { [ "$(counter registered_cpus)" = "$1" ]; }

phase() { echo "LAB-PHASE $1"; sleep "${2:-0}"; }

# Until process $1 runs SCHED_FIFO (field 41 of its stat), with shell
# builtins only; fails once it is gone.
await_fifo() {
	fifo_pid=$1
	while read -r stat 2>/dev/null < "/proc/$fifo_pid/stat"; do
		set -- $stat
		shift 40
		[ "$1" = 1 ] && return 0
		usleep 10000
	done
	return 1
}

# Until process $1 is running (state R, field 3) on CPU $2 (field 39);
# fails once it is gone.
await_running_on() {
	run_pid=$1 run_cpu=$2
	while read -r stat 2>/dev/null < "/proc/$run_pid/stat"; do
		set -- $stat
		state=$3
		shift 38
		[ "$state" = R ] && [ "$1" = "$run_cpu" ] && return 0
		usleep 10000
	done
	return 1
}

# The kernel log for the splat scan, warnings and worse (every splat report
# is printed at those levels; a continuation line keeps its record's level).
# The whole log is hundreds of lines, and such a burst on the serial console
# lost its tail under a loaded host (LAB-GUEST-DONE with it).
dump_dmesg() {
	echo "LAB-GUEST-DMESG-BEGIN"
	dmesg -r | awk '{
		if (match($0, /^<[0-9]+>/)) { lvl = substr($0, 2, RLENGTH - 2) % 8; line = substr($0, RLENGTH + 1) } else line = $0
		if (lvl <= 4) print line
	}'
	echo "LAB-GUEST-DMESG-END"
}

# The last line, then power off only once the console has sent everything:
# `poweroff -f` drops what the tty still holds, and under a loaded host the
# tail of a dmesg dump (and LAB-GUEST-DONE) was lost that way. stty changes
# a setting with TCSADRAIN, which waits until the UART has sent it all.
finish() {
	echo "LAB-GUEST-DONE"
	stty -F /dev/console -echo 2>/dev/null
	# The drain alone did not keep the tail of a long dump (seen three times):
	# give QEMU's UART a moment to hand the last bytes to its output.
	sleep 1
	poweroff -f
}

pvsched_tests() {
	check pvsched_guest_registers_every_vcpu "registered $(counter registered_cpus 2>/dev/null) of $want_cpus" \
		sh -c "insmod $MOD $MARKS && [ \"\$(sed -n 's/^registered_cpus //p' $PV/counters)\" = $want_cpus ]"
	phase rt 0.2
	rtspin 50 1 1500 4000 1000 > /tmp/rtspin.out &
	check pvsched_guest_sees_host_boost "host never reported BOOSTED while an RT task ran" host_boosted_seen 60
	wait
	phase rt-done
	polls=$(unboost_polls)
	check pvsched_unboost_after_rt "vCPU 1 still boosted $((polls * 20)) ms after its RT task ended (the boost showed after $((boost_polls * 20)) ms)" \
		host_unboosted_within "$polls"
	check pvsched_guest_irq_bits "hardirqs=$(counter hardirqs) softirqs=$(counter softirqs)" \
		sh -c "[ \$(sed -n 's/^hardirqs //p' $PV/counters) -gt 0 ] && [ \$(sed -n 's/^softirqs //p' $PV/counters) -gt 0 ]"
	sleep 0.8	# quiet: the host's unboost check samples 0.3-0.8 s into rt-done, before the RT writes of the next phase
	# Critical sections of one kind at a time on vCPU 1, each taking VM exits
	# inside: the host must see the kernel's HARDIRQ mark in the APIC timer
	# and IPI handlers, its NMI mark, and its PREEMPT_DISABLED mark in a
	# task with preemption off. The host reads its statistics
	# (sampled every few 100 ms) on both sides of each phase.
	cs_probe_phase timer pvsched_guest_cs_probe_timer
	cs_probe_phase ipi pvsched_guest_cs_probe_ipi
	cs_probe_phase nmi pvsched_guest_cs_probe_nmi
	cs_probe_phase preempt pvsched_guest_cs_probe_preempt
	phase malformed
	check pvsched_guest_wrote_malformed_areas "a write to $PV/corrupt failed" corrupt_all
	phase malformed-done
	phase hotplug
	echo 0 > /sys/devices/system/cpu/cpu1/online
	check pvsched_hotplug_offline_unregisters \
		"registered $(counter registered_cpus), unregister_failures $(counter unregister_failures) after cpu1 offline" \
		sh -c "[ \"\$(sed -n 's/^registered_cpus //p' $PV/counters)\" = $((want_cpus - 1)) ] &&
			[ \"\$(sed -n 's/^unregister_failures //p' $PV/counters)\" = 0 ]"
	echo 1 > /sys/devices/system/cpu/cpu1/online
	check pvsched_hotplug_online_registers "registered $(counter registered_cpus) after cpu1 online" registered_is "$want_cpus"
	check pvsched_faulting_msr_write_changes_nothing "a registration at 4 GiB did not fault, or changed the MSR" \
		sh -c "echo 1 > $PV/bad_write && [ \"\$(sed -n 's/^registered_cpus //p' $PV/counters)\" = $want_cpus ]"
	# vCPU 1's area stays registered through its offline and INIT (the
	# online), as after a kexec; the host must stop writing it at the INIT.
	echo 1 > $PV/abandon
	echo 0 > /sys/devices/system/cpu/cpu1/online
	echo 1 > /sys/devices/system/cpu/cpu1/online
	echo canary > $PV/abandon
	sleep 0.5
	check pvsched_reset_unregisters "the host wrote vCPU 1's old area after its INIT: $(cat $PV/abandon)" \
		sh -c "[ \"\$(cat $PV/abandon)\" = intact ]"
	echo 0 > /sys/devices/system/cpu/cpu1/online	# and registers again when it comes back
	echo 1 > /sys/devices/system/cpu/cpu1/online
	# One RT task spinning without a break: a boost that lasts for periods.
	# The host sets its test cap on rt-long, before the task starts.
	phase rt-long 1
	phase rt-long-spin
	rtspin 50 1 1500 1500000 0 > /dev/null
	phase rt-long-done
	# The same with no slice (the host lifts it): only the cap timer's
	# throttle at the budget can end a boost.
	phase rt-whole 1
	phase rt-whole-spin
	rtspin 50 1 1500 1500000 0 > /dev/null
	phase rt-whole-done
	# The same while a host RT task holds vCPU 1's CPU 90 % of the time: a
	# boost that outlasts periods on less than the budget in each. The period
	# must roll over under it: no throttle may end before it begins.
	phase rt-shared 1
	phase rt-shared-spin
	rtspin 50 1 2000 2000000 0 > /dev/null
	phase rt-shared-done
	# The admin's word on vCPU 1's thread stands: nice 5 set on it comes back
	# after a boost, and SCHED_FIFO 60 set on it is never lowered to a boost.
	# Each change is made with the thread unboosted: the RT task ended 0.5 s before.
	sleep 0.5
	phase admin-nice 1
	rtspin 50 1 600 1500 4000 > /dev/null
	sleep 0.5
	phase admin-fifo 1
	rtspin 50 1 600 1500 4000 > /dev/null
	phase admin-done 0.3
	# The admin's SCHED_FIFO 60 is on vCPU 1's thread before a long RT task
	# starts, so KVM keeps the boost the task asks for; the admin takes it
	# off while the task still runs. The policy's request never changes, so
	# KVM must look at the thread again by itself and boost it. The release
	# waits for the task to be SCHED_FIFO (under TCG it starts up to a
	# second after its launch); the task never sleeps, so no other task
	# runs on vCPU 1 to turn the request off and on; admin-resumed comes
	# while it still runs (docs/pvsched.md, the check's row).
	phase admin-hold 0.3
	rtspin 50 1 3000 3000000 0 > /dev/null &
	spin=$!
	await_fifo $spin
	sleep 0.3
	phase admin-release 0.5
	phase admin-resumed
	wait $spin
	phase admin-release-done 0.3
	# A task that makes itself SCHED_FIFO while it runs, then spins without
	# sleeping: no switch publishes it, the kernel does at the change
	# (patch 0006), so the host sees the RT task 0.3 s later.
	phase rt-self 0.3
	rtspin 50 1 1500 1500000 0 > /dev/null &
	spin=$!
	await_fifo $spin
	sleep 0.3
	phase rt-self-seen
	wait $spin
	phase rt-self-done 0.3
	# The same task left SCHED_OTHER and made SCHED_FIFO 50 from vCPU 0
	# while it spins on vCPU 1, as an admin's chrt -p would: no switch
	# publishes it, nor the change itself on vCPU 0 (a CPU writes only its
	# own area); the kernel's irq_work on vCPU 1 does (patch 0006).
	phase rt-other 0.3
	rtspin 0 1 2000 2000000 0 > /dev/null &
	spin=$!
	await_running_on $spin 1
	taskset -c 0 setfifo $spin 50
	await_fifo $spin
	sleep 0.3
	phase rt-other-seen
	wait $spin
	phase rt-other-done 0.3
	# The admin flips vCPU 1's thread between SCHED_FIFO 60 and SCHED_OTHER
	# every millisecond while short RT tasks come and go on it: each asks
	# for a boost and, gone for longer than the RT_SLEEPING window, for the
	# unboost, so KVM boosts or keeps, and restores, reading the thread's
	# scheduling as it changes. (One long RT task asked once: a boost the
	# admin's FIFO 60 kept left nothing queued, 2 boosts in run 6827.)
	phase admin-flip 0.3
	i=0
	while [ $i -lt 40 ]; do
		rtspin 50 1 10 10000 0 > /dev/null
		usleep 15000
		i=$((i + 1))
	done
	phase admin-flip-done 0.3
	# Turned hostile while registered: KVM's counters (the vCPU's, kept
	# across registrations) are read on both sides of each phase.
	# Every vCPU busy, so the VM's budget (the same as one vCPU's by
	# default) binds before the vCPUs' own.
	phase hostile 0.2
	echo 1 > $PARAMS/hostile
	spinners=
	for c in $(seq "$want_cpus"); do
		timeout 2 sh -c 'while :; do :; done' &	# fair CPU work the host must throttle
		spinners="$spinners $!"
	done
	wait $spinners
	phase hostile-done
	# The same requests with the cap out of the way (the host lifts it for
	# the phase): long enough boosts for the sampler to see their priority.
	phase hints 0.2
	timeout 1 sh -c 'while :; do :; done'
	phase hints-done
	# The same guest registering again each time it is throttled: the cap
	# is the vCPU's, not the registration's.
	phase dodge 0.2
	echo 1 > $PARAMS/dodge_cap
	timeout 2 sh -c 'while :; do :; done'
	echo 0 > $PARAMS/dodge_cap
	echo 0 > $PARAMS/hostile
	phase dodge-done
	check pvsched_module_unload "rmmod failed" rmmod pvsched_guest
	check pvsched_module_reload "insmod failed" insmod $MOD $MARKS
	# Long enough for level 1 to see it boosted (the dodge phase's throttle
	# may hold the boost back up to a period) and detach under it.
	rtspin 50 1 4000 1000 1000 > /tmp/rtspin.out &
	sleep 0.3
	phase detach 0.8
	wait
	phase detach-done
	check pvsched_rt_task_survives_detach "$(cat /tmp/rtspin.out)" grep -q cycles /tmp/rtspin.out
	# The driver stays loaded and keeps its areas at power off: the VM is
	# destroyed with its areas registered (the host's pvsched_vm_destroy_unregisters).
	echo 0 > $PARAMS/unregister_at_reboot
}

# Round r of the driver's overhead, in turns: drift, and whatever a first
# hackbench leaves for the second, hit both sides alike.
overhead_order() { [ $(($1 % 2)) = 1 ] && echo "without with" || echo "with without"; }

corrupt_all() {
	for kind in version priority garbage; do
		echo $kind > $PV/corrupt || return 1
		sleep 0.3
	done
}

# Bins of 1 us below 100 us, then 10, 100 and 1000 us per decade, summed
# over the threads' columns (at most a
# few hundred lines: enough for percentiles, short enough for a serial
# console). Integer-only: busybox awk has no math library.
bin_histfile() {
	awk '/^#/ { print; next }
		/^[0-9]/ {
			# busybox awk reads 0150 as octal: strip the zeros first
			s = $1; sub(/^0+/, "", s); us = s + 0
			# one column per cyclictest thread (-t N): their sum
			c = 0
			for (i = 2; i <= NF; i++) { v = $i; sub(/^0+/, "", v); c += v + 0 }
			if (c == 0) next
			if (us < 100) b = us
			else if (us < 1000) b = int(us / 10) * 10
			else if (us < 10000) b = int(us / 100) * 100
			else b = int(us / 1000) * 1000
			n[b] += c
		}
		END { for (b in n) printf "%06d %06d\n", b, n[b] }' "$1" | sort
}

if [ "$mode" = bench ]; then
	# One round: every mode's window in the order the host chose. Level 1 sets
	# each mode up on PREPARE (host load, policy, cap, static priorities) and
	# has the settle time to do it; the window is START to DONE for both.
	loaded=0
	for m in $(param lab.bench_schedule | tr , ' '); do
		case $m in
		pvsched|pvsched-nocap|scx) want=1 ;;
		*) want=0 ;;
		esac
		[ $want = 1 ] && [ $loaded = 0 ] && insmod $MOD && loaded=1
		[ $want = 0 ] && [ $loaded = 1 ] && rmmod pvsched_guest && loaded=0
		echo "LAB-BENCH-PREPARE $m"
		sleep "$(param lab.bench_settle)"
		echo "LAB-BENCH-START $m"
		# smp: a thread pinned to each vCPU (-a: thread i on CPU i)
		threads=$(param lab.bench_threads)
		cyclictest -m -p 90 -i "$(param lab.bench_interval)" -D "$(param lab.bench_secs)" -q \
			-t "${threads:-1}" $([ "${threads:-1}" -gt 1 ] && echo -a) \
			-h "$(param lab.bench_hist)" --histfile=/tmp/hist > /dev/null 2>&1
		echo "LAB-BENCH-DONE $m"
		echo "LAB-BENCH-HIST-BEGIN $m"
		bin_histfile /tmp/hist
		echo "LAB-BENCH-HIST-END $m"
	done
	dump_dmesg
	finish
elif [ "$mode" = tenant ]; then
	# The bench's busy neighbour: registered, every vCPU busy, no RT work,
	# until level 1 kills it.
	insmod $MOD
	for c in $(seq "$want_cpus"); do
		sh -c 'while :; do :; done' &
	done
	echo "LAB-TENANT busy registered=$(counter registered_cpus)"
	wait
elif [ "$mode" = overhead ]; then
	# The boot's first hackbench ran 2.5x the others (run 20261203T215746Z-5e20):
	# run one first and drop it, as the bench drops its warmup round.
	echo "LAB-OVERHEAD-WARMUP $(hackbench -g 4 -l 100 | sed -n 's/^Time: //p')"
	for r in $(seq "$(param lab.overhead_rounds)"); do
		for which in $(overhead_order "$r"); do
			[ $which = with ] && insmod $MOD $(param lab.overhead_insmod | tr , ' ')
			# Level 1 reads KVM's exit counter at BEGIN and at the result:
			# exits per context switch, with and without the driver's hints.
			c0=$(sed -n 's/^ctxt //p' /proc/stat)
			echo "LAB-OVERHEAD-BEGIN $which"
			t=$(hackbench -g 4 -l 100 | sed -n 's/^Time: //p')
			c1=$(sed -n 's/^ctxt //p' /proc/stat)
			echo "LAB-OVERHEAD $which $t $((c1 - c0))"
			# System calls that each cross preempt_disable() (the preempt marks' cost).
			echo "LAB-OVERHEAD-SYSCALLS $which $(syscall_loop "$SYSCALL_ROUNDS")"
			[ $which = with ] && rmmod pvsched_guest
		done
	done
	finish
elif [ "$mode" = scx ]; then
	echo "KTAP version 1"
	echo "1..1"
	check pvsched_scx_guest_runs "$(cat /tmp/rtspin.out 2>/dev/null)" \
		sh -c "insmod $MOD $MARKS && rtspin 50 1 600 1000 1000 > /tmp/rtspin.out && rmmod pvsched_guest"
elif [ "$mode" = churn ]; then
	# Register and power off with the areas registered: the VM dies under them.
	insmod $MOD $MARKS
	echo "LAB-STRESS registered=$(counter registered_cpus)"
elif [ "$mode" = hotplug ]; then
	insmod $MOD $MARKS
	rtspin 50 1 600000 1500 4000 > /dev/null &
	rounds=$(param lab.rounds) fails=0 r=0
	while [ $r -lt "$rounds" ]; do
		echo 0 > /sys/devices/system/cpu/cpu1/online || fails=$((fails + 1))
		registered_is $((want_cpus - 1)) || fails=$((fails + 1))
		echo 1 > /sys/devices/system/cpu/cpu1/online || fails=$((fails + 1))
		registered_is "$want_cpus" || fails=$((fails + 1))
		r=$((r + 1))
		# Progress: the host bounds this guest's silence, not its rounds' time.
		echo "LAB-STRESS hotplug round $r of $rounds failures=$fails"
	done
	echo "LAB-STRESS hotplug rounds=$r failures=$fails registered=$(counter registered_cpus)"
	kill %1 2>/dev/null
	wait
	rmmod pvsched_guest || echo "LAB-STRESS hotplug rmmod failed"
elif [ "$mode" = soak ]; then
	# An RT task keeps vCPU 1 boosted until the host ends this guest.
	insmod $MOD $MARKS
	rtspin 50 1 3600000 1500 4000 > /dev/null &
	echo "LAB-STRESS soak running"
	while :; do sleep 1; done
elif [ "$mode" = load ]; then
	# Every vCPU busy for lab.secs; hostile: ask for boosts all the time and
	# scribble over the area, too.
	hostile=$(param lab.hostile)
	insmod $MOD $MARKS hostile="$hostile"
	echo "LAB-STRESS load start"
	c=0
	while [ $c -lt "$want_cpus" ]; do
		taskset -c $c timeout "$(param lab.secs)" sh -c 'while :; do :; done' &
		c=$((c + 1))
	done
	if [ "$hostile" = 1 ]; then
		end=$(($(cut -d. -f1 /proc/uptime) + $(param lab.secs)))
		while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
			for kind in version priority garbage; do echo $kind > $PV/corrupt; usleep 200000; done
		done
	fi
	wait
	echo "LAB-STRESS load done switches=$(counter switches)"
	rmmod pvsched_guest
elif [ "$mode" = control ]; then
	# `nox -s emulator_control`: the functional run's kinds of activity (an
	# RT task, hotplug, every vCPU busy, a second RT task) with the driver
	# when this kernel has one and the host asks for it, so that emulator
	# faults can be counted with and without pvsched under the same load.
	echo "KTAP version 1"
	echo "1..1"
	driver=0
	[ "$(param lab.control_driver)" = 1 ] && [ -e $MOD ] && insmod $MOD $MARKS && driver=1
	rtspin 50 1 1500 4000 1000 > /dev/null
	echo 0 > /sys/devices/system/cpu/cpu1/online
	echo 1 > /sys/devices/system/cpu/cpu1/online
	# Every vCPU busy in the shell loop of the stress suite's load guests,
	# for as long as the cell asks (the hostile part's guests: a minute).
	spin=$(param lab.control_spin)
	c=0
	while [ $c -lt "$want_cpus" ]; do
		taskset -c $c timeout "${spin:-2}" sh -c 'while :; do :; done' &
		c=$((c + 1))
	done
	wait
	rtspin 50 1 1500 1000 1000 > /tmp/rtspin.out
	irq=$(param lab.control_irq)
	: > /tmp/irq.out
	if [ "$irq" = 1 ]; then
		# The functional guest's interrupt traffic without a driver: IPIs
		# between the vCPUs, and an NMI to the other vCPU per sysrq `l`.
		ipi_pingpong 10 > /tmp/irq.out &
		n=0
		while [ $n -lt 50 ]; do
			echo l > /proc/sysrq-trigger
			sleep 0.2
			n=$((n + 1))
		done
		wait
		echo "nmi backtraces $(dmesg | grep -c 'NMI backtrace for cpu')" >> /tmp/irq.out
	fi
	check control_workload "driver=$driver; $(cat /tmp/rtspin.out); irq=$irq $(tr '\n' ' ' < /tmp/irq.out)" \
		sh -c "grep -q cycles /tmp/rtspin.out && { [ '$irq' != 1 ] || grep -q 'round trips' /tmp/irq.out; }"
elif [ "$mode" = reboot ]; then
	# Every boot: register, say whether a registration was already in place,
	# reboot (QEMU keeps running). Level 1 judges the second boot's line.
	insmod $MOD $MARKS
	echo "LAB-REBOOT-BOOT stale=$(counter stale_registrations) registered=$(counter registered_cpus)"
	sleep 0.5
	reboot -f
	sleep 30	# the reboot takes the guest; this never ends
elif [ "$mode" = kexec ]; then
	# Kernel 1 registers, dumps its dmesg and kexecs into the same kernel and
	# initramfs (level 1 attached them as /dev/vda and /dev/vdb); kernel 2
	# (lab.kexec_boot=2) registers and says whether a registration was
	# already in place. Level 1 judges both lines.
	boot=$(param lab.kexec_boot)
	insmod $MOD $MARKS
	echo "LAB-KEXEC-BOOT ${boot:-1} stale=$(counter stale_registrations) registered=$(counter registered_cpus)"
	if [ -z "$boot" ]; then
		dump_dmesg
		cat /dev/vda > /tmp/kernel && cat /dev/vdb > /tmp/initrd &&
			kexec_boot /tmp/kernel /tmp/initrd "$(cat /proc/cmdline) lab.kexec_boot=2"
		echo "LAB-KEXEC-FAILED"
	fi
elif [ "$mode" = unpriv ]; then
	echo "KTAP version 1"
	echo "1..1"
	# Refused by the host (EPERM from the registration), not any other insmod failure.
	if insmod $MOD > /tmp/insmod.out 2>&1; then
		nok pvsched_unprivileged_vmm_cannot_register "the guest registered under an unprivileged VMM"
	elif grep -q "Operation not permitted" /tmp/insmod.out; then
		ok pvsched_unprivileged_vmm_cannot_register
	else
		nok pvsched_unprivileged_vmm_cannot_register "insmod failed for another reason: $(cat /tmp/insmod.out)"
	fi
else
	planned=3
	[ -e $MOD ] && planned=$((planned + 16))
	echo "KTAP version 1"
	echo "1..$planned"
	check guest_under_kvm "no 'Hypervisor detected: KVM' or no kvm-clock" under_kvm
	check guest_cpus "expected $want_cpus CPUs, /proc/cpuinfo has $(grep -c ^processor /proc/cpuinfo)" cpus_match
	check guest_memory "expected about $want_mem_mb MiB, $(grep MemTotal /proc/meminfo)" memory_match
	[ -e $MOD ] && pvsched_tests
fi

dump_dmesg
finish
