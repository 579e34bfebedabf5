# tests/portkit.mk: the porting kit's test stage (`make test-portkit`, part
# of `make test`): `make lib` as a kernel developer uses it, and a second,
# minimal kernel that links only the library it makes.
#
#   tests/portkit/check-lib   make lib's errors, outputs, symbols, flags and
#                             install-deps use, on a copy of the tree
#   the kit kernel            tests/portkit/kernel: multiboot2, one CPU, no
#                             %gs, its own frames and page tables; the port
#                             is mm/generic/sys_arch.h (the template, as is)
#                             + kernel/port.c. It sees only
#                             build/portkit/lib/{libkmalloc.a,include/}:
#
#   make lib PORT=mm/generic LIB_MCMODEL=small KMALLOC_PREFIX=gok_
#       --> build/portkit/lib/libkmalloc.a + include/
#   kernel/*.c *.S --gcc -I lib/include -I mm/generic--> kernel.elf (at 1 MiB)
#   grub-mkrescue (grub.cfg + kernel.elf) --> build/portkit/kit.iso
#   tests/portkit/boot-case: QEMU (BIOS, GRUB) boots it; self-tests, then
#       the double free must end it with "kmalloc: double free: 0x..."

DEPS_GROUPS += portkit

KIT := $(BUILD)/portkit
KIT_LIB := $(KIT)/lib/libkmalloc.a
KIT_ELF := $(KIT)/kernel.elf
KIT_ISO := $(KIT)/kit.iso
KIT_BOOT_TIMEOUT ?= 60
KIT_SRCS := $(wildcard tests/portkit/kernel/*.c tests/portkit/kernel/*.S)
KIT_OBJS := $(patsubst tests/portkit/kernel/%,$(KIT)/obj/%.o,$(basename $(KIT_SRCS)))

# Linked below 2 GiB (identity map), hence the small code model for the
# library too. No -Imm: the kernel sees the library's public headers and
# its port's sys_arch.h, nothing else of this project (but the tests' one
# random generator, tests/lib/xorshift.h, which is header-only).
KIT_CFLAGS := $(FREESTANDING_CFLAGS) -mcmodel=small -fno-pie -g \
	-fno-asynchronous-unwind-tables -I$(KIT)/lib/include -Imm/generic -MMD -MP
KIT_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,tests/portkit/kernel/kernel.ld \
	-Wl,-z,max-page-size=0x1000 -Wl,--build-id=none -Wl,-z,noexecstack

# Through make lib itself, as a kernel's build would call it; the sub-make
# is incremental, and the library's time stamp changes only when it is
# rebuilt, so the kernel relinks only then. (In that sub-make, mm/build.mk's
# own rule makes the file: this one must not exist there.)
ifeq ($(filter lib,$(MAKECMDGOALS)),)
$(KIT_LIB): kit-lib-force
	$(Q)$(MAKE) --no-print-directory lib PORT=mm/generic LIBDIR=$(KIT)/lib \
		LIB_MCMODEL=small KMALLOC_PREFIX=gok_ >/dev/null
endif

.PHONY: kit-lib-force
kit-lib-force:

# Objects need the installed headers, which the library's build writes.
$(KIT)/obj/%.o: tests/portkit/kernel/%.c $(KIT_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KIT_CFLAGS) -c $< -o $@

$(KIT)/obj/%.o: tests/portkit/kernel/%.S
	@mkdir -p $(@D)
	$(Q)$(CC) $(KIT_CFLAGS) -c $< -o $@

$(KIT_ELF): $(KIT_OBJS) $(KIT_LIB) tests/portkit/kernel/kernel.ld
	@echo "  LD(kit) $@"
	$(Q)$(CC) $(KIT_LDFLAGS) $(KIT_OBJS) $(KIT_LIB) -o $@

# The second kit kernel: the same sources with -DKIT_HUGE, a heap window
# mapped with 2 MiB pages only (sys_config.page_size = 2 MiB).
KIT_HUGE := $(KIT)/huge
KIT_HUGE_ELF := $(KIT_HUGE)/kernel.elf
KIT_HUGE_ISO := $(KIT_HUGE)/kit.iso
KIT_HUGE_OBJS := $(patsubst tests/portkit/kernel/%,$(KIT_HUGE)/obj/%.o,$(basename $(KIT_SRCS)))

$(KIT_HUGE)/obj/%.o: tests/portkit/kernel/%.c $(KIT_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KIT_CFLAGS) -DKIT_HUGE -c $< -o $@

$(KIT_HUGE)/obj/%.o: tests/portkit/kernel/%.S
	@mkdir -p $(@D)
	$(Q)$(CC) $(KIT_CFLAGS) -DKIT_HUGE -c $< -o $@

$(KIT_HUGE_ELF): $(KIT_HUGE_OBJS) $(KIT_LIB) tests/portkit/kernel/kernel.ld
	@echo "  LD(kit) $@"
	$(Q)$(CC) $(KIT_LDFLAGS) $(KIT_HUGE_OBJS) $(KIT_LIB) -o $@

# $(1): the ISO, $(2): the kernel, $(3): a scratch directory
define kit_iso
	$(Q)rm -rf $(3) && mkdir -p $(3)/boot/grub
	$(Q)cp $(2) $(3)/boot/kernel.elf
	$(Q)cp tests/portkit/kernel/grub.cfg $(3)/boot/grub/grub.cfg
	$(Q)grub-mkrescue -o $(1) $(3) > $(3).log 2>&1 || { cat $(3).log; exit 1; }
endef

$(KIT_ISO): $(KIT_ELF) tests/portkit/kernel/grub.cfg
	$(call kit_iso,$@,$(KIT_ELF),$(KIT)/iso)

$(KIT_HUGE_ISO): $(KIT_HUGE_ELF) tests/portkit/kernel/grub.cfg
	$(call kit_iso,$@,$(KIT_HUGE_ELF),$(KIT_HUGE)/iso)

.PHONY: test-portkit
test-portkit: $(KIT_ISO) $(KIT_HUGE_ISO)
	@echo "== porting kit: make lib, then the kit kernels (GRUB, multiboot2, QEMU; 4 KiB and 2 MiB pages) =="
	$(Q)fail=0; \
	tests/portkit/check-lib $(KIT)/check-lib || fail=1; \
	nice tests/portkit/boot-case $(KIT_ISO) $(KIT)/console.log $(KIT_BOOT_TIMEOUT) || fail=1; \
	nice tests/portkit/boot-case $(KIT_HUGE_ISO) $(KIT_HUGE)/console.log $(KIT_BOOT_TIMEOUT) || fail=1; \
	grep -q '^kit: the heap window is mapped with 2 MiB pages only' $(KIT_HUGE)/console.log || \
		{ echo "kit kernel (2 MiB pages): it did not run in its 2 MiB configuration"; fail=1; }; \
	[ $$fail = 0 ]

TEST_TARGETS += test-portkit

-include $(KIT_OBJS:.o=.d) $(KIT_HUGE_OBJS:.o=.d)
