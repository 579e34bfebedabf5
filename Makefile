# Top-level Makefile: Go's allocator as a kernel kmalloc.
#
# Each part of the tree builds from its own fragment (*.mk, included below);
# a fragment appends its outputs to ALL_TARGETS, its test targets to
# TEST_TARGETS (which run in the order TEST_ORDER below gives: host stages
# first, QEMU boot cases last), its benchmarks to BENCH_TARGETS and the
# Debian package lists it
# needs (scripts/packages/<group>.list) to DEPS_GROUPS (BENCH_DEPS_GROUPS
# for benchmarks only).
#
#   make            build everything (host library, kernel, UEFI loader, ESP)
#   make run        build, boot QEMU, run the self-tests, print the heap report
#   make test       every stage below, host stages first, then the QEMU ones
#                   (TEST_ORDER; docs/testing.md says what covers what):
#     make format-check  C lines changed since the style was set, formatted
#     make test-core     the core's unit tests, release and debug builds
#     make test-api      public API, misuse, model, stress, leaks, meshing;
#                        then under ASan+UBSan and TSan
#     make test-heapmap  the heap picture's dump and script
#     make test-pmm      the kernel's frame allocator, on the host
#     make test-preload  the LD_PRELOAD shim under real programs
#     make test-fuzz     libFuzzer: seeds, saved inputs, 30 s of fuzzing
#     make test-loader   the UEFI loader's checks
#     make test-boot     the kernel's boot cases: self-tests, faults, panics,
#                        bad kernel.elf (tests/boot/boot.cases)
#     make test-boot-kmem  the heap's boot cases (tests/boot/kmem.cases)
#     make test-smp      the SMP boot cases (tests/boot/smp.cases)
#                        (each boot-case target: scripts/boot-cases + its file)
#     make test-portkit  make lib as a kernel uses it, and its kit kernels
#   make test-scale  SMP=64/128/255 and a 64 GiB guest (tests/boot/scale.cases)
#   make test-repeat  every QEMU boot case and make run REPEAT times (20)
#                   with a CPU hog beside QEMU; failures per case
#   make bench      hosted benchmarks side by side with other allocators
#   make heapmap    the fragmentation workload's heap drawn (build/heapmap)
#   make lib PORT=dir  the library for your kernel (docs/porting.md)
#   make format     clang-format the C lines changed since the style was set
#   make debug      boot with QEMU's gdb stub waiting; prints the gdb command
#   make clean      remove build/
#
# Variables (make run SMP=4 MEM=512M CMDLINE="ktest=all" TIMEOUT=60):
#   SMP      number of CPUs QEMU emulates
#   MEM      guest memory size, in QEMU's syntax (256M, 1G)
#   CMDLINE  kernel command line, written to cmdline.txt on the ESP after
#            kmemleak=on (the leak report ends the run; kmemleak=off in
#            CMDLINE turns it off: the last occurrence wins)
#   TIMEOUT  seconds before a boot is killed and counted as failed
#   V=1      show full build commands

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:

BUILD   := build
SMP     ?= 4
MEM     ?= 256M
CMDLINE ?=
# What `make run` and `make debug` boot with: the leak detector on, so a
# run ends with its report, then whatever CMDLINE adds.
RUN_CMDLINE = $(strip kmemleak=on $(CMDLINE))
TIMEOUT ?= 150

CC      ?= gcc
ifeq ($(origin CC),default)
CC      := gcc
endif
CLANG   ?= clang
CSTD    := -std=c11
WARN    := -Wall -Wextra -Werror
# Freestanding x86-64 code (the kernel, mm/ as the kernel and `make lib`
# build it, the porting kit's kernel): no libc, no red zone (interrupts
# push onto the stack), no SSE (the kernel saves no vector state), frame
# pointers for backtraces. Each user adds its code model and extras.
FREESTANDING_CFLAGS := $(CSTD) $(WARN) -ffreestanding -nostdlib -mno-red-zone -fno-pic \
	-mgeneral-regs-only -fno-stack-protector -fno-omit-frame-pointer -O2

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The recipe of every static library here: made afresh from its
# prerequisites (ar would keep members an older archive had).
define archive
@mkdir -p $(@D)
$(Q)rm -f $@ && ar rcs $@ $^
endef

ALL_TARGETS   :=
TEST_TARGETS  :=
BENCH_TARGETS :=
DEPS_GROUPS   := base
BENCH_DEPS_GROUPS :=

# Fragments: what builds first, then the tests (whose order is TEST_ORDER).
FRAGMENTS := \
	mm/build.mk \
	arch/host/build.mk \
	arch/host/preload.mk \
	boot/build.mk \
	kernel/build.mk \
	tests/format.mk \
	tests/core.mk \
	tests/api.mk \
	tests/heapmap.mk \
	tests/pmm.mk \
	tests/boot.mk \
	tests/portkit.mk \
	tests/preload.mk \
	tests/fuzz.mk \
	tests/bench.mk \
	tests/benchpeers.mk
include $(FRAGMENTS)

# The order of `make test`, in one place. Every fragment's TEST_TARGETS
# must be named here, and nothing else: a stage a fragment adds but this
# list lacks (or a name here no fragment defines) stops make at once
# instead of silently not running.
TEST_ORDER := format-check test-core test-api test-heapmap test-pmm test-preload test-fuzz \
	test-loader test-boot test-boot-kmem test-smp test-portkit
ifneq ($(sort $(TEST_ORDER)),$(sort $(TEST_TARGETS)))
$(error TEST_ORDER ($(sort $(TEST_ORDER))) and the fragments' TEST_TARGETS ($(sort $(TEST_TARGETS))) differ)
endif

# Packages (Debian names, scripts/packages/<group>.list, installed by
# scripts/install-deps when missing): `make deps` for what the tests and
# `make run` need, `make deps-bench` adds valgrind and the peer
# allocators. `make test`, `make run` and `make bench` run them first and
# then build in a second make, so nothing is built before the tools are
# there even under -j; every other target (a plain `make`, one test
# stage) does no package work. SKIP_DEPS=1 makes both a no-op. `make lib`
# never installs anything: a kernel's own build runs it, on a machine
# that needs only a compiler, binutils and make for it. INSTALL_DEPS lets
# the porting kit's test check that (tests/portkit.mk).
INSTALL_DEPS ?= scripts/install-deps
.PHONY: all deps deps-bench test test-stages bench bench-stages run clean help
deps:
ifneq ($(SKIP_DEPS),1)
	$(Q)$(INSTALL_DEPS) $(sort $(DEPS_GROUPS))
endif

deps-bench:
ifneq ($(SKIP_DEPS),1)
	$(Q)$(INSTALL_DEPS) $(sort $(DEPS_GROUPS) $(BENCH_DEPS_GROUPS))
endif

all: $(ALL_TARGETS)

test: deps
	$(Q)$(MAKE) --no-print-directory test-stages

# One stage after the other even under -j (each stage builds in parallel
# itself): QEMU boots and sanitizer runs must not share the machine.
test-stages:
	$(Q)for t in $(TEST_ORDER); do \
		$(MAKE) --no-print-directory $$t || exit 1; \
	done
	@echo "make test: all test stages passed ($(TEST_ORDER))"

bench: deps-bench
	$(Q)$(MAKE) --no-print-directory bench-stages

bench-stages: $(BENCH_TARGETS)

run: deps
	$(Q)$(MAKE) --no-print-directory run-only

# Not in make test: about 3 minutes a round. Flaky boot tests show here
# before they fail CI on an innocent change (scripts/test-repeat).
REPEAT ?= 20
.PHONY: test-repeat
test-repeat: $(LOADER_EFI) $(KERNEL_ELF) $(KMEM_DEBUG_ELF) $(KIT_ISO) $(KIT_HUGE_ISO)
	$(Q)scripts/test-repeat --rounds $(REPEAT) --make "$(MAKE) --no-print-directory SKIP_DEPS=1" \
		--kit-iso $(KIT_ISO) --kit-huge-iso $(KIT_HUGE_ISO) --log-dir $(BUILD)/test-repeat

clean:
	rm -rf $(BUILD)

help:
	@sed -n '/^#   make/,/^#   V=1/p' Makefile | sed 's/^# \{0,1\}//'
