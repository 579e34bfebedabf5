# Top-level Makefile: Go's allocator as a kernel kmalloc.
#
# Each part of the tree builds from its own fragment (*.mk, included below);
# a fragment appends its outputs to ALL_TARGETS, its test targets to
# TEST_TARGETS (run in include order: fast host tests first, QEMU boot cases
# last), its benchmarks to BENCH_TARGETS and the Debian package lists it
# needs (scripts/packages/<group>.list) to DEPS_GROUPS.
#
#   make            build everything (host library, kernel, UEFI loader, ESP)
#   make run        build, boot QEMU, run the self-tests, print the heap report
#   make test       host unit tests (Check, sanitizers) then the QEMU boot cases
#   make bench      hosted benchmarks side by side with other allocators
#   make lib PORT=dir  the library for your kernel (docs/porting.md)
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
TIMEOUT ?= 90

CC      ?= gcc
ifeq ($(origin CC),default)
CC      := gcc
endif
CLANG   ?= clang
CSTD    := -std=c11
WARN    := -Wall -Wextra -Werror

ifeq ($(V),1)
Q :=
else
Q := @
endif

ALL_TARGETS   :=
TEST_TARGETS  :=
BENCH_TARGETS :=
DEPS_GROUPS   := base

# Fragments, in the order their tests run.
FRAGMENTS := \
	mm/build.mk \
	arch/host/build.mk \
	arch/host/preload.mk \
	tests/host.mk \
	tests/api.mk \
	tests/pmm.mk \
	boot/build.mk \
	kernel/build.mk \
	tests/boot.mk \
	tests/portkit.mk \
	tests/preload.mk \
	tests/fuzz.mk \
	tests/bench.mk \
	tests/benchpeers.mk
include $(wildcard $(FRAGMENTS))

ifneq ($(filter bench,$(MAKECMDGOALS)),)
DEPS_GROUPS += bench
endif

# Install what is missing before any rule runs (Debian package names, see
# scripts/install-deps). SKIP_DEPS=1 skips the check. `make lib` never
# installs anything: a kernel's own build runs it, on a machine that needs
# only a compiler, binutils and make for it. INSTALL_DEPS lets the porting
# kit's test check that (tests/portkit.mk).
INSTALL_DEPS ?= scripts/install-deps
NEED_DEPS := $(if $(MAKECMDGOALS),$(filter-out clean help lib,$(MAKECMDGOALS)),all)
ifeq ($(filter clean help,$(MAKECMDGOALS)),)
ifneq ($(SKIP_DEPS),1)
ifneq ($(NEED_DEPS),)
DEPS_STATUS := $(shell $(INSTALL_DEPS) $(sort $(DEPS_GROUPS)) >&2; echo $$?)
ifneq ($(DEPS_STATUS),0)
$(error scripts/install-deps failed; install the packages it names and retry)
endif
endif
endif
endif

.PHONY: all test bench clean help
all: $(ALL_TARGETS)

test: $(TEST_TARGETS)
	@echo "make test: all test stages passed ($(TEST_TARGETS))"

bench: $(BENCH_TARGETS)

clean:
	rm -rf $(BUILD)

help:
	@sed -n '/^#   make/,/^#   V=1/p' Makefile | sed 's/^# //'
