# tests/boot.mk: the QEMU boot cases (`make test-boot`, part of `make test`).
#
# tests/boot/run-cases boots one ESP per case (build/boot-cases/<case>/):
# the default self-test run, the fault and panic paths, a missing,
# truncated and non-x86-64 kernel.elf, a bad command line and a machine
# with memory above 4 GiB. Each boot is bounded by BOOT_CASE_TIMEOUT.

BOOT_CASE_TIMEOUT ?= 60

.PHONY: test-boot
test-boot: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== boot cases (QEMU, OVMF, SMP=$(SMP), MEM=$(MEM)) =="
	$(Q)nice tests/boot/run-cases --build $(BUILD)/boot-cases --loader $(LOADER_EFI) \
		--kernel $(KERNEL_ELF) --timeout $(BOOT_CASE_TIMEOUT) --smp $(SMP) --mem $(MEM)

TEST_TARGETS += test-boot

# ---- SMP matrix (issue 5): tests/boot/smp-cases boots SMP=1, 2 and 4 with
# every default ktest on all CPUs, plus a CPU that never answers SIPI and a
# panic on an application processor. QEMU runs all vCPUs on one host
# thread (QEMU_ACCEL in kernel/build.mk says why).
SMP_CASE_TIMEOUT ?= 120

.PHONY: test-smp
test-smp: $(LOADER_EFI) $(KERNEL_ELF)
	@echo "== SMP boot matrix (QEMU, OVMF, SMP=1/2/4, MEM=$(MEM)) =="
	$(Q)nice tests/boot/smp-cases --build $(BUILD)/smp-cases --loader $(LOADER_EFI) \
		--kernel $(KERNEL_ELF) --timeout $(SMP_CASE_TIMEOUT) --mem $(MEM) --accel "$(QEMU_ACCEL)"

TEST_TARGETS += test-smp
