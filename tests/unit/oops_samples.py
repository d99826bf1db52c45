"""Console text of real failures, shared by the tests that recognise them."""

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
