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
