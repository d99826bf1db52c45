// SPDX-License-Identifier: GPL-2.0
/*
 * pvsched guest driver: shares each vCPU's scheduling state with the host.
 *
 * Every online vCPU gets a struct pvsched_vcpu_area (include/uapi/linux/
 * pvsched.h), registered with the host by writing its guest-physical
 * address to MSR_KVM_PVSCHED on that vCPU: one VM exit per registration,
 * none afterwards. Tracepoint probes keep the area current on every
 * context switch and softirq entry and exit with plain stores to this
 * CPU's own area; the kernel itself marks every hard interrupt and NMI in
 * it (<linux/pvsched_guest.h>). The host reads it whenever it needs to.
 *
 * Counters and per-vCPU state: /sys/kernel/debug/pvsched/, with test
 * knobs for the host's lifetimes: bad_write (a registration that faults
 * must change nothing) and abandon (an area left registered across a
 * CPU's INIT must be released by the host); and cs_probe, which runs
 * critical sections of one kind, each taking VM exits inside, so the host
 * can be shown to see each kind.
 *
 * Before a reboot, halt or kexec every vCPU unregisters (a reboot
 * notifier): the VMM does not reset an MSR it does not know, so the host
 * would otherwise go on writing the old areas, which the next kernel
 * owns. A registration found already in place when a vCPU registers (a
 * previous kernel that did not unregister) is counted as stale.
 * hostile=1 makes this vCPU ask for a boost all the time and write garbage
 * now and then, to test that the host throttles and sanitizes; with
 * dodge_cap=1 a vCPU the host throttles registers again within a tick (by
 * a write of 0 first every other time), to test that the cap belongs to
 * the vCPU and not to the registration.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/cpuhotplug.h>
#include <linux/debugfs.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/pvsched_guest.h>
#include <linux/random.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>
#include <linux/workqueue.h>
#include <asm/apic.h>
#include <asm/msr.h>
#include <asm/nmi.h>
#include <uapi/linux/pvsched.h>

/*
 * Have the kernel mark preempt-disabled sections too (a kernel built with
 * CONFIG_PVSCHED_GUEST_PREEMPT): a call and a store at each outermost
 * preempt_disable() and preempt_enable() of a task while loaded. Off by
 * default: it cost about a tenth of hackbench's and of a system-call
 * loop's time in the lab's nested guests.
 */
static bool preempt_marks;
module_param(preempt_marks, bool, 0444);
MODULE_PARM_DESC(preempt_marks, "mark preempt-disabled sections (needs CONFIG_PVSCHED_GUEST_PREEMPT)");

static bool hostile;
module_param(hostile, bool, 0644);
MODULE_PARM_DESC(hostile, "always request a boost and write garbage (testing)");

/*
 * Test knob: 0 leaves the areas registered at power off, so the host's
 * teardown of a VM destroyed with registered vCPUs is what gets tested.
 */
static bool unregister_at_reboot = true;
module_param(unregister_at_reboot, bool, 0644);
MODULE_PARM_DESC(unregister_at_reboot, "unregister every vCPU before reboot, halt, power off or kexec");

static bool dodge_cap;
static bool dodge_ready;	/* every vCPU registered, the works initialized */
static void dodge_start(void);

/* Setting dodge_cap starts the polling on every vCPU at once. */
static int dodge_cap_set(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_bool(val, kp);

	if (!ret && READ_ONCE(dodge_cap) && READ_ONCE(dodge_ready))
		dodge_start();
	return ret;
}

static const struct kernel_param_ops dodge_cap_ops = {
	.set = dodge_cap_set,
	.get = param_get_bool,
};

module_param_cb(dodge_cap, &dodge_cap_ops, &dodge_cap, 0644);
MODULE_PARM_DESC(dodge_cap, "register again whenever the host throttles (testing)");

/*
 * RT_SLEEPING is set when the vCPU goes idle within this long of an RT
 * task going to sleep on it, even if other tasks ran in between: a
 * periodic RT task (cyclictest's measuring thread) shares its vCPU with
 * non-RT helpers (cyclictest's own main thread wakes every 10 ms), and
 * requiring the RT task's switch to go straight to idle left the vCPU
 * halted unboosted when the RT wakeup came. Only idle gets the flag: a
 * vCPU busy with non-RT work after an RT kthread slept is not helped.
 */
static unsigned int rt_sleep_window_us = 10000;
module_param(rt_sleep_window_us, uint, 0644);
MODULE_PARM_DESC(rt_sleep_window_us, "idle within this long of an RT task's sleep is RT_SLEEPING");

static DEFINE_PER_CPU(struct pvsched_vcpu_area *, pvsched_area);
/* local_clock() when an RT task last went to sleep on this CPU. */
static DEFINE_PER_CPU(u64, rt_slept_ns);

enum cs_probe_kind {
	CS_PROBE_TIMER, CS_PROBE_IPI, CS_PROBE_NMI, CS_PROBE_PREEMPT,
	CS_PROBE_KINDS
};

static const char * const cs_probe_names[CS_PROBE_KINDS] = {
	[CS_PROBE_TIMER] = "timer",
	[CS_PROBE_IPI] = "ipi",
	[CS_PROBE_NMI] = "nmi",
	[CS_PROBE_PREEMPT] = "preempt",
};

/* Per-CPU so the context-switch path never bounces a shared line. */
struct pvsched_stats {
	u64 switches;
	u64 rt_switches;
	u64 hardirqs;
	u64 softirqs;
	u64 hostile_writes;
	u64 cap_dodges;
	u64 cs_probes[CS_PROBE_KINDS];	/* sections cs_probe ran, by kind */
};
static DEFINE_PER_CPU(struct pvsched_stats, pvsched_stats);
static DEFINE_PER_CPU(struct delayed_work, dodge_work);
static atomic_t registered_cpus;
static atomic64_t reg_failures;
static atomic64_t unreg_failures;
/* vCPUs that found a registration in place when they registered. */
static atomic64_t stale_registrations;
static enum cpuhp_state pvsched_hp_state;
static struct dentry *pvsched_dir;
/*
 * The abandon test: the CPU named here leaves its area registered when it
 * goes offline and does not register when it comes back, as a kernel that
 * lost track of it would (kexec, a crash); the area is kept here.
 */
static int abandon_cpu = -1;
static struct pvsched_vcpu_area *abandoned;
/* While set, probes leave areas alone so injected garbage stays visible. */
static bool frozen;
static struct delayed_work thaw_work;

static bool is_rt_policy(int policy)
{
	return policy == SCHED_FIFO || policy == SCHED_RR;
}

static struct pvsched_guest_state *this_guest_state(void)
{
	struct pvsched_vcpu_area *area = this_cpu_read(pvsched_area);

	return area && !READ_ONCE(frozen) ? &area->guest : NULL;
}

static void hostile_scribble(struct pvsched_guest_state *g)
{
	/* Every 64th switch, write something no host should trust. */
	if (this_cpu_inc_return(pvsched_stats.hostile_writes) % 64 == 0) {
		WRITE_ONCE(g->policy, 0x7fff);
		WRITE_ONCE(g->rt_priority, 1000);
		WRITE_ONCE(g->cs, ~0U);
	}
}

static void probe_sched_switch(void *data, bool preempt,
			       struct task_struct *prev,
			       struct task_struct *next,
			       unsigned int prev_state)
{
	struct pvsched_guest_state *g = this_guest_state();
	struct pvsched_host_state *host;
	u64 now;
	u32 flags;

	if (!g)
		return;
	WRITE_ONCE(g->policy, next->policy);
	WRITE_ONCE(g->rt_priority, next->rt_priority);
	WRITE_ONCE(g->nice, task_nice(next));
	flags = 0;
	/*
	 * An RT task went to sleep (not exiting) lately and the vCPU goes
	 * idle: its wakeup is coming and matters (see rt_sleep_window_us).
	 */
	now = local_clock();
	if (is_rt_policy(prev->policy) && prev_state != TASK_RUNNING &&
	    !(prev_state & TASK_DEAD))
		this_cpu_write(rt_slept_ns, now);
	if (is_idle_task(next) && this_cpu_read(rt_slept_ns) &&
	    now - this_cpu_read(rt_slept_ns) <
	    (u64)READ_ONCE(rt_sleep_window_us) * NSEC_PER_USEC)
		flags |= PVSCHED_GUEST_RT_SLEEPING;
	if (READ_ONCE(hostile)) {
		flags |= PVSCHED_GUEST_BOOST_REQUEST;
		hostile_scribble(g);
	}
	host = &container_of(g, struct pvsched_vcpu_area, guest)->host;
	if (READ_ONCE(dodge_cap) &&
	    (READ_ONCE(host->status) & PVSCHED_HOST_THROTTLED))
		/*
		 * At normal priority, polling once a tick from then on: each
		 * registration costs the host a grace period, and a guest
		 * dodging at every switch from a high-priority worker starved
		 * its own tasks for minutes; one dodging only at switches (a
		 * busy vCPU rarely switches) dodged 5 times in 24 periods.
		 */
		queue_delayed_work_on(smp_processor_id(), system_wq,
				      this_cpu_ptr(&dodge_work), 1);
	WRITE_ONCE(g->flags, flags);
	WRITE_ONCE(g->seq, g->seq + 1);
	this_cpu_inc(pvsched_stats.switches);
	if (is_rt_policy(next->policy))
		this_cpu_inc(pvsched_stats.rt_switches);
}

static void dodge_start(void)
{
	unsigned int cpu;

	cpus_read_lock();
	for_each_online_cpu(cpu)
		queue_delayed_work_on(cpu, system_wq, per_cpu_ptr(&dodge_work, cpu), 0);
	cpus_read_unlock();
}

/*
 * dodge_cap: once a tick while it is set, register this vCPU's area again
 * (a new registration) if the host shows it throttled.
 */
static void dodge_one(struct work_struct *work)
{
	struct pvsched_vcpu_area *area;
	bool polling;

	preempt_disable();
	area = this_cpu_read(pvsched_area);
	polling = area && READ_ONCE(dodge_cap);
	if (polling && (READ_ONCE(area->host.status) & PVSCHED_HOST_THROTTLED)) {
		if (this_cpu_inc_return(pvsched_stats.cap_dodges) % 2)
			wrmsrl_safe(MSR_KVM_PVSCHED, 0);
		if (wrmsrl_safe(MSR_KVM_PVSCHED,
				__pa(area) | PVSCHED_MSR_ENABLE))
			atomic64_inc(&reg_failures);
	}
	if (polling)
		queue_delayed_work_on(smp_processor_id(), system_wq,
				      this_cpu_ptr(&dodge_work), 1);
	preempt_enable();
}

/* Critical-section bits: RMW of this CPU's word with interrupts off. */
static void cs_update(u32 set, u32 clear)
{
	struct pvsched_guest_state *g;
	unsigned long irqflags;

	local_irq_save(irqflags);
	g = this_guest_state();
	if (g) {
		WRITE_ONCE(g->cs, (READ_ONCE(g->cs) & ~clear) | set);
		WRITE_ONCE(g->seq, g->seq + 1);
	}
	local_irq_restore(irqflags);
}

/* Counted only: the kernel marks PVSCHED_CS_HARDIRQ for every interrupt. */
static void probe_irq_entry(void *data, int irq, struct irqaction *action)
{
	this_cpu_inc(pvsched_stats.hardirqs);
}

static void probe_softirq_entry(void *data, unsigned int vec_nr)
{
	this_cpu_inc(pvsched_stats.softirqs);
	cs_update(PVSCHED_CS_SOFTIRQ, 0);
}

static void probe_softirq_exit(void *data, unsigned int vec_nr)
{
	cs_update(0, PVSCHED_CS_SOFTIRQ);
}

struct pvsched_probe {
	const char *name;
	void *func;
	struct tracepoint *tp;
};

static struct pvsched_probe probes[] = {
	{ "sched_switch", probe_sched_switch },
	{ "irq_handler_entry", probe_irq_entry },
	{ "softirq_entry", probe_softirq_entry },
	{ "softirq_exit", probe_softirq_exit },
};

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (!strcmp(tp->name, probes[i].name))
			probes[i].tp = tp;
}

static void unregister_probes(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (probes[i].tp)
			tracepoint_probe_unregister(probes[i].tp, probes[i].func,
						    NULL);
	tracepoint_synchronize_unregister();
}

static int register_probes(void)
{
	int i, ret;

	for_each_kernel_tracepoint(find_tracepoint, NULL);
	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		if (!probes[i].tp) {
			pr_err("tracepoint %s not found\n", probes[i].name);
			ret = -ENOENT;
			goto fail;
		}
		ret = tracepoint_probe_register(probes[i].tp, probes[i].func,
						NULL);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	while (--i >= 0)
		tracepoint_probe_unregister(probes[i].tp, probes[i].func, NULL);
	tracepoint_synchronize_unregister();
	return ret;
}

/* CPU hotplug: runs on the CPU coming up or going down. */

static int pvsched_cpu_online(unsigned int cpu)
{
	struct pvsched_vcpu_area *area;
	u64 old;
	int ret;

	/* kmalloc aligns power-of-two sizes naturally: no page crossing. */
	area = kzalloc(sizeof(*area), GFP_KERNEL);
	if (!area)
		return -ENOMEM;
	if (READ_ONCE(abandon_cpu) == cpu) {
		WRITE_ONCE(abandon_cpu, -1);
		kfree(area);
		return 0;
	}
	area->guest.version = PVSCHED_ABI_VERSION;
	area->guest.policy = current->policy;
	if (!rdmsrl_safe(MSR_KVM_PVSCHED, &old) && (old & PVSCHED_MSR_ENABLE)) {
		atomic64_inc(&stale_registrations);
		pr_warn("vCPU %u: a previous kernel left area 0x%llx registered\n",
			cpu, old & ~(u64)PVSCHED_MSR_ENABLE);
	}
	ret = wrmsrl_safe(MSR_KVM_PVSCHED, __pa(area) | PVSCHED_MSR_ENABLE);
	if (ret) {
		/* The MSR exists (checked at init): the host said no. */
		atomic64_inc(&reg_failures);
		kfree(area);
		return -EPERM;
	}
	this_cpu_write(pvsched_area, area);
	pvsched_guest_cs_attach(cpu, &area->guest.cs);
	atomic_inc(&registered_cpus);
	return 0;
}

static int pvsched_cpu_offline(unsigned int cpu)
{
	struct pvsched_vcpu_area *area;
	unsigned long irqflags;

	local_irq_save(irqflags);
	area = this_cpu_read(pvsched_area);
	this_cpu_write(pvsched_area, NULL);
	/* On this CPU: none of its interrupts writes the area after this. */
	pvsched_guest_cs_detach(cpu);
	local_irq_restore(irqflags);
	if (!area)
		return 0;
	if (READ_ONCE(abandon_cpu) == cpu && !abandoned) {
		abandoned = area;	/* never freed: the host may write it */
		atomic_dec(&registered_cpus);
		return 0;
	}
	/*
	 * The host is done with the area when the write returns. If it
	 * faulted, the host may still write the area: leak it rather than
	 * hand the page back, and keep counting the vCPU as registered.
	 */
	if (wrmsrl_safe(MSR_KVM_PVSCHED, 0)) {
		atomic64_inc(&unreg_failures);
		return 0;
	}
	kfree(area);
	atomic_dec(&registered_cpus);
	return 0;
}

/*
 * Going down (reboot, halt, power off, kexec): every vCPU stops the host
 * writing its area, which the next kernel will own. The areas are not
 * freed: this kernel is done with its memory.
 */
static void unregister_this_cpu(void *unused)
{
	if (!this_cpu_read(pvsched_area))
		return;
	this_cpu_write(pvsched_area, NULL);
	pvsched_guest_cs_detach(smp_processor_id());
	if (wrmsrl_safe(MSR_KVM_PVSCHED, 0))
		atomic64_inc(&unreg_failures);
	else
		atomic_dec(&registered_cpus);
}

static int pvsched_reboot(struct notifier_block *nb, unsigned long action,
			  void *data)
{
	if (READ_ONCE(unregister_at_reboot))
		on_each_cpu(unregister_this_cpu, NULL, 1);
	return NOTIFY_DONE;
}

static struct notifier_block pvsched_reboot_nb = {
	.notifier_call = pvsched_reboot,
};

/* debugfs */

static int status_show(struct seq_file *m, void *unused)
{
	unsigned int cpu;

	seq_puts(m, "cpu seq policy rt_priority nice cs flags host_status host_boosts host_throttles\n");
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		struct pvsched_vcpu_area *a = per_cpu(pvsched_area, cpu);

		if (!a)
			continue;
		seq_printf(m, "%u %u %d %d %d %#x %#x %u %llu %llu\n", cpu,
			   READ_ONCE(a->guest.seq), READ_ONCE(a->guest.policy),
			   READ_ONCE(a->guest.rt_priority),
			   READ_ONCE(a->guest.nice), READ_ONCE(a->guest.cs),
			   READ_ONCE(a->guest.flags), READ_ONCE(a->host.status),
			   READ_ONCE(a->host.boosts),
			   READ_ONCE(a->host.throttles));
	}
	cpus_read_unlock();
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(status);

static int counters_show(struct seq_file *m, void *unused)
{
	struct pvsched_stats sum = {};
	unsigned int cpu;
	int i;

	for_each_possible_cpu(cpu) {
		struct pvsched_stats *s = per_cpu_ptr(&pvsched_stats, cpu);

		sum.switches += s->switches;
		sum.rt_switches += s->rt_switches;
		sum.hardirqs += s->hardirqs;
		sum.softirqs += s->softirqs;
		sum.cap_dodges += s->cap_dodges;
		for (i = 0; i < CS_PROBE_KINDS; i++)
			sum.cs_probes[i] += s->cs_probes[i];
	}
	seq_printf(m, "registered_cpus %d\nswitches %llu\nrt_switches %llu\n"
		   "hardirqs %llu\nsoftirqs %llu\nregister_failures %lld\n"
		   "unregister_failures %lld\nstale_registrations %lld\n"
		   "cap_dodges %llu\n",
		   atomic_read(&registered_cpus), sum.switches,
		   sum.rt_switches, sum.hardirqs, sum.softirqs,
		   atomic64_read(&reg_failures),
		   atomic64_read(&unreg_failures),
		   atomic64_read(&stale_registrations), sum.cap_dodges);
	for (i = 0; i < CS_PROBE_KINDS; i++)
		seq_printf(m, "cs_probe_%s %llu\n", cs_probe_names[i],
			   sum.cs_probes[i]);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(counters);

static void thaw(struct work_struct *work)
{
	unsigned int cpu;

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		struct pvsched_vcpu_area *a = per_cpu(pvsched_area, cpu);

		if (a)
			WRITE_ONCE(a->guest.version, PVSCHED_ABI_VERSION);
	}
	cpus_read_unlock();
	WRITE_ONCE(frozen, false);
}

/*
 * Write "version", "priority" or "garbage" to put that kind of malformed
 * content in every vCPU's area for 200 ms.
 */
static ssize_t corrupt_write(struct file *file, const char __user *ubuf,
			     size_t len, loff_t *ppos)
{
	char kind[16] = {};
	unsigned int cpu;

	if (copy_from_user(kind, ubuf, min(len, sizeof(kind) - 1)))
		return -EFAULT;
	strim(kind);
	if (strcmp(kind, "version") && strcmp(kind, "priority") &&
	    strcmp(kind, "garbage"))
		return -EINVAL;
	WRITE_ONCE(frozen, true);
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		struct pvsched_vcpu_area *a = per_cpu(pvsched_area, cpu);

		if (!a)
			continue;
		if (!strcmp(kind, "version")) {
			WRITE_ONCE(a->guest.version, 0xbad);
		} else if (!strcmp(kind, "priority")) {
			WRITE_ONCE(a->guest.policy, SCHED_FIFO);
			WRITE_ONCE(a->guest.rt_priority, 1000);
			WRITE_ONCE(a->guest.nice, -100);
		} else {
			get_random_bytes(&a->guest.seq,
					 sizeof(a->guest) -
					 offsetof(struct pvsched_guest_state, seq));
		}
	}
	cpus_read_unlock();
	mod_delayed_work(system_wq, &thaw_work, msecs_to_jiffies(200));
	return len;
}

static const struct file_operations corrupt_fops = {
	.owner = THIS_MODULE,
	.write = corrupt_write,
};

/*
 * Write anything: every online vCPU writes a GPA beyond its RAM to the
 * MSR. The write must fault and leave the MSR (the registration) as it
 * was; -EIO if it did not.
 */
static void bad_write_one(void *failed)
{
	u64 before, after;

	if (rdmsrl_safe(MSR_KVM_PVSCHED, &before) ||
	    !wrmsrl_safe(MSR_KVM_PVSCHED, BIT_ULL(32) | PVSCHED_MSR_ENABLE) ||
	    rdmsrl_safe(MSR_KVM_PVSCHED, &after) || after != before)
		atomic_inc(failed);
}

static ssize_t bad_write_write(struct file *file, const char __user *ubuf,
			       size_t len, loff_t *ppos)
{
	atomic_t failed = ATOMIC_INIT(0);

	cpus_read_lock();
	on_each_cpu(bad_write_one, &failed, 1);
	cpus_read_unlock();
	return atomic_read(&failed) ? -EIO : len;
}

static const struct file_operations bad_write_fops = {
	.owner = THIS_MODULE,
	.write = bad_write_write,
};

/*
 * Write a CPU number to abandon that CPU's area at its next offline and
 * online; write "canary" to fill the abandoned area's host half with a
 * pattern, and read "intact" or "overwritten" back.
 */
#define CANARY 0xa5

static int abandon_show(struct seq_file *m, void *unused)
{
	const u8 *host;
	size_t i;

	if (!abandoned) {
		seq_puts(m, "none\n");
		return 0;
	}
	host = (const u8 *)&abandoned->host;
	for (i = 0; i < sizeof(abandoned->host); i++)
		if (READ_ONCE(host[i]) != CANARY)
			break;
	seq_puts(m, i == sizeof(abandoned->host) ? "intact\n" : "overwritten\n");
	return 0;
}

static int abandon_open(struct inode *inode, struct file *file)
{
	return single_open(file, abandon_show, NULL);
}

static ssize_t abandon_write(struct file *file, const char __user *ubuf,
			     size_t len, loff_t *ppos)
{
	char buf[16] = {};
	int cpu;

	if (copy_from_user(buf, ubuf, min(len, sizeof(buf) - 1)))
		return -EFAULT;
	strim(buf);
	if (!strcmp(buf, "canary")) {
		if (!abandoned)
			return -ENOENT;
		memset(&abandoned->host, CANARY, sizeof(abandoned->host));
		return len;
	}
	if (kstrtoint(buf, 10, &cpu) || cpu < 0 || cpu >= nr_cpu_ids)
		return -EINVAL;
	WRITE_ONCE(abandon_cpu, cpu);
	return len;
}

static const struct file_operations abandon_fops = {
	.owner = THIS_MODULE,
	.open = abandon_open,
	.read = seq_read,
	.llseek = seq_lseek,
	.release = single_release,
	.write = abandon_write,
};

/*
 * cs_probe: write "<kind> <sections>" to run that many critical sections of
 * one kind on another vCPU than the writer's (the host is shown that
 * vCPU's sections), each taking CS_PROBE_EXITS VM exits (CPUID always
 * exits) inside the section: "timer" (an hrtimer expiring in the APIC
 * timer interrupt), "ipi" (a function call IPI from the writer's vCPU),
 * "nmi" (an NMI the vCPU sends itself), "preempt" (a kworker with
 * preemption disabled, interrupts on).
 */
#define CS_PROBE_EXITS		50
#define CS_PROBE_MAX		10000
#define CS_PROBE_TIMEOUT	(5 * HZ)

struct cs_probe {
	enum cs_probe_kind kind;
	unsigned int sections;
	unsigned int target;	/* the probed vCPU */
	struct hrtimer timer;
	struct completion done;
};

static DEFINE_MUTEX(cs_probe_lock);
static DEFINE_PER_CPU(bool, cs_probe_nmi_pending);
static bool cs_probe_nmi_registered;

static void cs_probe_section(enum cs_probe_kind kind)
{
	int i;

	for (i = 0; i < CS_PROBE_EXITS; i++)
		cpuid_eax(0);
	this_cpu_inc(pvsched_stats.cs_probes[kind]);
}

static enum hrtimer_restart cs_probe_timer_fn(struct hrtimer *timer)
{
	struct cs_probe *probe = container_of(timer, struct cs_probe, timer);

	cs_probe_section(CS_PROBE_TIMER);
	complete(&probe->done);
	return HRTIMER_NORESTART;
}

static void cs_probe_ipi_fn(void *unused)
{
	cs_probe_section(CS_PROBE_IPI);
}

static int cs_probe_nmi_fn(unsigned int type, struct pt_regs *regs)
{
	if (!this_cpu_read(cs_probe_nmi_pending))
		return NMI_DONE;
	cs_probe_section(CS_PROBE_NMI);
	this_cpu_write(cs_probe_nmi_pending, false);
	return NMI_HANDLED;
}

/* Runs on the probed vCPU (work_on_cpu) for the timer, NMI and preempt kinds. */
static long cs_probe_local(void *arg)
{
	struct cs_probe *probe = arg;
	unsigned long deadline;
	unsigned int i;

	for (i = 0; i < probe->sections; i++) {
		if (probe->kind == CS_PROBE_PREEMPT) {
			preempt_disable();
			cs_probe_section(CS_PROBE_PREEMPT);
			preempt_enable();
			cond_resched();
			continue;
		}
		if (probe->kind == CS_PROBE_TIMER) {
			reinit_completion(&probe->done);
			hrtimer_start(&probe->timer, ns_to_ktime(100 * NSEC_PER_USEC),
				      HRTIMER_MODE_REL_PINNED_HARD);
			if (!wait_for_completion_timeout(&probe->done,
							 CS_PROBE_TIMEOUT)) {
				hrtimer_cancel(&probe->timer);
				return -ETIMEDOUT;
			}
			continue;
		}
		this_cpu_write(cs_probe_nmi_pending, true);
		apic->send_IPI_mask(cpumask_of(smp_processor_id()), NMI_VECTOR);
		deadline = jiffies + CS_PROBE_TIMEOUT;
		while (this_cpu_read(cs_probe_nmi_pending)) {
			if (time_after(jiffies, deadline)) {
				this_cpu_write(cs_probe_nmi_pending, false);
				return -ETIMEDOUT;
			}
			cpu_relax();
		}
	}
	return 0;
}

/* Runs on the writer's vCPU for the IPI kind. */
static long cs_probe_remote(void *arg)
{
	struct cs_probe *probe = arg;
	unsigned int i;
	int ret;

	for (i = 0; i < probe->sections; i++) {
		ret = smp_call_function_single(probe->target, cs_probe_ipi_fn,
					       NULL, 1);
		if (ret)
			return ret;
	}
	return 0;
}

static ssize_t cs_probe_write(struct file *file, const char __user *ubuf,
			      size_t len, loff_t *ppos)
{
	struct cs_probe probe = {};
	unsigned int here;
	char buf[32] = {}, kind[8];
	long ret;

	if (copy_from_user(buf, ubuf, min(len, sizeof(buf) - 1)))
		return -EFAULT;
	if (sscanf(buf, "%7s %u", kind, &probe.sections) != 2 ||
	    !probe.sections || probe.sections > CS_PROBE_MAX)
		return -EINVAL;
	ret = match_string(cs_probe_names, CS_PROBE_KINDS, kind);
	if (ret < 0)
		return ret;
	probe.kind = ret;

	mutex_lock(&cs_probe_lock);
	cpus_read_lock();
	here = cpumask_first(cpu_online_mask);
	probe.target = cpumask_next(here, cpu_online_mask);
	if (probe.target >= nr_cpu_ids) {
		ret = -ENODEV;
		goto out;
	}
	if (probe.kind == CS_PROBE_NMI && !cs_probe_nmi_registered) {
		ret = register_nmi_handler(NMI_LOCAL, cs_probe_nmi_fn, 0,
					   "pvsched_cs_probe");
		if (ret)
			goto out;
		cs_probe_nmi_registered = true;
	}
	init_completion(&probe.done);
	hrtimer_init_on_stack(&probe.timer, CLOCK_MONOTONIC,
			      HRTIMER_MODE_REL_PINNED_HARD);
	probe.timer.function = cs_probe_timer_fn;
	if (probe.kind == CS_PROBE_IPI)
		ret = work_on_cpu(here, cs_probe_remote, &probe);
	else
		ret = work_on_cpu(probe.target, cs_probe_local, &probe);
	destroy_hrtimer_on_stack(&probe.timer);
out:
	cpus_read_unlock();
	mutex_unlock(&cs_probe_lock);
	return ret ? ret : len;
}

static const struct file_operations cs_probe_fops = {
	.owner = THIS_MODULE,
	.write = cs_probe_write,
};

#ifdef CONFIG_PVSCHED_GUEST_PREEMPT
static void preempt_marks_start(void)
{
	if (preempt_marks)
		pvsched_guest_preempt_start();
}

static void preempt_marks_stop(void)
{
	if (preempt_marks)
		pvsched_guest_preempt_stop();
}
#else
static void preempt_marks_start(void)
{
	if (preempt_marks)
		pr_warn("this kernel cannot mark preempt-disabled sections (CONFIG_PVSCHED_GUEST_PREEMPT)\n");
	preempt_marks = false;
}

static void preempt_marks_stop(void) { }
#endif

static int __init pvsched_guest_init(void)
{
	u64 msr;
	int cpu, ret;

	/* Tell a host without pvsched from one that refuses this VMM. */
	if (rdmsrl_safe(MSR_KVM_PVSCHED, &msr)) {
		pr_err("the host has no pvsched MSR\n");
		return -EOPNOTSUPP;
	}
	INIT_DELAYED_WORK(&thaw_work, thaw);
	for_each_possible_cpu(cpu)
		INIT_DELAYED_WORK(per_cpu_ptr(&dodge_work, cpu), dodge_one);
	ret = register_probes();
	if (ret)
		return ret;
	/* Marks nothing until a CPU attaches its area. */
	pvsched_guest_cs_start();
	preempt_marks_start();
	ret = cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "virt/pvsched:online",
				pvsched_cpu_online, pvsched_cpu_offline);
	if (ret < 0) {
		pr_err("host refused registration (the VMM lacks CAP_SYS_NICE?): %d\n",
		       ret);
		preempt_marks_stop();
		pvsched_guest_cs_stop();
		unregister_probes();
		return ret;
	}
	pvsched_hp_state = ret;
	register_reboot_notifier(&pvsched_reboot_nb);
	pvsched_dir = debugfs_create_dir("pvsched", NULL);
	debugfs_create_file("status", 0444, pvsched_dir, NULL, &status_fops);
	debugfs_create_file("counters", 0444, pvsched_dir, NULL,
			    &counters_fops);
	debugfs_create_file("corrupt", 0200, pvsched_dir, NULL, &corrupt_fops);
	debugfs_create_file("bad_write", 0200, pvsched_dir, NULL, &bad_write_fops);
	debugfs_create_file("abandon", 0600, pvsched_dir, NULL, &abandon_fops);
	debugfs_create_file("cs_probe", 0200, pvsched_dir, NULL, &cs_probe_fops);
	WRITE_ONCE(dodge_ready, true);
	if (READ_ONCE(dodge_cap))
		dodge_start();
	pr_info("registered %d vCPUs\n", atomic_read(&registered_cpus));
	return 0;
}

static void __exit pvsched_guest_exit(void)
{
	int cpu;

	unregister_reboot_notifier(&pvsched_reboot_nb);
	debugfs_remove_recursive(pvsched_dir);
	cancel_delayed_work_sync(&thaw_work);
	unregister_probes();
	for_each_possible_cpu(cpu)
		cancel_delayed_work_sync(per_cpu_ptr(&dodge_work, cpu));
	cpuhp_remove_state(pvsched_hp_state);
	/* Every CPU detached its area going down; wait out any NMI still in it. */
	preempt_marks_stop();
	pvsched_guest_cs_stop();
	if (cs_probe_nmi_registered)
		unregister_nmi_handler(NMI_LOCAL, "pvsched_cs_probe");
	pr_info("unregistered\n");
}

module_init(pvsched_guest_init);
module_exit(pvsched_guest_exit);
MODULE_DESCRIPTION("pvsched guest: share vCPU scheduling state with the host");
MODULE_LICENSE("GPL");
