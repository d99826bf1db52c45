"""Console text of real failures, shared by the tests that recognise them."""

import re

# The oops seen here (QEMU 7.2 and 10.0 TCG): an interrupt taken with the
# level-2 guest's GS base, so %gs:current_task read 0.
NULL_PERCPU_OOPS = """[  103.932268] BUG: TASK stack guard page was hit at 00000000ceb0ac54
[  103.936044] Oops: stack guard page: 0000 [#1] SMP
[  103.937359] RIP: 0010:exc_page_fault+0x1c/0x110
[  103.938477] Code: 0f 1f 00 41 55 41 54 55 48 89 f5 53 48 89 fb 41 0f 20 d4 65 48 8b 05 c4 ed af 7e <48> 8b 80 68 05 00 00 0f 0d 88
[  103.938716] RSP: 0018:ffffc90000398000 EFLAGS: 00000087
[  103.939288] RAX: 0000000000000000 RBX: ffffc90000398028 RCX: ffffffff816014f9
"""

# A level-2 debug guest's oops under level 1's KVM on TCG (run 20261127T125703Z,
# attempt 1): a frame with CS 0 and an error code with undefined bits.
NULL_CS_FRAME_OOPS = """[  230.715106] dmesg: Corrupted page table at address 0
[  230.915644] PGD 0 P4D 0
[  231.071443] Oops: Bad pagetable: 41ac [#1] SMP KASAN
[  231.339284] CPU: 1 UID: 0 PID: 115 Comm: dmesg Tainted: G           O       6.12.117-pvsched-lab+ #1
[  235.837096] RIP: 0000:0xebea
[  236.035963] Code: Unable to access opcode bytes at 0xebc0.
[  236.320998] RSP: 90ba:0000000000000008 EFLAGS: ffff88800d127c38
[  239.507934] Kernel panic - not syncing: Fatal exception in interrupt
"""

# System.map lines under which the sample's `mov %gs:0x7eafedc4(%rip),%rax`,
# followed by the faulting load at exc_page_fault+0x1c, reads pcpu_hot
# (current_task): 0xffffffff81522d3c + 0x7eafedc4 wraps to 0x21b00.
SYSTEM_MAP = """0000000000021b00 D pcpu_hot
0000000000021c40 D cpu_tlbstate
ffffffff81522d20 T exc_page_fault
ffffffff81522e40 T asm_exc_page_fault
"""

# The sample's report goes on with a call trace of KVM running level 2.
NULL_PERCPU_TRACE = """[  103.940112] Call Trace:
[  103.940380]  <#DF>
[  103.940601]  ? die+0x36/0x90
[  103.940902]  ? handle_stack_overflow+0x4d/0x60
[  103.941210]  ? exc_double_fault+0x122/0x190
[  103.941513]  ? asm_exc_double_fault+0x1f/0x30
[  103.941804]  </#DF>
[  103.942011]  <TASK>
[  103.942233]  svm_vcpu_run+0x3a1/0x7a0
[  103.942530]  vcpu_enter_guest+0x6b4/0x1430
[  103.942839]  kvm_arch_vcpu_ioctl_run+0x1a5/0x4f0
[  103.943161]  kvm_vcpu_ioctl+0x20a/0x6a0
[  103.943460]  __x64_sys_ioctl+0x8f/0xd0
[  103.943754]  do_syscall_64+0x4b/0x110
[  103.944052]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[  103.944388]  </TASK>
[  103.944601] ---[ end trace 0000000000000000 ]---
"""

# The lab's own host kernel (6.12.117, kernel/configs, built 2026-12-02): its
# System.map and `objdump -d` of exc_page_fault, where current is read by
# `65 48 8b 05 b9 0f b3 7e  mov %gs:0x7eb30fb9(%rip),%rax  # 2ac00 <pcpu_hot>`
# and dereferenced at exc_page_fault+0x1c, as in the oops above.
SYSTEM_MAP_LAB_BUILD = """000000000002ac00 D const_pcpu_hot
000000000002ac00 D pcpu_hot
ffffffff814f9c2b T exc_page_fault
"""
NULL_PERCPU_OOPS_LAB_BUILD = NULL_PERCPU_OOPS.replace("c4 ed af 7e", "b9 0f b3 7e")

# Level 1, emulator control run 20261202T214625Z-3331, cell base-ipi (the
# unpatched kernel, no driver, no policy): the idle task came back from HLT
# to an address that is no code (the same value was seen on patched runs).
WILD_RETURN_FROM_HALT_OOPS = """[   40.578253] BUG: unable to handle page fault for address: ffff8c8b919a899a
[   40.578794] #PF: supervisor instruction fetch in kernel mode
[   40.578970] #PF: error_code(0x0010) - not-present page
[   40.579182] PGD 0 P4D 0
[   40.584358] Thread overran stack, or stack corrupted
[   40.584589] Oops: Oops: 0010 [#1] SMP
[   40.585081] CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 6.12.117-pvsched-lab+ #1
[   40.585786] RIP: 0010:0xffff8c8b919a899a
[   40.586847] Code: Unable to access opcode bytes at 0xffff8c8b919a8970.
[   40.587069] RSP: 0018:ffffffff81e03e30 EFLAGS: 00000046
[   40.591432] RAX: ffff88810124c000 RBX: 0000000000000000 RCX: 0000000000000000
[   40.591704] RDX: 0000000000000000 RSI: 0000000055555554 RDI: 0000000000000000
[   40.591955] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   40.592140] R10: 0000000000000000 R11: 0000000000000000 R12: ffffffff81e0a940
[   40.592328] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000013b70
[   40.592600] FS:  0000000000000000(0000) GS:ffff88813cc00000(0000) knlGS:0000000000000000
[   40.592809] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[   40.592958] CR2: ffff8c8b919a8970 CR3: 0000000101fc3000 CR4: 00000000007506b0
[   40.593206] PKRU: 55555554
[   40.593391] Call Trace:
[   40.594338]  <TASK>
[   40.594568]  ? pv_native_safe_halt+0x17/0x18
[   40.594929]  ? do_idle+0x136/0x13e
[   40.595065]  ? cpu_startup_entry+0x2d/0x2f
[   40.599332]  ? rest_init+0xa3/0xa3
[   40.599582]  ? start_kernel+0x648/0x648
[   40.599735]  ? x86_64_start_reservations+0x24/0x24
[   40.599865]  ? x86_64_start_kernel+0x8b/0x8b
[   40.599983]  ? common_startup_64+0x13b/0x148
[   40.600166]  </TASK>
[   40.600312] Modules linked in:
[   40.600657] CR2: ffff8c8b919a899a
[   40.601007] ---[ end trace 0000000000000000 ]---
"""

# Level 1, mutants-20261202T220256Z's unmodified tree (the patched kernel):
# the same return from HLT, to 0x1e0.
WILD_RETURN_FROM_HALT_LOW_OOPS = """[   71.005051] BUG: kernel NULL pointer dereference, address: 00000000000001e0
[   71.007151] #PF: supervisor instruction fetch in kernel mode
[   71.007739] #PF: error_code(0x0010) - not-present page
[   71.008025] PGD 0 P4D 0
[   71.009048] Oops: Oops: 0010 [#1] SMP
[   71.016702] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 6.12.117-pvsched-lab+ #1
[   71.018451] RIP: 0010:0x1e0
[   71.021602] Code: Unable to access opcode bytes at 0x1b6.
[   71.021808] RSP: 0018:ffffc900000a3e80 EFLAGS: 00000046
[   71.022029] RAX: ffff88810137e000 RBX: 0000000000000000 RCX: 0000000000000000
[   71.022266] RDX: 0000000000000000 RSI: 0000000055555554 RDI: 0000000000000000
[   71.022477] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   71.022670] R10: 0000000000000000 R11: ffffc9000020fdb8 R12: ffff8880002f6000
[   71.025805] R13: 0000000000000001 R14: 0000000000000000 R15: 0000000000000000
[   71.026125] FS:  0000000000000000(0000) GS:ffff88813cd00000(0000) knlGS:0000000000000000
[   71.026364] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[   71.026521] CR2: 00000000000001e0 CR3: 0000000103d40000 CR4: 00000000007506b0
[   71.026814] PKRU: 55555554
[   71.027009] Call Trace:
[   71.027864]  <TASK>
[   71.028067]  ? pv_native_safe_halt+0x17/0x18
[   71.028430]  ? do_idle+0x136/0x13e
[   71.028561]  ? cpu_startup_entry+0x2d/0x2f
[   71.028682]  ? start_secondary+0xdf/0xdf
[   71.028799]  ? common_startup_64+0x13b/0x148
[   71.028961]  </TASK>
[   71.029119] Modules linked in:
[   71.033171] CR2: 00000000000001e0
[   71.033617] ---[ end trace 0000000000000000 ]---
"""


# A level-2 guest of our kernel (the reboot check's first boot, run
# 20261203T084547Z-06c0, at 1.1 s, before our driver was loaded): page
# faults in the page-fault entry until the IRQ stack ran out; RAX 0 (current)
# and R12 0x568 (CR2: current->mm), the registers of NULL_PERCPU_OOPS.
GUEST_NULL_CURRENT_OOPS = """[    1.106220] BUG: IRQ stack guard page was hit at (____ptrval____) (stack is (____ptrval____)..)
[    1.108159] Oops: stack guard page: 0000 [#1] SMP
[    1.108159] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 6.12.117-pvsched-lab+ #1
[    1.108159] pci 0000:00:01.3: quirk: [io  0x0600-0x063f] claimed by PIIX4 ACPI
[    1.108159] RIP: 0010:asm_exc_page_fault+0x8/0x30
[    1.108159] Code: 74 24 28 ff 74 24 28 ff 74 24 28 e8 52 04 00 00 48 89 c4 48 89 e7 e8 65 89 ef ff ...
[    1.108159] RSP: 0018:ffffc900000d5000 EFLAGS: 00000087
[    1.108159] RAX: 0000000000000000 RBX: ffffc900000d5058 RCX: ffffffff816014f9
[    1.108159] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffc900000d5058
[    1.108159] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[    1.108159] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000568
[    1.108159] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[    1.108159] FS:  0000000000000000(0000) GS:ffff88800f900000(0000) knlGS:0000000000000000
[    1.108159] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[    1.108159] CR2: ffffc900000d4ff8 CR3: 0000000001e3f000 CR4: 00000000007106b0
[    1.108159] PKRU: 55555554
"""

# A level-2 guest of the unpatched kernel (emulator control run
# 20261202T214625Z-3331, base-ipi run 4): the fault at 0x568 itself, the
# same RAX and R12.
GUEST_NULL_CURRENT_BASE_OOPS = """[   12.526356] swapper/0: Corrupted page table at address 568
[   12.526356] PGD 0 P4D 0
[   12.526356] Oops: Bad pagetable: 000e [#1] SMP
[   12.526356] CPU: 0 UID: 0 PID: 0 Comm: swapper/0 Not tainted 6.12.117-pvsched-lab+ #1
[   12.526356] RIP: 0010:0x1321eb0000000f
[   12.526356] Code: Unable to access opcode bytes at 0x1321eaffffffe5.
[   12.526356] RSP: 0013:0013222500000012 EFLAGS: 13221200000011
[   12.526356] RAX: 0000000000000000 RBX: ffffffff81dc8ea8 RCX: ffffffff816014f9
[   12.526356] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffffff81dc8ea8
[   12.526356] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   12.526356] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000568
"""


# The wedged dump of run 20261203T124140Z-25db (stress, hostile part, a vanilla round):
# level-1 CPU 0 at CPL 3, IF set, timer and IPI vectors requested for minutes
# (the APIC dumps without their LVT, timer and ICR lines, which no sign reads).
STUCK_IN_GUEST_DUMP = """\

CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=000000001b8f83c0
RSI=000000001b8f9b50 RDI=00007ffd35ffc7b0 RBP=0000000000000001 RSP=00007ffd35ffc7b0
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000448260 R11=0000000000000000
R12=0000000000000000 R13=00007ffd35ffc7b0 R14=00000000005eaeb0 R15=000000001b8f83c0
RIP=000000000042edf1 RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CPU#1
RAX=000000dc95938630 RBX=0000000000002710 RCX=0000000000000001 RDX=00000000000094ea
RSI=000000dc9592f146 RDI=0000000000251ac7 RBP=0000000000000001 RSP=ffffc900000d8e68
R8 =0000000000000001 R9 =0000000000000001 R10=ffffc900000d8bf8 R11=ffffffff820b0832
R12=0000000000000003 R13=0000000000000001 R14=ffff88813cd00000 R15=ffffffff81ec8240
RIP=ffffffff814f6c2c RFL=00000083 [--S---C] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CPU#0: RIP 000000000042edf1 = ?
CPU#1: RIP ffffffff814f6c2c = delay_tsc+0x39

# info lapic 0
dumping local APIC state for CPU 0

ISR	 (none)
IRR	 236 251 253

APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10

# info lapic 1
dumping local APIC state for CPU 1

ISR	 (none)
IRR	 (none)

APR 0x01 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10
"""
STUCK_IN_GUEST_STALL = """\
[  322.675163] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:
[  322.676901] rcu: 	0-...0: (1620 ticks this GP) idle=fa0c/1/0x4000000000000000 softirq=16441/16442 fqs=1049
"""


# A soft lockup in the shape of CI run 20261203T231654Z-66d8: the boost
# loader attaching its struct_ops waits in a TLB flush for a CPU that never
# answers. The guess unwinder printed every frame `?`, our struct_ops
# callbacks among them (addresses left on the stack); ORC prints the same
# stale addresses `?` beside the call chain it unwound to the system call.
SOFT_LOCKUP_ORC = """\
[  373.182280] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [pvsched_boost:140]
[  373.182400] RIP: 0010:smp_call_function_many_cond+0x342/0x4a0
[  373.182560] Call Trace:
[  373.182581]  <TASK>
[  373.182594]  ? __flush_tlb_all+0x1a/0x1a
[  373.182600]  on_each_cpu_cond_mask+0x1d/0x1e
[  373.182676]  __purge_vmap_area_lazy+0x13f/0x30e
[  373.182709]  _vm_unmap_aliases+0x19b/0x1ca
[  373.182742]  vfree+0xfe/0x168
[  373.182771]  ? pvsched_ops_init_member+0x47/0x47
[  373.182828]  arch_bpf_trampoline_size+0x7d/0x92
[  373.182900]  ? pvsched_ops_init_member+0x47/0x47
[  373.182929]  bpf_struct_ops_prepare_trampoline+0x6d/0x15d
[  373.182992]  bpf_struct_ops_map_update_elem+0x432/0x677
[  373.183033]  bpf_map_update_value+0x54/0x16e
[  373.183066]  __sys_bpf+0xb45/0x2137
[  373.183108]  __x64_sys_bpf+0x1e/0x30
[  373.183133]  do_syscall_64+0x4e/0xa4
[  373.183161]  entry_SYSCALL_64_after_hwframe+0x4b/0x53
[  373.183198]  </TASK>
"""
# The same report from the guess unwinder: nothing tells a caller from a stale address.
SOFT_LOCKUP_GUESS = re.sub(r"^(\[[ \d.]+\]  )(?=\w+\+0x)", r"\1? ", SOFT_LOCKUP_ORC, flags=re.MULTILINE)


# Stress run 20261204T163519Z-6f63, level 1's dmesg: an oops in a vCPU thread
# (null-percpu's registers) stamped with the age of the guest that thread
# ran (17.1 s), among level 1's own lines at 542-656 s; the report ends at R15.
CLOCK_FROM_GUEST_DMESG = """\
[  503.964093] LAB-LEVEL2-BEGIN level2-console-stress-hostile-hostile-4.log
[  509.853952] kvm: kvm [352]: vcpu0, guest rIP: 0xffffffff81005692 Unhandled WRMSR(0xc0010007) = 0xffff
[  536.101619] LAB-LEVEL2-BEGIN level2-console-stress-hostile-hostile-5.log
[  542.174266] kvm: kvm [371]: vcpu0, guest rIP: 0xffffffff81005692 Unhandled WRMSR(0xc0010007) = 0xffff
[   17.108980] BUG: TASK stack guard page was hit at 0000000039d3e73b (stack is 00000000a0142af9..000000000a9f197d)
[   17.112028] Oops: stack guard page: 0000 [#1] PREEMPT SMP
[   17.112582] CPU: 0 UID: 0 PID: 375 Comm: CPU 0/KVM Not tainted 6.12.117-pvsched-lab+ #1
[   17.112933] RIP: 0010:exc_page_fault+0x1c/0x134
[   17.113584] Code: ff 58 89 ee 48 89 df 5b 5d e9 79 03 00 00 66 0f 1f 00 41 55 41 54 55 48 89 f5 53 48 89 fb 41 0f 20 d4 65 48 8b 05 32 6
[   17.113742] RSP: 0018:ffffc9000019c000 EFLAGS: 00000087
[   17.114272] RAX: 0000000000000000 RBX: ffffc9000019c028 RCX: ffffffff816014f9
[   17.114319] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffc9000019c028
[   17.114334] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   17.114344] R10: 0000000000000000 R11: 0000000000000000 R12: 00000000000005c8
[   17.114356] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[  656.206938] ------------[ cut here ]------------
"""


# The emulator control's base-spin cell, unpatched kernel (run 20261205T042153Z-a1b3, base-spin run 3):
# level-1 CPU 1 waits for CPU 0's answer to an IPI; CPU 0 runs level 2's user code with it pending.
# The CPU dump is cut to what the sign reads (registers up to RIP, each APIC's ISR, IRR and PPR).
SOFT_LOCKUP_IPI_WAIT = """\
[  277.055023] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [python:104]
[  277.055264] Modules linked in:
[  277.055931] CPU: 1 UID: 0 PID: 104 Comm: python Not tainted 6.12.117-pvsched-lab+ #1
[  277.056238] RIP: 0010:smp_call_function_many_cond+0x357/0x393
[  277.056545] RSP: 0018:ffffc9000028bd88 EFLAGS: 00000202
[  277.056571] RAX: ffff88813cc2fe20 RBX: ffff88813cd2cdc0 RCX: 0000000000000000
[  277.056582] RDX: 0000000000000001 RSI: 0000000000000001 RDI: ffffffff81169d86
[  277.056592] RBP: 0000000000000246 R08: 0000000000000000 R09: 0000000000000000
[  277.056601] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000001
[  277.056612] R13: 0000000000000000 R14: 0000000000000001 R15: ffff88813cc2fe20
[  277.056678] FS:  00007fc8f4db76c0(0000) GS:ffff88813cd00000(0000) knlGS:0000000000000000
[  277.056699] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  277.056710] CR2: 00007fc8e0001bd8 CR3: 0000000101f83000 CR4: 00000000007506b0
[  277.056752] PKRU: 55555554
[  277.056805] Call Trace:
[  277.057340]  <TASK>
[  277.057428]  ? enable_trace_buffered_event+0xc/0xc
[  277.057706]  ? slab_alloc_node.isra.0+0x7c/0xa0
[  277.057745]  on_each_cpu_cond_mask+0x24/0x33
[  277.057804]  trace_buffered_event_disable+0x55/0xf4
[  277.057819]  apply_event_filter+0x51/0xd3
[  277.057833]  event_filter_write+0x85/0xb5
[  277.057845]  vfs_write+0x96/0x17a
[  277.057859]  ? handle_mm_fault+0xe2/0x164
[  277.057875]  ksys_write+0x72/0x9f
[  277.057887]  do_syscall_64+0x4e/0xa4
[  277.057902]  entry_SYSCALL_64_after_hwframe+0x4b/0x53
[  277.058036] RIP: 0033:0x7fc8f72bf38f
"""
STUCK_IN_GUEST_IPI_DUMP = """\
CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=00000000fbad2084 RDX=0000000028583710
RIP=000000000052532c RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0

CPU#1
RAX=0000000000000032 RBX=ffffffff822956a0 RCX=0000000000000000 RDX=00000000000003f8
RIP=ffffffff813c5bbc RFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0

# info lapic 0

LVTTHMR	 0x00010000 active-hi edge  masked                      Fixed  (vec 0)
LVTT	 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)
ISR	 (none)
IRR	 236 251 253

APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10

# info lapic 1

LVTTHMR	 0x00010000 active-hi edge  masked                      Fixed  (vec 0)
LVTT	 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)
ISR	 (none)
IRR	 (none)

APR 0x01 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10
"""


# Stress run 20261205T053244Z-796b, a policy round's guest: its APIC timer's entry, reached from user mode,
# entered again at its first instruction with IF clear (head and tail of the oops).
IRQ_WITH_IF_CLEAR_OOPS = """\
[   10.121302] BUG: ENTRY_TRAMPOLINE stack guard page was hit at 00000000b52c5f74 (stack is 000000004cb0c976..000000005c7eed65)
[   10.127612] Oops: stack guard page: 0000 [#1] PREEMPT SMP
[   10.128255] CPU: 1 UID: 0 PID: 63 Comm: sh Tainted: G           O       6.12.117-pvsched-lab+ #1
[   10.128494] Tainted: [O]=OOT_MODULE
[   10.128633] RIP: 0010:error_entry+0x10/0xc0
[   10.136116]  asm_exc_page_fault+0x26/0x30
[   10.136124] RIP: 0010:irqentry_enter+0x10/0x26
[   10.136138] RSP: 0000:fffffe000003df08 EFLAGS: 00000046
[   10.136143] RAX: fffffe000003df28 RBX: fffffe000003df28 RCX: ffffffff816014f9
[   10.136148] RDX: 0000000000000000 RSI: 0000000000000000 RDI: fffffe000003df28
[   10.136152] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   10.136156] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000000
[   10.136159] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[   10.136166]  ? restore_regs_and_return_to_kernel+0x1b/0x1b
[   10.136203]  sysvec_apic_timer_interrupt+0xe/0x7c
[   10.136216]  asm_sysvec_apic_timer_interrupt+0x1a/0x20
[   10.136224] RIP: 0010:asm_sysvec_apic_timer_interrupt+0x0/0x20
[   10.136239] RSP: 0000:fffffe000003dfd8 EFLAGS: 00000006
[   10.136245] RAX: 0000000000000000 RBX: 0000000000000000 RCX: 00000000005de180
[   10.136249] RDX: 932ac522f508ba79 RSI: 0000000000000001 RDI: 0000000000000000
[   10.136253] RBP: 000000000ba77710 R08: 0000000000000000 R09: 0000000000000000
[   10.136257] R10: 0000000000448260 R11: 0000000000000000 R12: 000000000ba77ab8
[   10.136261] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[   10.136286] RIP: 0033:0x52c332
[   10.136452] RSP: 002b:00007fff4cf6be60 EFLAGS: 00000206
[   10.136471]  </ENTRY_TRAMPOLINE>
"""


# Run 20261204T202306Z-334a (base-girq): an NMI backtrace caught at an interrupt entry's first instruction.
NMI_AT_IRQ_ENTRY = """\
[   17.577839] RBP: 0000000023476f50 R08: fefefefefefefeff R09: fefefefefefeff6b
[   17.577844] R10: 00000000000001b6 R11: 0000000000000202 R12: 0000000000000002
[   17.577849] R13: 00000000234613a0 R14: 0000000000000001 R15: 00007fff6e8d8180
[   17.577863]  </TASK>
[   17.578449] NMI backtrace for cpu 1
[   17.578626] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 6.12.117-pvsched-lab+ #1
[   17.578677] RIP: 0010:asm_sysvec_call_function_single+0x0/0x20
[   17.578787] RSP: 0018:ffffc900000abec8 EFLAGS: 00000046
[   17.578830] RAX: 0000000000000000 RBX: 0000000000000000 RCX: 0000000000000000
[   17.579056] RDX: 0000000000000000 RSI: 0000000000000001 RDI: 000000000001f01c
[   17.579112] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[   17.579124] R10: 0000000000000000 R11: 0000000000000000 R12: ffff8880002f6e40
[   17.579134] R13: 0000000000000001 R14: 0000000000000000 R15: 0000000000000000
[   17.579915] FS:  0000000000000000(0000) GS:ffff88800f900000(0000) knlGS:0000000000000000
[   17.580081] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[   17.580104] CR2: 00000000005a587c CR3: 0000000000927000 CR4: 00000000007106b0
[   17.580116] PKRU: 55555554
[   17.580126] Call Trace:
[   17.580259]  <TASK>
[   17.580315] RIP: 0010:pv_native_safe_halt+0x17/0x18
"""

# Stress run 20261205T073507Z-6615, level 1: an APIC timer interrupt taken at the instruction after
# VMRUN, its handler faulting on per-CPU reads until the stack overflowed: the report's header, one
# nested page-fault frame (repeated in the full report, 760 lines), and the chain's first frames.
IRQ_AT_VMRUN_RETURN_HEAD = """\
[  503.943469] BUG: TASK stack guard page was hit at 00000000545b5d4c (stack is 00000000a4cd64fd..00000000dfb0548a)
[  503.944285] Oops: stack guard page: 0000 [#1] PREEMPT SMP
[  503.944652] CPU: 0 UID: 0 PID: 394 Comm: CPU 1/KVM Not tainted 6.12.117-pvsched-lab+ #1
[  503.944943] RIP: 0010:exc_page_fault+0x14/0x134
[  503.945587] Code: 41 54 55 48 89 f5 53 48 89 fb 41 0f 20 d4 <65> 48 8b 05 32 67 b1 7e 48 8b
[  503.945749] RSP: 0018:ffffc900001dc000 EFLAGS: 00000093
[  503.946102] RAX: ffffc900001dc028 RBX: ffffc900001dc028 RCX: ffffffff816014f9
[  503.946119] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffc900001dc028
[  503.946132] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[  503.946143] R10: 0000000000000000 R11: 0000000000000000 R12: 000000000002aec0
[  503.946154] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[  503.946218] FS:  000000003237a3c0(0000) GS:ffff88813cc00000(0000) knlGS:ffff88800f700000
[  503.946241] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  503.946253] CR2: ffffc900001dbff8 CR3: 0000000101fb2000 CR4: 00000000007506b0
[  503.946299] PKRU: 55555554
[  503.946356] Call Trace:
[  503.946850]  <TASK>
[  503.947219]  asm_exc_page_fault+0x26/0x30
"""
IRQ_AT_VMRUN_RETURN_NESTED = """\
[  503.947375] RIP: 0010:exc_page_fault+0x14/0x134
[  503.947393] Code: 41 54 55 48 89 f5 53 48 89 fb 41 0f 20 d4 <65> 48 8b 05 32 67 b1 7e 48 8b
[  503.947400] RSP: 0018:ffffc900001dc0d0 EFLAGS: 00000093
[  503.947412] RAX: ffffc900001dc0f8 RBX: ffffc900001dc0f8 RCX: ffffffff816014f9
[  503.947418] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffc900001dc0f8
[  503.947424] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[  503.947428] R10: 0000000000000000 R11: 0000000000000000 R12: 000000000002aec0
[  503.947433] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[  503.947468]  ? restore_regs_and_return_to_kernel+0x1b/0x1b
[  503.947526]  asm_exc_page_fault+0x26/0x30
"""
IRQ_AT_VMRUN_RETURN_TAIL = """\
[  503.953337] RIP: 0010:irqentry_enter+0x10/0x26
[  503.953349] Code: 1f 00 f6 87 88 00 00 00 03 74 03 31 c0 c3 <65> 48 8b 05 28 65 b1 7e f6 40
[  503.953354] RSP: 0018:ffffc900001dfc28 EFLAGS: 00000046
[  503.953360] RAX: ffffc900001dfc48 RBX: ffffc900001dfc48 RCX: ffffffff816014f9
[  503.953365] RDX: 0000000000000000 RSI: 0000000000000000 RDI: ffffc900001dfc48
[  503.953370] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[  503.953374] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000000
[  503.953378] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[  503.953387]  ? restore_regs_and_return_to_kernel+0x1b/0x1b
[  503.953411]  sysvec_apic_timer_interrupt+0xe/0x7c
[  503.953426]  asm_sysvec_apic_timer_interrupt+0x1a/0x20
[  503.953437] RIP: 0010:__svm_vcpu_run+0xa0/0x1ed
[  503.953449] Code: 60 01 00 00 0f 1f 80 00 00 00 00 0f 01 d8 <58> 48 89 88 30 01 00 00 48 89
[  503.953455] RSP: 0018:ffffc900001dfcf8 EFLAGS: 00000246
[  503.953462] RAX: 000000010123a000 RBX: 0000000000000000 RCX: 0000000000000000
[  503.953466] RDX: 000000003237a6c8 RSI: 000000003237bb50 RDI: 00007fffaea40b70
[  503.953477] RBP: 0000000000000001 R08: 0000000000000000 R09: 0000000000000000
[  503.953482] R10: 0000000000448260 R11: 0000000000000000 R12: 000000003237bb08
[  503.953487] R13: 00007fffaea40b70 R14: 00000000005eaeb0 R15: 0000000000000000
[  503.953580]  ? svm_vcpu_enter_exit+0x25/0x37
[  503.953595]  ? svm_vcpu_run+0x347/0x645
[  503.953612]  ? kvm_arch_vcpu_ioctl_run+0x12e0/0x16ce
[  503.953626]  ? kvm_vm_ioctl_irq_line+0x27/0x33
[  503.953637]  ? _copy_to_user+0x21/0x28
[  503.953648]  ? kvm_vm_ioctl+0xd9d/0x104b
[  503.953658]  ? tick_do_update_jiffies64+0xb9/0xb9
[  503.953670]  ? update_load_avg+0x51/0xa5
[  503.953684]  ? kvm_vcpu_ioctl+0x1a5/0x718
[  503.953696]  ? __raw_spin_unlock+0xd/0x1d
[  503.953723]  ? sched_balance_update_blocked_averages+0x98/0xa6
[  503.953736]  ? vfs_ioctl+0x1f/0x2c
[  503.953747]  ? __x64_sys_ioctl+0x897/0x8b8
[  503.953758]  ? kvm_on_user_return+0x58/0x6a
[  503.953771]  ? fire_user_return_notifiers+0x4f/0x60
[  503.953784]  ? do_syscall_64+0x4e/0xa4
[  503.953795]  ? entry_SYSCALL_64_after_hwframe+0x4b/0x53
[  503.953833]  </TASK>
[  503.953873] Modules linked in:
[  503.954145] ---[ end trace 0000000000000000 ]---
[  503.954428] Kernel panic - not syncing: Fatal exception in interrupt
[  503.955380] Kernel Offset: disabled
"""
IRQ_AT_VMRUN_RETURN_OOPS = IRQ_AT_VMRUN_RETURN_HEAD + IRQ_AT_VMRUN_RETURN_NESTED * 70 + IRQ_AT_VMRUN_RETURN_TAIL
SYSTEM_MAP_IRQ_AT_VMRUN_RETURN = "ffffffff81512a00 t __svm_vcpu_run\nffffffff81512bed t __svm_sev_es_vcpu_run\n"
VMRUN_RETURN_6615 = 0xFFFFFFFF81512AA0

# The planted flaky-oops-at-registration defect (mutants-20261205T214002Z): a NULL read in
# the series' MSR write, in a vCPU thread, which took its level-2 guest with it.
PLANTED_MSR_OOPS = """\
[   35.057694] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   35.059035] #PF: supervisor read access in kernel mode
[   35.060003] #PF: error_code(0x0000) - not-present page
[   35.061304] PGD 0 P4D 0
[   35.062171] Oops: Oops: 0000 [#1] PREEMPT SMP
[   35.062690] CPU: 0 UID: 0 PID: 105 Comm: CPU 1/KVM Not tainted 6.12.117-pvsched-lab+ #1
[   35.063104] RIP: 0010:kvm_pvsched_set_msr+0x20d/0x36d
[   35.063834] RSP: 0018:ffffc90000227cf0 EFLAGS: 00000246
[   35.063966] RAX: 0000000000000000 RBX: ffff888104811800 RCX: 0000000000000428
[   35.064816] CR2: 0000000000000000 CR3: 0000000103f21000 CR4: 00000000007506b0
[   35.065068] Call Trace:
[   35.065731]  <TASK>
[   35.066241]  kvm_set_msr_ignored_check+0x15f/0x1e2
[   35.066697]  kvm_emulate_wrmsr+0x39/0x96
[   35.066956]  kvm_arch_vcpu_ioctl_run+0x1441/0x16ce
[   35.067088]  kvm_vcpu_ioctl+0x1a5/0x718
[   35.067857]  vfs_ioctl+0x1f/0x2c
[   35.068104]  __x64_sys_ioctl+0x897/0x8b8
[   35.068342]  do_syscall_64+0x4e/0xa4
[   35.068399]  entry_SYSCALL_64_after_hwframe+0x4b/0x53
[   35.069649]  </TASK>
[   35.069711] Modules linked in:
[   35.069884] CR2: 0000000000000000
[   35.070078] ---[ end trace 0000000000000000 ]---
"""

# The unmodified tree of mutants-20261206T003549Z, level 1 (lines 360-408 of its dmesg): the
# kexec guest's vCPU thread warned of a raised hardirq count in KVM_RUN's FPU swap, then
# scheduled at the next syscall's end with an NMI's count (0x110000) never taken off.
NMI_LEFT_AFTER_BH_WARNING = """\
[   92.449928] kvm: kvm [120]: vcpu0, guest rIP: 0xffffffff81005692 Unhandled WRMSR(0xc0010007) = 0xffff
[   95.962605] LAB-LEVEL2-BEGIN level2-console-kexec.log
[  104.282089] kvm: kvm [130]: vcpu0, guest rIP: 0xffffffff81005692 Unhandled WRMSR(0xc0010007) = 0xffff
[  105.952112] ------------[ cut here ]------------
[  105.952297] WARNING: CPU: 1 PID: 134 at kernel/softirq.c:387 __local_bh_enable_ip+0x16/0x5a
[  105.952598] Modules linked in:
[  105.953899] CPU: 1 UID: 0 PID: 134 Comm: CPU 0/KVM Not tainted 6.12.117-pvsched-lab+ #1
[  105.954231] RIP: 0010:__local_bh_enable_ip+0x16/0x5a
[  105.954334] Code: 00 65 f7 05 3b 84 f5 7e 00 00 0f 00 74 02 <0f> 0b ff ce f7 de 65 01 35 2c
[  105.954400] RSP: 0018:ffffc900003fbd50 EFLAGS: 00000206
[  105.954439] RAX: 0000000000000001 RBX: ffff888102658000 RCX: ffff888102658c00
[  105.954457] RDX: 0000000000000000 RSI: 0000000000000200 RDI: ffffffff8109d32d
[  105.954472] RBP: ffffc900003ed000 R08: ffffffff8101e8fb R09: 0000000000000001
[  105.954499] R10: 0000000000000001 R11: 0000000000000000 R12: 0000000000000000
[  105.954517] R13: ffffc900003ed000 R14: 0000000000000000 R15: 0000000000000000
[  105.954595] FS:  00007fc85b6fd6c0(0000) GS:ffff88813cd00000(0000) knlGS:0000000000000000
[  105.954619] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[  105.954636] CR2: ffff888002400000 CR3: 0000000103dda000 CR4: 00000000007506b0
[  105.954691] PKRU: 55555554
[  105.954752] Call Trace:
[  105.955401]  <TASK>
[  105.955517]  fpu_swap_kvm_fpstate+0xa5/0xae
[  105.955899]  kvm_put_guest_fpu+0x17/0x26
[  105.955941]  kvm_arch_vcpu_ioctl_run+0x15fd/0x16ce
[  105.955974]  ? do_iter_readv_writev+0xda/0x119
[  105.956005]  ? update_cfs_rq_load_avg+0x15d/0x16c
[  105.956031]  kvm_vcpu_ioctl+0x1a5/0x718
[  105.956054]  ? set_next_task_fair+0x1a0/0x1cb
[  105.956074]  ? __raw_spin_unlock+0xd/0x1d
[  105.956115]  ? finish_task_switch.isra.0+0x12d/0x1d6
[  105.956150]  vfs_ioctl+0x1f/0x2c
[  105.956172]  __x64_sys_ioctl+0x897/0x8b8
[  105.956191]  ? restore_fpregs_from_fpstate+0x27/0x47
[  105.956211]  ? kvm_on_user_return+0x58/0x6a
[  105.956230]  ? fire_user_return_notifiers+0x4f/0x60
[  105.956253]  do_syscall_64+0x4e/0xa4
[  105.956278]  entry_SYSCALL_64_after_hwframe+0x4b/0x53
[  105.956412] RIP: 0033:0x7fc86147bd6b
[  105.956697] Code: 24 20 48 89 44 24 10 b8 10 00 00 00 0f 05 <89> c2 3d 00 f0 ff ff 77 1c 48
[  105.956712] RSP: 002b:00007fc85b6fc530 EFLAGS: 00000246 ORIG_RAX: 0000000000000010
[  105.956810] RAX: ffffffffffffffda RBX: 000000000000ae80 RCX: 00007fc86147bd6b
[  105.956821] RDX: 0000000000000000 RSI: 000000000000ae80 RDI: 0000000000000011
[  105.956829] RBP: 0000555f186ad6f0 R08: 0000555f0c3da290 R09: 00000000000000ff
[  105.956839] R10: 0000000000000005 R11: 0000000000000246 R12: 0000000000000000
[  105.956847] R13: 0000000000000001 R14: 0000000000000000 R15: 0000000000000000
[  105.956904]  </TASK>
[  105.956953] ---[ end trace 0000000000000000 ]---
[  105.957639] BUG: scheduling while atomic: CPU 0/KVM/134/0x00110001
[  105.957671] Modules linked in:
"""

# The same moment in level 2 (level2-console-kexec.log, lines 2-21): the kexec'd guest's
# page-fault entry faulted on its read of current at ffff88813cd2aec0, level 1's CPU 1 GS
# base (ffff88813cd00000, printed by level 1's warning above) + pcpu_hot (0x2aec0).
GUEST_WITH_HOST_GS_OOPS = """\
[    2.241833] BUG: #DF stack guard page was hit at 0000000061446e41 (stack is 000000005a09d9ea..00000000546cafe3)
[    2.241833] Oops: stack guard page: 0000 [#1] PREEMPT SMP
[    2.241833] CPU: 1 UID: 0 PID: 29 Comm: kworker/u8:1 Not tainted 6.12.117-pvsched-lab+ #1
[    2.241833] Workqueue: async async_run_entry_fn
[    2.241833] RIP: 0010:exc_page_fault+0x14/0x134
[    2.241833] Code: 41 54 55 48 89 f5 53 48 89 fb 41 0f 20 d4 <65> 48 8b 05 32 67 b1 7e 48 8b
[    2.241833] RSP: 0000:fffffe0000044020 EFLAGS: 00000093
[    2.241833] RAX: fffffe0000044048 RBX: fffffe0000044048 RCX: ffffffff816014f9
[    2.241833] RDX: 0000000000000000 RSI: 0000000000000000 RDI: fffffe0000044048
[    2.241833] RBP: 0000000000000000 R08: 0000000000000000 R09: 0000000000000000
[    2.241833] R10: 0000000000000000 R11: 0000000000000000 R12: ffff88813cd2aec0
[    2.241833] R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000
[    2.241833] FS:  0000000000000000(0000) GS:ffff88800f700000(0000) knlGS:0000000000000000
[    2.241833] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[    2.241833] CR2: fffffe0000043ff8 CR3: 0000000001e3f000 CR4: 00000000007106b0
[    2.241833] PKRU: 55555554
[    2.241833] Call Trace:
[    2.241833]  <#DF>
[    2.241833]  asm_exc_page_fault+0x26/0x30
[    2.241833] RIP: 0010:exc_page_fault+0x14/0x134
"""

# The planted destroy-keeps-registration defect (mutants-20261206T003549Z, level1-console.log
# lines 338-379): the series' own assertion that a VM is destroyed with no vCPU registered.
VM_DESTROYED_WITH_VCPUS_WARNING = """\
[   63.169121] ------------[ cut here ]------------
[   63.169340] WARNING: CPU: 0 PID: 101 at arch/x86/kvm/pvsched.c:827 kvm_pvsched_vm_destroy+0x27/0x7a
[   63.170263] Modules linked in:
[   63.171780] CPU: 0 UID: 0 PID: 101 Comm: qemu-system-x86 Not tainted 6.12.117-pvsched-lab+ #1
[   63.172990] RIP: 0010:kvm_pvsched_vm_destroy+0x27/0x7a
[   63.173155] Code: 53 40 48 8d 43 40 48 89 fd 48 39 c2 74 02 <0f> 0b 48 c7 c7 c0 da e3 81 e8
[   63.174775] RSP: 0018:ffffc9000020bcf8 EFLAGS: 00000283
[   63.175351] RAX: ffff888101e13e20 RBX: ffff888101e13de0 RCX: 0000000000000000
[   63.175445] RDX: ffff888101c05000 RSI: 0000000000000001 RDI: ffffc90000185000
[   63.175526] RBP: ffffc90000185000 R08: 0000000000000238 R09: ffffc9000020bc90
[   63.175607] R10: 0000000000000001 R11: 00000000000007e0 R12: ffffc90000186128
[   63.175686] R13: dead000000000100 R14: ffff88810038e6f0 R15: 0000000000000001
[   63.175822] FS:  0000000000000000(0000) GS:ffff88813cc00000(0000) knlGS:0000000000000000
[   63.176643] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[   63.177319] CR2: 00007f2973da4ed0 CR3: 0000000101ef3000 CR4: 00000000007506b0
[   63.178561] PKRU: 55555554
[   63.178932] Call Trace:
[   63.179478]  <TASK>
[   63.179777]  kvm_arch_destroy_vm+0xea/0x13b
[   63.179927]  kvm_put_kvm+0x147/0x239
[   63.179998]  kvm_vm_release+0x1e/0x22
[   63.180078]  __fput+0x10a/0x1c2
[   63.180136]  task_work_run+0x6b/0x7c
[   63.180202]  do_exit+0x356/0x827
[   63.180269]  ? update_cfs_rq_load_avg+0x15d/0x16c
[   63.180345]  do_group_exit+0x7d/0x7d
[   63.180399]  get_signal+0x5bc/0x5dc
[   63.180461]  ? rcu_segcblist_enqueue+0x16/0x35
[   63.180534]  arch_do_signal_or_restart+0x2f/0x153
[   63.180613]  syscall_exit_to_user_mode+0x4e/0x73
[   63.180684]  do_syscall_64+0x5a/0xa4
[   63.181134]  entry_SYSCALL_64_after_hwframe+0x4b/0x53
[   63.181814] RIP: 0033:0x7f2973d75829
[   63.182079] Code: Unable to access opcode bytes at 0x7f2973d757ff.
[   63.182149] RSP: 002b:00007f29731bf668 EFLAGS: 00000246 ORIG_RAX: 00000000000000ca
[   63.182303] RAX: fffffffffffffe00 RBX: 000055765e2107a8 RCX: 00007f2973d75829
[   63.183253] RDX: 00000000ffffffff RSI: 0000000000000000 RDI: 000055765e2107a8
[   63.183367] RBP: 000055765e2107a8 R08: 0000000000000000 R09: 0000000000000000
[   63.183565] R10: 0000000000000000 R11: 0000000000000246 R12: 0000000000000000
[   63.183645] R13: 000055765db9b485 R14: 00007ffe6fc220d0 R15: 00007f29729c0000
[   63.183816]  </TASK>
[   63.183889] ---[ end trace 0000000000000000 ]---
"""

# Stress run 20261206T033635Z-35e4 (debug profile), hostile part, policy round 0: the lost round's
# line as level 1 printed it. CR3 and RSP are level 1's own, far past the guest's 256 MiB; level 1
# then reported a KASAN use-after-free in putname and oopsed in qlist_free_all with that RSP in R15.
GUEST_IN_HOST_STATE_LINE = (
    "stress hostile: lost round: policy round 0: guest ended before its load (QEMU exit 0; KVM saw a shutdown exit "
    "(triple fault): vCPU 0 shutdown at 0xffffffff820015dd (error_entry+0xd), its state rip=0xffffffff820015dd "
    "rsp=0xffff8881045c8000 cr2=0x24 cr3=0x108f69000 cpl=0 idt=0xfffffe0000000000 tr=0x0 exitintinfo=0x80000b0e "
    "exitinfo1=0x0 ncr3=0x10490a000; its page walk: cr2 0x24 not read, rip 0xffffffff820015dd not read, rsp "
    "0xffff8881045c8000 not read, tr 0x0 not read, the IDT's gate 14 0xfffffe00000000e0 not read, the IDT's #DF gate "
    "0xfffffe0000000080 not read; level 1's nested tables: 4 of 4 words differ: 0x108f69000: nested mapped at "
    "0x8000108f69000, not read, 0x108f69ff8: nested mapped at 0x8000108f69ff8, not read, 0x108f69888: nested mapped at "
    "0x8000108f69888, not read, 0x108f69fe0: nested mapped at 0x8000108f69fe0, not read) (console "
    "/tmp/st1/results/20261206T033635Z-35e4/vm/level2-console-stress-hostile-policy-0.log); measured again\n"
)
