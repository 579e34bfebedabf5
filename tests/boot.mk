# tests/boot.mk: the QEMU boot cases (`make test-boot`, `make test-boot-kmem`,
# `make test-smp`, all part of `make test`; `make test-scale`, not) and the
# loader's host tests (`make test-loader`).
#
# Every boot-case target is one runner, scripts/boot-cases, and a case file
# in tests/boot/ (*.cases: each case's command line, CPUs, memory, kernel,
# the qemu-run status it must end with and the console lines it must and
# must not show). The runner boots each case from its own ESP under
# --build/<case>/, each bounded by its timeout, and prints
# "boot case NAME: ok|FAILED ..." per case (scripts/test-repeat counts
# those lines) and "boot cases (SET): N passed, N failed".
#   boot.cases   the default self-test run, the fault and panic paths, a
#                missing, truncated and non-x86-64 kernel.elf, a bad boot
#                info, a bad command line, a triple fault, a hang, memory
#                above 4 GiB (SMP, MEM)
#   kmem.cases   the heap's: arena= and OOM, kfree misuse panics wherever
#                the object sits, the released-page and NX faults,
#                kmemleak, release by age, meshing, guarded sampling, the
#                core built with -DMM_DEBUG=2 (what each checks is listed
#                at its top)
#   smp.cases    SMP=1/2/4/16 with every default test, and the SMP failure
#                paths (per-case CPU counts)
#   scale.cases  SMP=64/128/255 and a 64 GiB guest (make test-scale)

BOOT_CASE_TIMEOUT ?= 120
SMP_CASE_TIMEOUT ?= 180

# What every set shares: the loader, the kernel, the machine as `make run`
# has it (SMP, MEM, and QEMU_ACCEL: all vCPUs on one host thread,
# kernel/build.mk says why). A case file overrides SMP and MEM per case.
BOOT_CASES = nice scripts/boot-cases --loader $(LOADER_EFI) --kernel $(KERNEL_ELF) \
	--smp $(SMP) --mem $(MEM) --accel "$(QEMU_ACCEL)"

.PHONY: test-boot
test-boot: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== boot cases (QEMU, OVMF, SMP=$(SMP), MEM=$(MEM)) =="
	$(Q)$(BOOT_CASES) tests/boot/boot.cases --build $(BUILD)/boot-cases --timeout $(BOOT_CASE_TIMEOUT)

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

# ---- kmem: the heap's boot cases (`make test-boot-kmem`,
# tests/boot/kmem.cases), each under build/boot-cases/kmem/<case>/.
KMEM_CASES := $(BUILD)/boot-cases/kmem

# The same kernel linked against the core built with -DMM_DEBUG=2 (internal
# assertions, validation after span operations, lock-order checks), so the
# kmalloc self-tests also run with the core checking itself on the real
# port (the case kmem_mmdebug). Linked like the kernel (kernel_link,
# kernel/build.mk).
KMEM_DEBUG := $(BUILD)/kernel-mmdebug
KMEM_DEBUG_LIB := $(KMEM_DEBUG)/libkmalloc.a
KMEM_DEBUG_ELF := $(KMEM_DEBUG)/kernel.elf
KMEM_DEBUG_MM_OBJS := $(MM_SRCS:%.c=$(KMEM_DEBUG)/%.o)

$(KMEM_DEBUG)/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(MM_KERNEL_CFLAGS) -DMM_DEBUG=2 -c $< -o $@

$(KMEM_DEBUG_LIB): $(KMEM_DEBUG_MM_OBJS)
	$(archive)

$(eval $(call kernel_link,$(KMEM_DEBUG_ELF),$(KMEM_DEBUG),$(KMEM_DEBUG_LIB),(core with -DMM_DEBUG=2)))

-include $(KMEM_DEBUG_MM_OBJS:.o=.d)

.PHONY: test-boot-kmem
test-boot-kmem: $(LOADER_EFI) $(KERNEL_ELF) $(KMEM_DEBUG_ELF)
	@echo "== kmem boot cases (QEMU, OVMF, SMP=$(SMP)) =="
	$(Q)$(BOOT_CASES) tests/boot/kmem.cases --build $(KMEM_CASES) --timeout $(BOOT_CASE_TIMEOUT) \
		--kernel-as mmdebug=$(KMEM_DEBUG_ELF)

TEST_TARGETS += test-boot-kmem

# ---- SMP matrix (`make test-smp`, tests/boot/smp.cases): SMP=1, 2, 4
# and 16 with every default ktest on all CPUs, plus a CPU that never
# answers SIPI and a panic on an application processor.
.PHONY: test-smp
test-smp: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== SMP boot matrix (QEMU, OVMF, SMP=1/2/4/16, MEM=$(MEM)) =="
	$(Q)$(BOOT_CASES) tests/boot/smp.cases --build $(BUILD)/smp-cases --timeout $(SMP_CASE_TIMEOUT)

TEST_TARGETS += test-smp

# ---- scale: `make test-scale`, not part of make test: SMP=64,
# 128 and 255 with every default test and a reduced stress, and a 64 GiB
# guest (tests/boot/scale.cases). About 15 minutes on a 2-core
# host under TCG; README.md gives the measured times.
.PHONY: test-scale
test-scale: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== scale boot cases (QEMU, OVMF, SMP=64/128/255, MEM=64G) =="
	$(Q)$(BOOT_CASES) tests/boot/scale.cases --build $(BUILD)/scale-cases
