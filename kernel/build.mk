# kernel/build.mk: the kernel ELF (kernel/ + arch/x86_64/), and `make run` / `make debug`.
#
#   *.c, *.S --gcc $(KERNEL_CFLAGS)--> build/kernel/obj/**.o
#   pass 1: objects + empty symbol table          --ld--> kernel.pass1.elf
#   nm -n kernel.pass1.elf | scripts/mksyms        -->    ksyms_table.c (text symbols)
#   pass 2: objects + ksyms_table.o + $(KERNEL_LIBS) --ld--> kernel.elf
# The symbol table sits in .rodata, after .text, so pass 2 moves no
# function; the rule re-runs mksyms on kernel.elf and fails if the table
# would differ. boot/build.mk copies kernel.elf onto the ESP.

KERNEL_SRCS := \
	arch/x86_64/entry.S \
	arch/x86_64/isr.S \
	arch/x86_64/gdt.c \
	arch/x86_64/idt.c \
	arch/x86_64/serial.c \
	arch/x86_64/debugexit.c \
	arch/x86_64/vm.c \
	arch/x86_64/percpu.c \
	arch/x86_64/acpi.c \
	arch/x86_64/apic.c \
	arch/x86_64/tlb.c \
	arch/x86_64/smp.c \
	arch/x86_64/stopworld.c \
	arch/x86_64/trampoline.S \
	arch/x86_64/irq.S \
	kernel/kmain.c \
	kernel/layout.c \
	kernel/printk.c \
	kernel/panic.c \
	kernel/ksyms.c \
	kernel/cmdline.c \
	kernel/ktest.c \
	kernel/string.c \
	kernel/selftests.c \
	kernel/smp_selftests.c
# ---- kmem (issue 4): frame allocator, paging, the heap's port, self-tests
KERNEL_SRCS += \
	$(PMM_SRCS) \
	arch/x86_64/paging.c \
	arch/x86_64/sys.c \
	arch/x86_64/kmemleak.c \
	kernel/mem.c \
	kernel/kmalloc_selftests.c \
	kernel/kmalloc_misuse_selftests.c \
	kernel/smp_kmalloc_selftests.c \
	kernel/scale_selftests.c \
	kernel/kmemleak_selftests.c
# ---- end kmem

KOBJ := $(BUILD)/kernel/obj
KERNEL_OBJS := $(patsubst %,$(KOBJ)/%.o,$(basename $(KERNEL_SRCS)))

# One place for the kernel's C flags; the heap (issue 4) builds with these too.
KERNEL_CFLAGS := -std=c11 -Wall -Wextra -Werror -ffreestanding -nostdlib \
	-mno-red-zone -mcmodel=kernel -fno-pic -mgeneral-regs-only \
	-fno-stack-protector -fno-omit-frame-pointer -O2 -g \
	-fno-asynchronous-unwind-tables -fno-pie -I. -Ikernel
# Static libraries linked into both passes (issue 4: build/x86_64/libkmalloc.a).
# Appended, not assigned: mm/build.mk is included before this fragment and
# may already have added its library.
KERNEL_LIBS +=
# ---- kmem: the heap, unless mm/build.mk already linked it
KMEM_LIB := $(filter-out $(KERNEL_LIBS),$(KMALLOC_KERNEL_LIB))
KERNEL_LIBS += $(KMEM_LIB)
# ---- end kmem
KERNEL_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,arch/x86_64/kernel.ld \
	-Wl,-z,max-page-size=0x1000 -Wl,--build-id=none -Wl,-z,noexecstack

# ---- kmem: files that include mm/sys.h find the port's <sys_arch.h> here
KMEM_OBJS := $(patsubst %,$(KOBJ)/%.o,arch/x86_64/sys arch/x86_64/kmemleak kernel/mem kernel/kmalloc_selftests \
	kernel/kmalloc_misuse_selftests kernel/smp_kmalloc_selftests kernel/scale_selftests)
$(KMEM_OBJS): KERNEL_CFLAGS += -Iarch/x86_64
# ---- end kmem

$(KOBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC(k)   $<"
	$(Q)$(CC) $(KERNEL_CFLAGS) -MMD -MP -c $< -o $@

$(KOBJ)/%.o: %.S
	@mkdir -p $(dir $@)
	@echo "  AS(k)   $<"
	$(Q)$(CC) $(KERNEL_CFLAGS) -MMD -MP -c $< -o $@

# Explicit rules (no patterns) for the generated tables, so no other
# fragment's pattern rule can claim them.
KSYMS_EMPTY := $(BUILD)/kernel/ksyms_empty
KSYMS_TABLE := $(BUILD)/kernel/ksyms_table

$(KSYMS_EMPTY).c: scripts/mksyms
	@mkdir -p $(dir $@)
	$(Q)scripts/mksyms < /dev/null > $@

$(KSYMS_EMPTY).o: $(KSYMS_EMPTY).c kernel/ksyms.h
	$(Q)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

$(BUILD)/kernel/kernel.pass1.elf: $(KERNEL_OBJS) $(KSYMS_EMPTY).o $(KERNEL_LIBS) arch/x86_64/kernel.ld
	@echo "  LD(k)   $@"
	$(Q)$(CC) $(KERNEL_LDFLAGS) $(KERNEL_OBJS) $(KSYMS_EMPTY).o $(KERNEL_LIBS) -o $@ -lgcc

$(KSYMS_TABLE).c: $(BUILD)/kernel/kernel.pass1.elf scripts/mksyms
	$(Q)nm -n $< | scripts/mksyms > $@

$(KSYMS_TABLE).o: $(KSYMS_TABLE).c kernel/ksyms.h
	$(Q)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

$(KERNEL_ELF): $(KERNEL_OBJS) $(KSYMS_TABLE).o $(KERNEL_LIBS) arch/x86_64/kernel.ld
	@echo "  LD(k)   $@ (with symbols)"
	$(Q)$(CC) $(KERNEL_LDFLAGS) $(KERNEL_OBJS) $(KSYMS_TABLE).o $(KERNEL_LIBS) -o $@ -lgcc
	$(Q)nm -n $@ | scripts/mksyms | cmp -s - $(KSYMS_TABLE).c || \
		{ echo "kernel: symbol table moved between link passes" >&2; rm -f $@; exit 1; }

ALL_TARGETS += $(KERNEL_ELF)

# ---- running it ----
QEMU_RUN := scripts/qemu-run --esp $(ESP) --smp $(SMP) --mem $(MEM) --timeout $(TIMEOUT)
# SMP (issue 5): one host thread runs all vCPUs round-robin, and a guest
# PAUSE hands the thread to the next vCPU. With one thread per vCPU (QEMU's
# default) on a host with fewer free cores than vCPUs, each ticket-lock
# handoff waits for the host to schedule the next waiter: SMP=8 took over
# 300 s for 800k lock handoffs, against 9 s like this.
QEMU_ACCEL ?= -accel tcg,thread=single
DEBUG_TIMEOUT ?= 3600

.PHONY: run debug
run: $(ESP_FILES)
	$(Q)$(QEMU_RUN) --log $(BUILD)/run.log -- $(QEMU_ACCEL)

debug: $(ESP_FILES)
	@echo "make debug: QEMU waits for gdb on localhost:1234. In another terminal:"
	@echo "  gdb $(KERNEL_ELF) -ex 'target remote localhost:1234' -ex 'hbreak kmain' -ex 'continue'"
	$(Q)scripts/qemu-run --esp $(ESP) --smp $(SMP) --mem $(MEM) --timeout $(DEBUG_TIMEOUT) \
		--log $(BUILD)/debug.log -- -s -S

-include $(KERNEL_OBJS:.o=.d)
