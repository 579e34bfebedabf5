# boot/build.mk: the UEFI loader (GNU-EFI) and the ESP folder QEMU boots.
#
#   boot/*.c --gcc -fpic--> build/boot/*.o --ld -shared (GNU-EFI crt0 + lds)-->
#   build/boot/loader.so --objcopy --target efi-app-x86_64--> BOOTX64.EFI
#
# The ESP is a plain folder QEMU exposes as a FAT disk (vvfat):
#   build/esp/EFI/BOOT/BOOTX64.EFI   this loader (the removable-media path)
#   build/esp/kernel.elf             copied from kernel/build.mk's output
#   build/esp/cmdline.txt            $(RUN_CMDLINE) (kmemleak=on, then $(CMDLINE)),
#                                    rewritten only when it changes

DEPS_GROUPS += boot

EFI_INC     := /usr/include/efi
EFI_LIB     := /usr/lib
EFI_CRT0    := $(EFI_LIB)/crt0-efi-x86_64.o
EFI_LDS     := $(EFI_LIB)/elf_x86_64_efi.lds

LOADER_SRCS := \
	boot/loader.c \
	boot/elf_load.c \
	boot/elf_check.c \
	boot/pagetables.c \
	boot/memmap.c
LOADER_OBJS := $(LOADER_SRCS:%.c=$(BUILD)/%.o)

# -fpic + -fshort-wchar: GNU-EFI's PE/COFF conversion and CHAR16 literals;
# GNU_EFI_USE_MS_ABI lets us call firmware services directly (ms_abi).
LOADER_CFLAGS := $(CSTD) $(WARN) -O2 -g -ffreestanding -fpic -fshort-wchar \
	-mno-red-zone -fno-stack-protector -fno-strict-aliasing -maccumulate-outgoing-args \
	-DGNU_EFI_USE_MS_ABI -I$(EFI_INC) -I$(EFI_INC)/x86_64 -MMD -MP

ESP          := $(BUILD)/esp
LOADER_EFI   := $(ESP)/EFI/BOOT/BOOTX64.EFI
KERNEL_ELF   := $(BUILD)/kernel/kernel.elf

$(BUILD)/boot/%.o: boot/%.c
	@mkdir -p $(dir $@)
	@echo "  CC(efi) $<"
	$(Q)$(CC) $(LOADER_CFLAGS) -c $< -o $@

$(BUILD)/boot/loader.so: $(LOADER_OBJS)
	@echo "  LD      $@"
	$(Q)ld -nostdlib -znocombreloc -shared -Bsymbolic -T $(EFI_LDS) -L$(EFI_LIB) \
		$(EFI_CRT0) $(LOADER_OBJS) -o $@ -lefi -lgnuefi

$(LOADER_EFI): $(BUILD)/boot/loader.so
	@mkdir -p $(dir $@)
	@echo "  EFI     $@"
	$(Q)objcopy -j .text -j .sdata -j .data -j .dynamic -j .dynsym -j .rel \
		-j .rela -j .rel.* -j .rela.* -j .reloc --target efi-app-x86_64 \
		--subsystem=10 $< $@

$(ESP)/kernel.elf: $(KERNEL_ELF)
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

# Rewritten only when RUN_CMDLINE differs from the file, so `make run` with
# the same command line does not touch the ESP.
$(ESP)/cmdline.txt: FORCE
	@mkdir -p $(dir $@)
	$(Q)printf '%s\n' '$(subst ','\'',$(RUN_CMDLINE))' > $@.tmp; \
	if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

ESP_FILES := $(LOADER_EFI) $(ESP)/kernel.elf $(ESP)/cmdline.txt

.PHONY: esp FORCE
FORCE:
esp: $(ESP_FILES)

ALL_TARGETS += $(ESP_FILES)

-include $(LOADER_OBJS:.o=.d)
