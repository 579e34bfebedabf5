# mm/build.mk: the portable allocator core, built freestanding for the
# kernel as build/x86_64/libkmalloc.a. (The host build of the same sources
# is in arch/host/build.mk.) pmm.c is the kernel's frame allocator and is
# not part of this library.

MM_SRCS := \
	mm/malloc.c \
	mm/mcache.c \
	mm/mcentral.c \
	mm/mheap.c \
	mm/mpagealloc.c \
	mm/mfixalloc.c \
	mm/mscavenge.c \
	mm/mspan.c \
	mm/mstats.c

# The port's sys_arch.h (inline CPU id / interrupt save): our x86-64
# kernel's. (mm/generic/sys_arch.h is the template for other kernels: one
# CPU, no %gs; it would be wrong for this SMP kernel.)
MM_KERNEL_ARCH_INC := -Iarch/x86_64

MM_KERNEL_CFLAGS := $(CSTD) $(WARN) -ffreestanding -nostdlib -mno-red-zone \
	-mcmodel=kernel -fno-pic -mgeneral-regs-only -fno-stack-protector \
	-fno-omit-frame-pointer -O2 -g -Imm $(MM_KERNEL_ARCH_INC) -MMD -MP

KMALLOC_KERNEL_LIB := $(BUILD)/x86_64/libkmalloc.a
MM_KERNEL_OBJS := $(MM_SRCS:%.c=$(BUILD)/x86_64/%.o)
# Objects built before the kernel port's sys_arch.h existed used another
# one; its appearance must rebuild them (the .d files cannot know).
$(MM_KERNEL_OBJS): $(wildcard arch/x86_64/sys_arch.h)

$(BUILD)/x86_64/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(MM_KERNEL_CFLAGS) -c $< -o $@

$(KMALLOC_KERNEL_LIB): $(MM_KERNEL_OBJS)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

ALL_TARGETS += $(KMALLOC_KERNEL_LIB)

-include $(MM_KERNEL_OBJS:.o=.d)

# Regenerate the size-class table (checked in; tests/host.mk checks it is
# not stale).
.PHONY: sizeclasses
sizeclasses:
	$(Q)python3 scripts/mksizeclasses -o mm/sizeclasses.h
	@echo "mm/sizeclasses.h regenerated"
