# tests/format.mk: the code's style (.clang-format), checked first in
# `make test` because it takes a second.
#
#   make format-check   every C line changed since the style was set is
#                       formatted (scripts/format-check says which base and
#                       why older lines are not checked)
#   make format         format those lines in place (git clang-format)

DEPS_GROUPS += format

.PHONY: format-check format
format-check:
	$(Q)scripts/format-check

format:
	$(Q)scripts/format-check --fix

TEST_TARGETS += format-check
