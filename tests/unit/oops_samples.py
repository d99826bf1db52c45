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
