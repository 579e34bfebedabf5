# mm/build.mk: the portable allocator core, built freestanding for the
# kernel as build/x86_64/libkmalloc.a, and for anyone else's kernel by
# `make lib PORT=...` (the porting kit, at the end of this file). (The host
# build of the same sources is in arch/host/build.mk.) Everything in mm/
# is what a port links; our kernel's frame allocator is kernel/pmm/.

MM_SRCS := \
	mm/malloc.c \
	mm/mcache.c \
	mm/mcentral.c \
	mm/mheap.c \
	mm/mheapmap.c \
	mm/mkfence.c \
	mm/mkmemcache.c \
	mm/mpagealloc.c \
	mm/mfixalloc.c \
	mm/mgcmark.c \
	mm/mlarge.c \
	mm/mleak.c \
	mm/mlock.c \
	mm/mmesh.c \
	mm/mmeshpick.c \
	mm/mmeta.c \
	mm/mscavenge.c \
	mm/mspan.c \
	mm/mstack.c \
	mm/mstats.c \
	mm/mtransfer.c \
	mm/mvalid.c

# The port's sys_arch.h (inline CPU id / interrupt save): our x86-64
# kernel's. (mm/generic/sys_arch.h is the template for other kernels: one
# CPU, no %gs; it would be wrong for this SMP kernel.)
MM_KERNEL_ARCH_INC := -Iarch/x86_64

MM_KERNEL_CFLAGS := $(FREESTANDING_CFLAGS) -mcmodel=kernel -g -Imm $(MM_KERNEL_ARCH_INC) -MMD -MP

KMALLOC_KERNEL_LIB := $(BUILD)/x86_64/libkmalloc.a
MM_KERNEL_OBJS := $(MM_SRCS:%.c=$(BUILD)/x86_64/%.o)
# Objects built before the kernel port's sys_arch.h existed used another
# one; its appearance must rebuild them (the .d files cannot know).
$(MM_KERNEL_OBJS): $(wildcard arch/x86_64/sys_arch.h)

$(BUILD)/x86_64/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(MM_KERNEL_CFLAGS) -c $< -o $@

$(KMALLOC_KERNEL_LIB): $(MM_KERNEL_OBJS)
	$(archive)

ALL_TARGETS += $(KMALLOC_KERNEL_LIB)

-include $(MM_KERNEL_OBJS:.o=.d)

# Regenerate the size-class table (checked in; tests/core.mk checks it is
# not stale).
.PHONY: sizeclasses
sizeclasses:
	$(Q)python3 scripts/mksizeclasses -o mm/sizeclasses.h
	@echo "mm/sizeclasses.h regenerated"

# ---- porting kit: make lib PORT=<dir holding your sys_arch.h> ----
# The library for someone else's kernel (docs/porting.md):
#
#   MM_SRCS --$(CC) $(LIB_CFLAGS) -I$(PORT)--> $(LIBDIR)/obj/mm/*.o
#   --scripts/mklib (ld -r, objcopy: only the API global, optional prefix)-->
#   $(LIBDIR)/libkmalloc.a + $(LIBDIR)/include/{kmalloc.h,sys.h}
#
# Nothing is installed for this goal (the top Makefile skips
# scripts/install-deps): it needs a C compiler, binutils and make. There is
# no default port: the library inlines the port's sys_arch.h, and one built
# against ours would read the CPU id through a %gs the caller never set.
#
#   PORT              directory holding the port's sys_arch.h (required)
#   LIBDIR            output directory (build/lib)
#   KMALLOC_PREFIX    prefix for the public functions (gok_ -> gok_kmalloc)
#   LIB_MCMODEL       -mcmodel (kernel: code in the top 2 GiB; small for a
#                     kernel linked below 2 GiB)
#   LIB_EXTRA_CFLAGS  appended (-I for headers your sys_arch.h includes)
#   LIB_CFLAGS        all compiler flags, replacing ours (non-x86 targets)
#   CC, CROSS_COMPILE compiler (gcc, clang) and binutils prefix (x86_64-elf-)
LIBDIR ?= $(BUILD)/lib
KMALLOC_PREFIX ?=
LIB_MCMODEL ?= kernel
LIB_EXTRA_CFLAGS ?=
LIB_CFLAGS ?= $(FREESTANDING_CFLAGS) -mcmodel=$(LIB_MCMODEL) -g $(LIB_EXTRA_CFLAGS)

ifneq ($(filter lib,$(MAKECMDGOALS)),)
ifeq ($(strip $(PORT)),)
$(error make lib: no port header: PORT must name the directory holding your port's \
sys_arch.h (copy mm/generic/sys_arch.h to start one; see docs/porting.md))
endif
ifeq ($(wildcard $(PORT)/sys_arch.h),)
$(error make lib: PORT=$(PORT): $(PORT)/sys_arch.h: no such file)
endif
endif

LIB_OBJDIR := $(LIBDIR)/obj
LIB_OBJS := $(MM_SRCS:%.c=$(LIB_OBJDIR)/%.o)
LIB_A := $(LIBDIR)/libkmalloc.a
# What the objects and the library were built with, kept in files that
# change only when the settings do: another PORT, compiler, flags or
# prefix must rebuild, not reuse a library made for something else.
LIB_CC_CONFIG := $(CC) | $(LIB_CFLAGS) | $(abspath $(PORT))
LIB_LINK_CONFIG := $(CROSS_COMPILE) | $(KMALLOC_PREFIX)
lib_sh_quote = '$(subst ','\'',$(1))'

.PHONY: lib lib-config-force
lib: $(LIB_A)

$(LIB_OBJDIR)/cc-config $(LIB_OBJDIR)/link-config: lib-config-force
	@mkdir -p $(@D)
	$(Q)printf '%s\n' $(call lib_sh_quote,$(if $(filter %/cc-config,$@),$(LIB_CC_CONFIG),$(LIB_LINK_CONFIG))) > $@.new
	$(Q)if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi

$(LIB_OBJDIR)/%.o: %.c $(LIB_OBJDIR)/cc-config
	@mkdir -p $(@D)
	$(Q)$(CC) $(LIB_CFLAGS) -Imm -I$(PORT) -MMD -MP -c $< -o $@

$(LIB_A): $(LIB_OBJS) $(LIB_OBJDIR)/link-config mm/kmalloc.h mm/sys.h scripts/mklib
	$(Q)CROSS_COMPILE=$(CROSS_COMPILE) scripts/mklib --out $(LIBDIR) --cc $(call lib_sh_quote,$(CC)) \
		$(if $(KMALLOC_PREFIX),--prefix $(KMALLOC_PREFIX)) mm $(LIB_OBJS)

-include $(LIB_OBJS:.o=.d)
