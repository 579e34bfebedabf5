# tests/portkit.mk: the porting kit's test stage (`make test-portkit`, part
# of `make test`): `make lib` as a kernel developer uses it.
#
#   tests/portkit/check-lib   make lib's errors, outputs, symbols, flags and
#                             install-deps use, on a copy of the tree

DEPS_GROUPS += portkit

KIT := $(BUILD)/portkit

.PHONY: test-portkit
test-portkit:
	@echo "== porting kit: make lib =="
	$(Q)tests/portkit/check-lib $(KIT)/check-lib

TEST_TARGETS += test-portkit
