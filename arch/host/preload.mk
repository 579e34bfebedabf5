# arch/host/preload.mk: the LD_PRELOAD shim, build/host/libkmalloc_preload.so
# (arch/host/preload*.c over the core, see arch/host/preload.c).
#
# The core and the host port are compiled again here rather than taken
# from libkmalloc.a: with -flto and -fvisibility=hidden, kmalloc/kfree
# inline into malloc/free and no internal call goes through the PLT, so the
# shim adds no call layer over the core (-O3: at -O2 gcc keeps kmalloc and
# kfree out of line, 6 more instructions per malloc+free pair). Only the C library's allocation
# functions are exported (the visibility("default") ones in preload.c).

PRELOAD_SRCS := arch/host/preload.c arch/host/preload_leaks.c
PRELOAD_ALL_SRCS := $(MM_SRCS) $(HOST_SRCS) $(PRELOAD_SRCS)
# KMALLOC_MIN16: size classes start at 16 bytes, malloc's alignment.
PRELOAD_CFLAGS := $(MM_HOST_CFLAGS) -O3 -g -fPIC -flto -fvisibility=hidden \
	-fno-semantic-interposition -DKMALLOC_MIN16 -MMD -MP
PRELOAD_OBJS := $(PRELOAD_ALL_SRCS:%.c=$(BUILD)/host/preload/%.o)
KMALLOC_PRELOAD := $(BUILD)/host/libkmalloc_preload.so

$(BUILD)/host/preload/%.o: %.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(PRELOAD_CFLAGS) -c $< -o $@

$(KMALLOC_PRELOAD): $(PRELOAD_OBJS)
	@mkdir -p $(@D)
	$(Q)$(CC) -shared -O3 -flto=1 -fPIC -Wl,-z,now -Wl,-z,relro \
		-o $@ $^ -lpthread

ALL_TARGETS += $(KMALLOC_PRELOAD)
DEPS_GROUPS += preload

-include $(PRELOAD_OBJS:.o=.d)
