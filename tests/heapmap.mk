# tests/heapmap.mk: a picture of the heap. `make heapmap` builds
# tests/heapmap/frag.c against the host library, runs the fragmentation
# workload's pattern, and draws each dump it took with scripts/heapmap:
#
#   frag.c --kmalloc_heapmap--> build/heapmap/<moment>.txt (the dump)
#   --scripts/heapmap--> build/heapmap/<moment>.png (gnuplot) and
#                        build/heapmap/<moment>.pic (text, for the README)
#
# for the moments 1-peak, 2-frag, 2-mesh, 3-trim (frag.c says which is
# which; the heap meshes: KMALLOC_MESH=1), then prints 2-frag's and
# 2-mesh's text pictures. HEAPMAP_MIB (64) sets the objects'
# peak. Like make bench, it installs what it needs first
# (scripts/packages/heapmap.list: gnuplot) unless SKIP_DEPS=1. The
# kernel's heap: make run CMDLINE=heapmap=on, then
# scripts/heapmap -o heap.png build/run.log.
#
# make test-heapmap (in make test) feeds scripts/heapmap the driver's
# dumps at 8 MiB (tests/heapmap/test-script); it needs python3 only, and
# draws a PNG too where gnuplot is installed. It also runs the core's
# dump test (tests/core/test_heapmap.c, whose last case dumps while
# another thread allocates) against tests/api.mk's sanitized cores:
# ThreadSanitizer, because kmalloc_heapmap reads spans that CPUs change
# without its lock; AddressSanitizer, because the dump's stack arrays are
# filled by a walk of whatever the heap holds (TSan's stack layout once
# showed a batch overrunning by one run). Included after tests/api.mk for
# those cores' rules.

HEAPMAP_DIR := $(BUILD)/heapmap
HEAPMAP_FRAG := $(HEAPMAP_DIR)/frag
HEAPMAP_MIB ?= 64

$(HEAPMAP_FRAG): tests/heapmap/frag.c $(KMALLOC_HOST_LIB)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CSTD) $(WARN) -O2 -g -Imm -MMD -MP $< $(KMALLOC_HOST_LIB) -o $@ -pthread

ALL_TARGETS += $(HEAPMAP_FRAG)

.PHONY: heapmap heapmap-only test-heapmap
heapmap:
ifneq ($(SKIP_DEPS),1)
	$(Q)$(INSTALL_DEPS) base heapmap
endif
	$(Q)$(MAKE) --no-print-directory heapmap-only

heapmap-only: $(HEAPMAP_FRAG)
	$(Q)KMALLOC_MESH=1 KMALLOC_RELEASE_MS=off $(HEAPMAP_FRAG) $(HEAPMAP_DIR) $(HEAPMAP_MIB)
	$(Q)for m in 1-peak:"at its peak ($(HEAPMAP_MIB) MiB of 8..512 B objects)" \
		2-frag:"after 90% freed at random, then 768..2048 B objects" \
		2-mesh:"the same heap after kmalloc_mesh" \
		3-trim:"after everything freed and kmalloc_trim"; do \
		scripts/heapmap --text --lines 12 -o $(HEAPMAP_DIR)/$${m%%:*}.png \
			--title "the frag workload's heap $${m#*:}" \
			$(HEAPMAP_DIR)/$${m%%:*}.txt > $(HEAPMAP_DIR)/$${m%%:*}.pic || exit 1; \
	done
	$(Q)cat $(HEAPMAP_DIR)/2-frag.pic $(HEAPMAP_DIR)/2-mesh.pic
	@echo "make heapmap: $(HEAPMAP_DIR)/1-peak.png 2-frag.png 2-mesh.png 3-trim.png (and .pic, .txt)"

HEAPMAP_SAN_TESTS := $(ASAN_DIR)/test_heapmap $(TSAN_DIR)/test_heapmap

$(ASAN_DIR)/test_heapmap: SAN_FLAGS := $(ASAN_FLAGS)
$(TSAN_DIR)/test_heapmap: SAN_FLAGS := $(TSAN_FLAGS)
$(HEAPMAP_SAN_TESTS): %/test_heapmap: tests/core/test_heapmap.c %/libkmalloc.a
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(CSTD) $(WARN) $(MM_HOST_CFLAGS) $(API_CLANG_CORE_FLAGS) $(SAN_FLAGS) \
		$(API_CHECK_CFLAGS) -MMD -MP $< $*/libkmalloc.a $(API_LDLIBS) -o $@

test-heapmap: $(HEAPMAP_FRAG) $(HEAPMAP_SAN_TESTS)
	$(Q)tests/heapmap/test-script $(HEAPMAP_FRAG) $(HEAPMAP_DIR)/test
	$(Q)env $(API_ASAN_ENV) $(ASAN_DIR)/test_heapmap
	$(Q)env $(API_TSAN_ENV) $(TSAN_DIR)/test_heapmap

TEST_TARGETS += test-heapmap

-include $(HEAPMAP_FRAG).d $(HEAPMAP_SAN_TESTS:=.d)
