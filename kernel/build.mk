# kernel/build.mk: the kernel ELF (kernel/ + arch/x86_64/), and `make run` / `make debug`.
#
#   *.c, *.S --gcc $(KERNEL_CFLAGS)--> build/kernel/obj/**.o
#   pass 1: objects + empty symbol table          --ld--> pass1.elf
#   nm -n pass1.elf | scripts/mksyms               -->    ksyms_table.c (text symbols)
#   pass 2: objects + ksyms_table.o + $(KERNEL_LIBS) --ld--> kernel.elf
# The symbol table sits in .rodata, after .text, so pass 2 moves no
# function; the rule re-runs mksyms on kernel.elf and fails if the table
# would differ. boot/build.mk copies kernel.elf onto the ESP.

# The kernel's frame allocator (kernel/pmm/: a buddy allocator over the
# boot memory map). Not part of libkmalloc: a kernel porting the allocator
# brings its own frames; host-tested by tests/pmm.mk.
PMM_SRCS := \
	kernel/pmm/map.c \
	kernel/pmm/init.c \
	kernel/pmm/buddy.c \
	kernel/pmm/report.c

# In link order, which is also the order the self-tests run in (each
# file's KTESTs sit in .ktests where the linker puts the file).
KERNEL_SRCS := $(addprefix arch/x86_64/, \
	entry.S isr.S gdt.c idt.c serial.c debugexit.c vm.c percpu.c acpi.c \
	apic.c tlb.c smp.c stopworld.c trampoline.S irq.S) \
	$(addprefix kernel/, \
	kmain.c layout.c printk.c panic.c ksyms.c cmdline.c ktest.c string.c \
	selftests.c smp_selftests.c)
# The frame allocator, paging, the heap's port and the heap's self-tests.
KERNEL_SRCS += $(PMM_SRCS) $(addprefix arch/x86_64/,paging.c sys.c mesh.c kmemleak.c) \
	$(addprefix kernel/, \
	mem.c kmalloc_testutil.c kmalloc_selftests.c \
	kmalloc_frames_selftests.c kmalloc_misuse_selftests.c \
	smp_kmalloc_testutil.c smp_kmalloc_selftests.c smp_kmalloc_stress_selftests.c \
	scale_selftests.c kmemleak_selftests.c kmesh_selftests.c kmem_cache_selftests.c \
	kfence_selftests.c)

KOBJ := $(BUILD)/kernel/obj
KERNEL_OBJS := $(patsubst %,$(KOBJ)/%.o,$(basename $(KERNEL_SRCS)))

# The kernel's C flags: the freestanding set (Makefile) in the kernel code
# model, as mm/ is built for it (mm/build.mk).
KERNEL_CFLAGS := $(FREESTANDING_CFLAGS) -mcmodel=kernel -g -fno-asynchronous-unwind-tables \
	-fno-pie -I. -Ikernel
# Static libraries linked into both passes (build/x86_64/libkmalloc.a).
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
KMEM_OBJS := $(patsubst %,$(KOBJ)/%.o,arch/x86_64/sys arch/x86_64/mesh arch/x86_64/kmemleak kernel/mem kernel/kmalloc_testutil \
	kernel/kmalloc_selftests kernel/kmalloc_frames_selftests \
	kernel/kmalloc_misuse_selftests kernel/smp_kmalloc_testutil kernel/smp_kmalloc_selftests \
	kernel/smp_kmalloc_stress_selftests kernel/scale_selftests kernel/kmesh_selftests \
	kernel/kmemleak_selftests kernel/kmem_cache_selftests kernel/kfence_selftests)
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

$(KSYMS_EMPTY).c: scripts/mksyms
	@mkdir -p $(dir $@)
	$(Q)scripts/mksyms < /dev/null > $@

$(KSYMS_EMPTY).o: $(KSYMS_EMPTY).c kernel/ksyms.h
	$(Q)$(CC) $(KERNEL_CFLAGS) -c $< -o $@

# $(call kernel_link,ELF,DIR,LIBS,NOTE): link ELF from the kernel's objects
# and LIBS in two passes (above), the intermediate files in DIR. Used for
# this kernel and for the one with the debug core (tests/boot.mk).
define kernel_link
$(2)/pass1.elf: $$(KERNEL_OBJS) $$(KSYMS_EMPTY).o $(3) arch/x86_64/kernel.ld
	@mkdir -p $$(@D)
	$$(Q)$$(CC) $$(KERNEL_LDFLAGS) $$(KERNEL_OBJS) $$(KSYMS_EMPTY).o $(3) -o $$@ -lgcc

$(2)/ksyms_table.c: $(2)/pass1.elf scripts/mksyms
	$$(Q)nm -n $$< | scripts/mksyms > $$@

$(2)/ksyms_table.o: $(2)/ksyms_table.c kernel/ksyms.h
	$$(Q)$$(CC) $$(KERNEL_CFLAGS) -c $$< -o $$@

$(1): $$(KERNEL_OBJS) $(2)/ksyms_table.o $(3) arch/x86_64/kernel.ld
	@echo "  LD(k)   $$@ $(4)"
	$$(Q)$$(CC) $$(KERNEL_LDFLAGS) $$(KERNEL_OBJS) $(2)/ksyms_table.o $(3) -o $$@ -lgcc
	$$(Q)nm -n $$@ | scripts/mksyms | cmp -s - $(2)/ksyms_table.c || \
		{ echo "$$@: symbol table moved between link passes" >&2; rm -f $$@; exit 1; }
endef
$(eval $(call kernel_link,$(KERNEL_ELF),$(BUILD)/kernel,$(KERNEL_LIBS),(with symbols)))

ALL_TARGETS += $(KERNEL_ELF)

# ---- running it ----
QEMU_RUN := scripts/qemu-run --esp $(ESP) --smp $(SMP) --mem $(MEM) --timeout $(TIMEOUT)
# SMP: one host thread runs all vCPUs round-robin, and a guest
# PAUSE hands the thread to the next vCPU. With one thread per vCPU (QEMU's
# default) on a host with fewer free cores than vCPUs, each ticket-lock
# handoff waits for the host to schedule the next waiter: SMP=8 took over
# 300 s for 800k lock handoffs, against 9 s like this.
QEMU_ACCEL ?= -accel tcg,thread=single
DEBUG_TIMEOUT ?= 3600

# `make run` (Makefile) checks the packages, then makes run-only.
.PHONY: run-only debug
run-only: $(ESP_FILES)
	$(Q)$(QEMU_RUN) --log $(BUILD)/run.log -- $(QEMU_ACCEL)

debug: $(ESP_FILES)
	@echo "make debug: QEMU waits for gdb on localhost:1234. In another terminal:"
	@echo "  gdb $(KERNEL_ELF) -ex 'target remote localhost:1234' -ex 'hbreak kmain' -ex 'continue'"
	$(Q)scripts/qemu-run --esp $(ESP) --smp $(SMP) --mem $(MEM) --timeout $(DEBUG_TIMEOUT) \
		--log $(BUILD)/debug.log -- -s -S

-include $(KERNEL_OBJS:.o=.d)
