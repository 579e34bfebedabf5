# tests/pmm.mk: the kernel's physical frame allocator (kernel/pmm/,
# PMM_SRCS from kernel/build.mk) and its host tests.
#
#   make test-pmm   1. compile PMM_SRCS with the kernel's flags, link them
#                      into one object and check it needs no outside symbol
#                      (no memset/memcpy sneaking in);
#                   2. run the Check suites built with gcc;
#                   3. run them again built with clang and ASan + UBSan.
#
# Set PMM_VERBOSE=1 in the environment to see every line pmm logs.

PMM_OUT := $(BUILD)/pmm

PMM_TEST_SRCS := \
	tests/pmm/test_pmm.c \
	tests/pmm/pmm_table.c \
	tests/pmm/pmm_randmap.c \
	tests/pmm/pmm_alloc.c \
	tests/pmm/pmm_misuse.c \
	tests/pmm/pmm_stress.c \
	tests/pmm/pmm_harness.c \
	$(PMM_SRCS)

# The flags the kernel builds mm/ with (mm/build.mk's MM_KERNEL_CFLAGS).
PMM_KERNEL_CFLAGS := $(FREESTANDING_CFLAGS) -mcmodel=kernel

# Recursive: pkg-config may only be installed once install-deps has run.
PMM_CHECK_CFLAGS = $(shell pkg-config --cflags check)
PMM_CHECK_LIBS = $(shell pkg-config --libs check)
PMM_HOST_CFLAGS = $(CSTD) $(WARN) -g -Ikernel -MMD -MP $(PMM_CHECK_CFLAGS)
PMM_ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

PMM_GCC_OBJS := $(PMM_TEST_SRCS:%.c=$(PMM_OUT)/gcc/%.o)
PMM_ASAN_OBJS := $(PMM_TEST_SRCS:%.c=$(PMM_OUT)/asan/%.o)

$(PMM_OUT)/gcc/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PMM_HOST_CFLAGS) -O2 -c $< -o $@

$(PMM_OUT)/asan/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(PMM_HOST_CFLAGS) -O1 $(PMM_ASAN_FLAGS) -c $< -o $@

$(PMM_OUT)/test_pmm: $(PMM_GCC_OBJS)
	$(Q)$(CC) $^ -o $@ $(PMM_CHECK_LIBS)

$(PMM_OUT)/test_pmm_asan: $(PMM_ASAN_OBJS)
	$(Q)$(CLANG) $(PMM_ASAN_FLAGS) $^ -o $@ $(PMM_CHECK_LIBS)

PMM_KERNEL_OBJS := $(PMM_SRCS:%.c=$(PMM_OUT)/kernel/%.o)

$(PMM_OUT)/kernel/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PMM_KERNEL_CFLAGS) -MMD -MP -c $< -o $@

# One relocatable object, so the files' calls into each other resolve and
# only calls to outside the frame allocator stay undefined.
$(PMM_OUT)/kernel/pmm.o: $(PMM_KERNEL_OBJS)
	$(Q)$(LD) -r $^ -o $@

# The freestanding object must not call anything: gcc may turn loops into
# memset/memcpy calls that a kernel without libc cannot resolve.
$(PMM_OUT)/kernel/pmm.undef-ok: $(PMM_OUT)/kernel/pmm.o
	$(Q)undef="$$(nm -u $<)"; if [ -n "$$undef" ]; then \
		echo "kernel/pmm/ needs symbols a freestanding kernel lacks:"; echo "$$undef"; exit 1; fi
	$(Q)touch $@

# Leak checking is off in the ASan run: kernel/pmm/ never allocates (only the
# harness does), and LeakSanitizer cannot run where ptrace is restricted.
.PHONY: test-pmm
test-pmm: $(PMM_OUT)/kernel/pmm.undef-ok $(PMM_OUT)/test_pmm $(PMM_OUT)/test_pmm_asan
	@echo "test-pmm: gcc build"
	$(Q)$(PMM_OUT)/test_pmm
	@echo "test-pmm: clang ASan+UBSan build"
	$(Q)ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 $(PMM_OUT)/test_pmm_asan

ALL_TARGETS += $(PMM_OUT)/kernel/pmm.o $(PMM_OUT)/test_pmm
TEST_TARGETS += test-pmm
DEPS_GROUPS += pmm

-include $(PMM_GCC_OBJS:.o=.d) $(PMM_ASAN_OBJS:.o=.d) $(PMM_KERNEL_OBJS:.o=.d)

# Host benchmark (make bench-pmm): ns per pmm_alloc/pmm_free and init time.
$(PMM_OUT)/pmm_bench: $(PMM_OUT)/gcc/tests/pmm/pmm_bench.o $(PMM_SRCS:%.c=$(PMM_OUT)/gcc/%.o)
	$(Q)$(CC) $^ -o $@

.PHONY: bench-pmm
bench-pmm: $(PMM_OUT)/pmm_bench
	$(Q)nice $(PMM_OUT)/pmm_bench

BENCH_TARGETS += bench-pmm
-include $(PMM_OUT)/gcc/tests/pmm/pmm_bench.d
