# arch/host/build.mk: the allocator core plus the Linux port, as
# build/host/libkmalloc.a (link with -lpthread). Position-independent so
# the LD_PRELOAD shim can reuse the objects.
#
# MM_HOST_CFLAGS: what it takes to compile MM_SRCS + HOST_SRCS for the
# host; other fragments add their own optimisation/sanitizer flags.

HOST_SRCS := \
	arch/host/sys.c \
	arch/host/backtrace.c \
	arch/host/cpuidle.c \
	arch/host/fork.c \
	arch/host/background.c \
	arch/host/mesh.c \
	arch/host/guard.c \
	arch/host/stopworld.c \
	arch/host/threadroots.c

MM_HOST_CFLAGS := $(CSTD) $(WARN) -Imm -Iarch/host
HOST_LIB_CFLAGS := $(MM_HOST_CFLAGS) -O2 -g -fPIC -MMD -MP

KMALLOC_HOST_LIB := $(BUILD)/host/libkmalloc.a
HOST_LIB_OBJS := $(patsubst %.c,$(BUILD)/host/%.o,$(MM_SRCS) $(HOST_SRCS))

$(BUILD)/host/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_LIB_CFLAGS) -c $< -o $@

$(BUILD)/host/arch/host/%.o: arch/host/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_LIB_CFLAGS) -c $< -o $@

$(KMALLOC_HOST_LIB): $(HOST_LIB_OBJS)
	$(archive)

ALL_TARGETS += $(KMALLOC_HOST_LIB)

-include $(HOST_LIB_OBJS:.o=.d)

# The same library with the debug checks on (-DMM_DEBUG=2: MM_ASSERT,
# MM_VALIDATE, lock-order checking); tests/core.mk runs every internal
# test against both.
KMALLOC_HOST_DEBUG_LIB := $(BUILD)/host-debug/libkmalloc.a
HOST_DEBUG_LIB_OBJS := $(patsubst %.c,$(BUILD)/host-debug/%.o,$(MM_SRCS) $(HOST_SRCS))

$(BUILD)/host-debug/mm/%.o: mm/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_LIB_CFLAGS) -DMM_DEBUG=2 -c $< -o $@

$(BUILD)/host-debug/arch/host/%.o: arch/host/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(HOST_LIB_CFLAGS) -DMM_DEBUG=2 -c $< -o $@

$(KMALLOC_HOST_DEBUG_LIB): $(HOST_DEBUG_LIB_OBJS)
	$(archive)

-include $(HOST_DEBUG_LIB_OBJS:.o=.d)

# The LD_PRELOAD shim over these sources is built by arch/host/preload.mk.
