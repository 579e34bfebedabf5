# tests/boot.mk: the QEMU boot cases (`make test-boot`, part of `make test`).
#
# tests/boot/run-cases boots one ESP per case (build/boot-cases/<case>/):
# the default self-test run, the fault and panic paths, a missing,
# truncated and non-x86-64 kernel.elf, a bad command line and a machine
# with memory above 4 GiB. Each boot is bounded by BOOT_CASE_TIMEOUT.

BOOT_CASE_TIMEOUT ?= 120

.PHONY: test-boot
test-boot: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== boot cases (QEMU, OVMF, SMP=$(SMP), MEM=$(MEM)) =="
	$(Q)nice tests/boot/run-cases --build $(BUILD)/boot-cases --loader $(LOADER_EFI) \
		--kernel $(KERNEL_ELF) --timeout $(BOOT_CASE_TIMEOUT) --smp $(SMP) --mem $(MEM)


# Host unit tests (Check) of the loader's pure parts: ELF validation on the
# real kernel image and corrupted copies, and the memory-map conversion.
LOADER_TEST := $(BUILD)/tests/boot/loader_test
LOADER_TEST_SRCS := tests/boot/loader_test.c boot/elf_check.c boot/memmap.c
LOADER_TEST_CFLAGS := $(CSTD) $(WARN) -O1 -g -I. -I$(EFI_INC) -I$(EFI_INC)/x86_64 \
	$(shell pkg-config --cflags check 2>/dev/null)

$(LOADER_TEST): $(LOADER_TEST_SRCS) boot/elf_check.h boot/elf64.h boot/memmap.h boot/bootinfo.h \
		tests/lib/xorshift.h tests/lib/check_runner.h
	@mkdir -p $(dir $@)
	@echo "  CC(host) $@"
	$(Q)$(CC) $(LOADER_TEST_CFLAGS) $(LOADER_TEST_SRCS) -o $@ $$(pkg-config --libs check)

.PHONY: test-loader
test-loader: $(LOADER_TEST) $(KERNEL_ELF)
	@echo "== loader unit tests (host, Check) =="
	$(Q)KERNEL_ELF=$(KERNEL_ELF) $(LOADER_TEST)

TEST_TARGETS += test-loader
TEST_TARGETS += test-boot

# ---- kmem: the heap's boot cases (`make test-boot-kmem`) ----
# Each case boots its own ESP under build/boot-cases/kmem/<case>/ and
# checks qemu-run's status (0 pass, 2 panic) and the console log (grep -E):
#   kmem_arena     MEM=1G: bad arena= values warn and fall back, the largest
#                  good one (8T) wins; a 384 MiB object;
#                  the heap table and frame allocator summary are printed
#   kmem_oom       MEM=128M: allocate until NULL, free, again (no panic)
#   double_free_*, invalid/misaligned/foreign_free_selftest: the kmalloc
#                  panic + backtrace for a bad kfree wherever the object
#                  sits (kernel/kmalloc_misuse_selftests.c)
#   released_page_selftest: the page-fault diagnosis for a released page
#   heap_nx_selftest: calling into the heap faults (NX) with its diagnosis
#   kmem_kmemleak  kmemleak=on: exactly the planted leaks (small, large,
#                  a two-object cycle) with their allocation sites and
#                  backtraces, one more suppressed by its caller's name, not the
#                  objects a static or another CPU's stack keeps; 20 scans
#                  while every CPU allocates from its timer interrupt
#                  report nothing; a CPU
#                  that will not stop makes the scan give up cleanly; the
#                  final scan after the tests finds nothing
#   kmem_idle_release  ~64 MiB allocated and freed, no trim: the timer
#                  ticks give the frames back within 2 s (release by age)
#   kmem_mmdebug   the kmalloc self-tests on a kernel whose core is built
#                  with -DMM_DEBUG=2
#   kmem_mesh      kmemleak=on: the meshing self-tests (kernel/
#                  kmesh_selftests.c), the leak scan of a meshed heap
#                  (no false report, both hidden objects found), and
#                  kmalloc_dump's mesh lines
#   mesh_*_selftest  double and interior free through either half of a
#                  meshed pair: the misuse panic, and its pointer is the
#                  one the test printed ("mesh_misuse: expect ...")
#   (kmem_arena and kmem_mesh run with kfence=0: "0 frames committed"
#   at boot, and 64 spans of 256 B objects, count what sampling would
#   change: its records, an object served from the pool)
#   kfence_*_selftest  kfence=10: 64 B objects overflowed by one byte,
#                  read one byte before their start, read and written
#                  after their free, in a loop until a guarded sample
#                  stops it: kfence's report line, the fault's panic; a
#                  sample freed twice or at +8: kfree's misuse panic
# A pattern starting with ! must NOT match the log.
KMEM_CASES := $(BUILD)/boot-cases/kmem
# Extra QEMU arguments as `make run` uses them (kernel/build.mk, if set).

# The same kernel linked against the core built with -DMM_DEBUG=2 (internal
# assertions, validation after span operations, lock-order checks), so the
# kmalloc self-tests also run with the core checking itself on the real
# port. Linked like the kernel (kernel_link, kernel/build.mk).
KMEM_DEBUG := $(BUILD)/kernel-mmdebug
KMEM_DEBUG_LIB := $(KMEM_DEBUG)/libkmalloc.a
KMEM_DEBUG_ELF := $(KMEM_DEBUG)/kernel.elf
KMEM_DEBUG_MM_OBJS := $(MM_SRCS:%.c=$(KMEM_DEBUG)/%.o)

$(KMEM_DEBUG)/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(MM_KERNEL_CFLAGS) -DMM_DEBUG=2 -c $< -o $@

$(KMEM_DEBUG_LIB): $(KMEM_DEBUG_MM_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(eval $(call kernel_link,$(KMEM_DEBUG_ELF),$(KMEM_DEBUG),$(KMEM_DEBUG_LIB),(core with -DMM_DEBUG=2)))

-include $(KMEM_DEBUG_MM_OBJS:.o=.d)

.PHONY: test-boot-kmem
test-boot-kmem: $(LOADER_EFI) $(KERNEL_ELF) $(KMEM_DEBUG_ELF)
	@echo "== kmem boot cases (QEMU, OVMF, SMP=$(SMP)) =="
	$(Q)passed=0; failed=0; \
	kcase() { \
	    name=$$1 want=$$2 cmem=$$3 kelf=$$4 cmd=$$5; shift 5; \
	    d=$(KMEM_CASES)/$$name; rm -rf $$d; mkdir -p $$d/esp/EFI/BOOT; \
	    cp $(LOADER_EFI) $$d/esp/EFI/BOOT/BOOTX64.EFI; cp $$kelf $$d/esp/kernel.elf; \
	    printf '%s\n' "$$cmd" > $$d/esp/cmdline.txt; start=$$(date +%s); \
	    verdict=$$(nice scripts/qemu-run --esp $$d/esp --smp $(SMP) --mem $$cmem \
	        --timeout $(BOOT_CASE_TIMEOUT) --log $$d/console.log --quiet -- $(QEMU_ACCEL)); got=$$?; \
	    why=; [ "$$got" = "$$want" ] || why="exit status $$got, expected $$want"; \
	    for pat in "$$@"; do \
	        case "$$pat" in \
	        '!'*) ! grep -a -q -E -- "$${pat#!}" $$d/console.log || why="$${why:+$$why; }log has /$${pat#!}/";; \
	        *) grep -a -q -E -- "$$pat" $$d/console.log || why="$${why:+$$why; }log lacks /$$pat/";; \
	        esac; \
	    done; \
	    if [ -z "$$why" ]; then passed=$$((passed + 1)); \
	        echo "boot case $$name: ok ($$(($$(date +%s) - start))s; $${verdict#qemu-run: verdict: })"; \
	    else failed=$$((failed + 1)); \
	        echo "boot case $$name: FAILED: $$why ($$(($$(date +%s) - start))s)"; \
	        tail -n 25 $$d/console.log | tr -d '\r'; fi; \
	}; \
	kcase kmem_arena 0 1G $(KERNEL_ELF) "arena=1K arena=banana arena=8193G arena=8T kfence=0 ktest=kmalloc_classes,kmalloc_frames_agree,kmalloc_large" \
	    "^mem: warning: arena=1K is outside 16 MiB..8 TiB; using the default 64 GiB" \
	    "^mem: warning: arena=banana is not a size" "^mem: warning: arena=8193G is outside" \
	    '^mem: kmalloc arena 8192 GiB \(arena=\), region 0xffffa00000000000-0xffffa[89][0-9a-f]+ reserved, 0 frames committed' \
	    '^kmalloc_large: objects up to 384 MiB' \
	    '^ktest: 3 passed, 0 failed' '^kmalloc: class +size +allocs' '^kmalloc: committed +[0-9]+' \
	    '^kmem: [0-9]+ data frames' '^pmm: frames: free [0-9]+, used [0-9]+' \
	    '^kmem: frame allocator bookkeeping [0-9]+ bytes for [0-9]+ MiB managed = 0\.[0-4][0-9][0-9]%'; \
	kcase kmem_oom 0 128M $(KERNEL_ELF) "ktest=kmalloc_oom" \
	    '^kmalloc_oom: small objects: [1-9][0-9]* objects until NULL' \
	    '^kmalloc_oom: 1 MiB objects: [1-9][0-9]* objects until NULL' \
	    '^ktest: kmalloc_oom ok' '^ktest: 1 passed, 0 failed'; \
	misuse() { kcase $$1 2 $(MEM) $(KERNEL_ELF) "ktest=$$1" \
	    "^PANIC: kmalloc: $$2: $$3" '^Backtrace:' '#[0-9]+ +0xffffffff[0-9a-f]+ (kfree[a-z_]*|mlarge_free)\+0x' \
	    "ktest_fn_$$1\\+0x" \
	    "^ktest: $$1 FAILED: panic: kmalloc: $$2" '^ktest: 0 passed, 1 failed'; }; \
	heap='0xffffa0[0-9a-f]+'; \
	misuse double_free_selftest "double free" "$$heap"; \
	misuse double_free_other_cpu_selftest "double free" "$$heap"; \
	misuse double_free_transfer_selftest "double free" "$$heap"; \
	misuse double_free_flushed_selftest "double free" "$$heap"; \
	misuse double_free_trimmed_selftest "double free" "$$heap"; \
	misuse double_free_large_selftest "double free" "$$heap"; \
	misuse invalid_free_selftest "invalid free" "$$heap"; \
	misuse misaligned_free_selftest "invalid free" "$$heap"; \
	misuse foreign_free_selftest "invalid free" '0xffffffff80[0-9a-f]+'; \
	misuse trimmed_chunk_free_selftest "invalid free" "$$heap"; \
	kcase kmem_cache_wrong_cache_selftest 2 $(MEM) $(KERNEL_ELF) "ktest=kmem_cache_wrong_cache_selftest" \
	    "^kmalloc: wrong cache: $$heap \(object of 'inode', freed to 'dentry'\)" \
	    "^PANIC: kmalloc: wrong cache: $$heap" '^Backtrace:' '#[0-9]+ +0xffffffff[0-9a-f]+ kfree_slow\+0x' \
	    "ktest_fn_kmem_cache_wrong_cache_selftest\\+0x" '^ktest: 0 passed, 1 failed'; \
	kcase kmem_cache 0 $(MEM) $(KERNEL_ELF) "ktest=kmem_cache_basic,kmem_cache_smp,kmem_cache_destroy_live" \
	    '^ktest: kmem_cache_basic ok' '^kmem_cache_smp: [0-9]+ CPUs, [1-9][0-9]* nodes from timer interrupts' \
	    "^kmem_cache_destroy: 'ktest_live': 3 objects remaining: $$heap $$heap $$heap" \
	    '^ktest: 3 passed, 0 failed'; \
	kcase released_page_selftest 2 $(MEM) $(KERNEL_ELF) "ktest=released_page_selftest" \
	    '^page fault: kmalloc arena: access to released page 0xffffa0[0-9a-f]+000' \
	    'CR2 ffffa0[0-9a-f]+000' '^Backtrace:' '#0 +0xffffffff[0-9a-f]+ ktest_fn_released_page_selftest\+0x' \
	    '^ktest: released_page_selftest FAILED: panic'; \
	kcase heap_nx_selftest 2 $(MEM) $(KERNEL_ELF) "ktest=heap_nx_selftest" \
	    '^page fault: kmalloc arena: instruction fetch of committed heap page 0xffffa0[0-9a-f]+000' \
	    'error code 0x11' '^Backtrace:' '^ktest: heap_nx_selftest FAILED: panic'; \
	kfcase() { kcase $$1 2 $(MEM) $(KERNEL_ELF) "kfence=10 ktest=$$1" "$$2" \
	    '^page fault: kfence: guarded sampling caught the access above' '^Backtrace:' \
	    "^ktest: $$1 FAILED: panic"; }; \
	kfobj='0xffffa0[0-9a-f]+'; \
	kfcase kfence_overflow_selftest "^kfence: out-of-bounds write at $$kfobj \(1 byte right of 64-byte object $$kfobj allocated at overflow_loop\+0x[0-9a-f]+\)"; \
	kfcase kfence_underflow_selftest "^kfence: out-of-bounds read at $$kfobj \(1 byte left of 64-byte object $$kfobj allocated at underflow_loop\+0x[0-9a-f]+\)"; \
	kfcase kfence_uaf_read_selftest "^kfence: use-after-free read at $$kfobj \(object $$kfobj freed at uaf_loop\+0x[0-9a-f]+\)"; \
	kfcase kfence_uaf_write_selftest "^kfence: use-after-free write at $$kfobj \(object $$kfobj freed at uaf_loop\+0x[0-9a-f]+\)"; \
	kfmisuse() { kcase $$1 2 $(MEM) $(KERNEL_ELF) "ktest=$$1" \
	    "^PANIC: kmalloc: $$2: $$kfobj" '^Backtrace:' '#[0-9]+ +0xffffffff[0-9a-f]+ kfence_free\+0x' \
	    "ktest_fn_$$1\\+0x" "^ktest: $$1 FAILED: panic: kmalloc: $$2" '^ktest: 0 passed, 1 failed'; }; \
	kfmisuse kfence_double_free_selftest "double free"; \
	kfmisuse kfence_invalid_free_selftest "invalid free"; \
	kcase kmem_kmemleak 0 $(MEM) $(KERNEL_ELF) "kmemleak=on ktest=kmemleak_planted,kmemleak_irq_alloc,kmemleak_stop_timeout" \
	    '^kmemleak: 0x[0-9a-f]+ size 64 \[allocated at plant_small_leak\+0x[0-9a-f]+\]' \
	    '^kmemleak:   backtrace:' '^kmemleak:     \[<0x[0-9a-f]+>\] plant_small_leak\+0x[0-9a-f]+' \
	    '^kmemleak:     \[<0x[0-9a-f]+>\] (scan_and_check|hold_on_ap_stack)\+0x[0-9a-f]+' \
	    '^kmemleak: suppressed 1 leak, 96 bytes: plant_suppressed_caller' \
	    '!allocated at plant_suppressed_leak' \
	    '^kmemleak_irq_alloc: 20 scans while [0-9]+ CPU\(s\) allocated from their timer interrupts \([1-9][0-9]* objects, [0-9]+ reached in all\): 0 leaks' \
	    '^ktest: kmemleak_irq_alloc ok' \
	    '^kmemleak: 0x[0-9a-f]+ size 65536 \[allocated at plant_large_leak\+0x[0-9a-f]+\]' \
	    '^kmemleak: 0x[0-9a-f]+ size 32 \[allocated at plant_cycle_leak\+0x[0-9a-f]+\]' \
	    '^kmemleak: 4 leaks, 65664 bytes \([0-9]+ live objects reached, [0-9]+ KiB scanned; world stopped [0-9]+\.[0-9]{3} ms, 3 other CPU\(s\) parked' \
	    '!allocated at (keep_static_ref|hold_on_ap_stack)' \
	    '^kmemleak_planted: exactly the 4 planted objects reported' '^ktest: kmemleak_planted ok' \
	    '^stop_world: cpu 3 \(APIC id 3\) did not park within 1000 ms' \
	    '^stop_world: released the 2 of 3 other CPU\(s\) that parked' \
	    '^kmemleak: could not stop the other CPUs; no scan' '^ktest: kmemleak_stop_timeout ok' \
	    '^ktest: 3 passed, 0 failed' '^kmemleak: 0 leaks, 0 bytes'; \
	kcase kmem_idle_release 0 $(MEM) $(KERNEL_ELF) "ktest=kmalloc_idle_release" \
	    '^kmalloc_idle_release: [0-9]+ frames used, [0-9]+ of them back after [0-9]+ ticks \(no trim\)' \
	    '^ktest: kmalloc_idle_release ok' '^ktest: 1 passed, 0 failed'; \
	kcase kmem_mesh 0 $(MEM) $(KERNEL_ELF) "kmemleak=on kfence=0 ktest=kmesh_fragmented,kmesh_smp,kmesh_leak_scan" \
	    '^kmesh_fragmented: 64 sparse spans of 256 B objects, [1-9][0-9]* meshed now' \
	    '^kmesh_smp: [0-9]+ CPUs, [1-9][0-9]* meshes' \
	    '^kmesh_leak_scan: [0-9]+ survivors, [1-9][0-9]* on aliases: 0 leaks' \
	    '^kmesh_leak_scan: hid [4-8] survivors on aliases and [4-8] on dsts: [0-9]+ leaks \([0-9]+, [0-9]+ of them; 0 others\)' \
	    '^ktest: 3 passed, 0 failed' '^kmemleak: 0 leaks, 0 bytes' \
	    '^kmalloc: meshes +[1-9][0-9]*' '^kmalloc: mesh_spans +[0-9]+' '^kmalloc: mesh_bytes +[0-9]+' \
	    '^kmalloc: mesh_pause_max_ns +[1-9][0-9]*'; \
	meshmisuse() { misuse $$1 "$$2" "$$heap"; \
	    want=$$(tr -d '\r' < $(KMEM_CASES)/$$1/console.log | sed -n 's/^mesh_misuse: expect //p'); \
	    if [ -n "$$want" ] && tr -d '\r' < $(KMEM_CASES)/$$1/console.log | grep -q -x -F -- "$$want"; then \
	        passed=$$((passed + 1)); echo "boot case $$1: panic names the pointer: ok"; \
	    else failed=$$((failed + 1)); echo "boot case $$1: FAILED: no line '$$want'"; fi; }; \
	meshmisuse mesh_double_free_alias_selftest "double free"; \
	meshmisuse mesh_double_free_dst_selftest "double free"; \
	meshmisuse mesh_interior_free_alias_selftest "invalid free"; \
	meshmisuse mesh_interior_free_dst_selftest "invalid free"; \
	kcase kmem_mmdebug 0 $(MEM) $(KMEM_DEBUG_ELF) \
	    "ktest=kmalloc_classes,kmalloc_large,kmalloc_api,kmalloc_frames_agree,kmalloc_trim_returns,kmalloc_commit_atomic,kmalloc_random" \
	    '^ktest: kmalloc_random ok' '^ktest: 7 passed, 0 failed'; \
	echo "kmem boot cases: $$passed passed, $$failed failed"; [ "$$failed" = 0 ]

TEST_TARGETS += test-boot-kmem
# ---- end kmem
# ---- SMP matrix: tests/boot/smp-cases boots SMP=1, 2 and 4 with
# every default ktest on all CPUs, plus a CPU that never answers SIPI and a
# panic on an application processor. QEMU runs all vCPUs on one host
# thread (QEMU_ACCEL in kernel/build.mk says why).
SMP_CASE_TIMEOUT ?= 180

.PHONY: test-smp
test-smp: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== SMP boot matrix (QEMU, OVMF, SMP=1/2/4, MEM=$(MEM)) =="
	$(Q)nice tests/boot/smp-cases --build $(BUILD)/smp-cases --loader $(LOADER_EFI) \
		--kernel $(KERNEL_ELF) --timeout $(SMP_CASE_TIMEOUT) --mem $(MEM) --accel "$(QEMU_ACCEL)"

TEST_TARGETS += test-smp

# ---- scale: `make test-scale`, not part of make test: SMP=64,
# 128 and 255 with every default test and a reduced stress, and a 64 GiB
# guest (tests/boot/smp-cases --set scale). About 15 minutes on a 2-core
# host under TCG; README.md gives the measured times.
.PHONY: test-scale
test-scale: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== scale boot cases (QEMU, OVMF, SMP=64/128/255, MEM=64G) =="
	$(Q)nice tests/boot/smp-cases --set scale --build $(BUILD)/scale-cases --loader $(LOADER_EFI) \
		--kernel $(KERNEL_ELF) --accel "$(QEMU_ACCEL)"
