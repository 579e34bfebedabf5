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


# Host unit tests (Check) of the loader's pure parts: ELF validation on the
# real kernel image and corrupted copies, and the memory-map conversion.
LOADER_TEST := $(BUILD)/tests/boot/loader_test
LOADER_TEST_SRCS := tests/boot/loader_test.c boot/elf_check.c boot/memmap.c
LOADER_TEST_CFLAGS := $(CSTD) $(WARN) -O1 -g -I. -I$(EFI_INC) -I$(EFI_INC)/x86_64 \
	$(shell pkg-config --cflags check 2>/dev/null)

$(LOADER_TEST): $(LOADER_TEST_SRCS) boot/elf_check.h boot/elf64.h boot/memmap.h boot/bootinfo.h
	@mkdir -p $(dir $@)
	@echo "  CC(host) $@"
	$(Q)$(CC) $(LOADER_TEST_CFLAGS) $(LOADER_TEST_SRCS) -o $@ $$(pkg-config --libs check)

.PHONY: test-loader
test-loader: $(LOADER_TEST) $(KERNEL_ELF)
	@echo "== loader unit tests (host, Check) =="
	$(Q)KERNEL_ELF=$(KERNEL_ELF) $(LOADER_TEST)

TEST_TARGETS += test-loader
TEST_TARGETS += test-boot
