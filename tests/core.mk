# tests/core.mk: the core's internal unit tests (Check, tests/core/), run on the host
# against build/host/libkmalloc.a and again against the debug build
# (build/host-debug, -DMM_DEBUG=2: assertions, whole-structure validation
# after every span operation, lock-order checks): size classes (including
# "the checked-in mm/sizeclasses.h is what the generator writes"), span
# bitmaps, page allocator, magazines and transfer caches, mcentral lists,
# mheap and large objects, scavenger. One binary per file; each test case
# runs in its own forked process, so each starts from an empty heap.
# Every binary links tests/lib/child_util.o for run_in_child and
# misuse_mismatch: a fault case forks a child and asserts the exact
# "kmalloc: <fault>: 0x..." line, which Check's raise_signal cannot. It
# needs only libc, so one object serves both core flavours.
# KMALLOC_RELEASE_MS=off: no clock (arch/host/background.c), since these
# tests count pages exactly; the tests of aging install a fake clock.

# test_genericport.c brings its own port, so it is built from MM_SRCS
# against its own all-out-of-line tests/core/genericport/sys_arch.h instead
# of linking libkmalloc.a.
HOST_TESTS := $(filter-out genericport,$(patsubst tests/core/test_%.c,%,$(wildcard tests/core/test_*.c)))
HOST_TEST_BINS := $(HOST_TESTS:%=$(BUILD)/host/tests/test_%) \
	$(BUILD)/host/tests/genericport/test_genericport \
	$(BUILD)/host/tests/genericport/test_genericport_2m \
	$(BUILD)/host/tests/genericport/test_genericport_dirty
HOST_DEBUG_TEST_BINS := $(HOST_TESTS:%=$(BUILD)/host-debug/tests/test_%) \
	$(BUILD)/host-debug/tests/genericport/test_genericport \
	$(BUILD)/host-debug/tests/genericport/test_genericport_2m \
	$(BUILD)/host-debug/tests/genericport/test_genericport_dirty
# Recursive (=), not :=: the top Makefile installs check and pkg-config
# after reading the fragments, so ask pkg-config only when a rule runs.
HOST_TEST_CFLAGS = $(MM_HOST_CFLAGS) -O1 -g \
	$(shell pkg-config --cflags check) -MMD -MP
HOST_TEST_LIBS = $(shell pkg-config --libs check) -lpthread

DEPS_GROUPS += host

HOST_CHILD_UTIL := $(BUILD)/host/tests/child_util.o

$(HOST_CHILD_UTIL): tests/lib/child_util.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_TEST_CFLAGS) -c $< -o $@

$(BUILD)/host/tests/test_%: tests/core/test_%.c $(HOST_CHILD_UTIL) $(KMALLOC_HOST_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_TEST_CFLAGS) $< $(HOST_CHILD_UTIL) $(KMALLOC_HOST_LIB) \
		$(HOST_TEST_LIBS) -o $@

$(BUILD)/host-debug/tests/test_%: tests/core/test_%.c $(HOST_CHILD_UTIL) $(KMALLOC_HOST_DEBUG_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_TEST_CFLAGS) -DMM_DEBUG=2 $< $(HOST_CHILD_UTIL) \
		$(KMALLOC_HOST_DEBUG_LIB) $(HOST_TEST_LIBS) -o $@

# One compiler run over several sources: header dependencies are listed
# instead of generated.
GENERIC_PORT_CFLAGS = $(CSTD) $(WARN) -Imm -Itests/core/genericport -O1 -g \
	$(shell pkg-config --cflags check)
GENERIC_PORT_DEPS := tests/core/test_genericport.c $(MM_SRCS) \
	$(wildcard mm/*.h) tests/core/genericport/sys_arch.h tests/core/remote_free.h

$(BUILD)/host/tests/genericport/test_genericport: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) $(filter %.c,$^) $(HOST_TEST_LIBS) -o $@

$(BUILD)/host-debug/tests/genericport/test_genericport: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) -DMM_DEBUG=2 $(filter %.c,$^) $(HOST_TEST_LIBS) -o $@

# The same port committing in 2 MiB units, as a kernel with only 2 MiB pages.
$(BUILD)/host/tests/genericport/test_genericport_2m: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) -DGENERIC_PAGE_SIZE=0x200000 $(filter %.c,$^) \
		$(HOST_TEST_LIBS) -o $@

$(BUILD)/host-debug/tests/genericport/test_genericport_2m: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) -DMM_DEBUG=2 -DGENERIC_PAGE_SIZE=0x200000 \
		$(filter %.c,$^) $(HOST_TEST_LIBS) -o $@

# The same port with commit_zeroed 0 and commits full of 0xa5 (dirty frames).
$(BUILD)/host/tests/genericport/test_genericport_dirty: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) -DGENERIC_DIRTY $(filter %.c,$^) $(HOST_TEST_LIBS) -o $@

$(BUILD)/host-debug/tests/genericport/test_genericport_dirty: $(GENERIC_PORT_DEPS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(GENERIC_PORT_CFLAGS) -DMM_DEBUG=2 -DGENERIC_DIRTY $(filter %.c,$^) \
		$(HOST_TEST_LIBS) -o $@

.PHONY: test-core
test-core: $(HOST_TEST_BINS) $(HOST_DEBUG_TEST_BINS)
	$(Q)for t in $(HOST_TEST_BINS) $(HOST_DEBUG_TEST_BINS); do \
		echo "== $$t"; KMALLOC_RELEASE_MS=off nice timeout 300 $$t || exit 1; \
	done

TEST_TARGETS += test-core

-include $(filter-out %/test_genericport.d,$(HOST_TEST_BINS:=.d) $(HOST_DEBUG_TEST_BINS:=.d)) \
	$(HOST_CHILD_UTIL:.o=.d)
