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
